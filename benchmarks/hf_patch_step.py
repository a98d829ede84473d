"""One training step of the embedded SmolLM2 through ``crossent.hf.patch``, against the same
step unpatched and against cut-cross-entropy's loss: step time, peak memory and the largest
batch that fits a memory budget.

Variants (``--variants``):

* ``unpatched``: the model's own forward, full ``[B, T, V]`` logits and transformers' loss.
* ``patched``: ``crossent.hf.patch(model)``, crossent's fused loss, no full logits.
* ``cce``: cut-cross-entropy's loss under crossent's hook. cut-cross-entropy's own
  transformers patch (``cce_patch``) is not in its PyPI release (25.1.1 ships only
  ``linear_cross_entropy``), so this patches the model with crossent and then, in that child
  process only, swaps the function the patched forward computes its loss with for one that calls
  ``cut_cross_entropy.linear_cross_entropy(hidden, weight, shifted_labels,
  impl="torch_compile")`` (its CPU implementation, its default options) on the same hidden
  states and head. Everything else (the hook, the shift, the output) is crossent's.

Each variant runs with gradient checkpointing off and on (``--checkpointing off,on``; on is
``model.gradient_checkpointing_enable()``, what ``Trainer``'s ``gradient_checkpointing=True``
calls), where the layers' saved activations are recomputed in backward, so the logits are the
largest tensors of the step.

Each measurement runs in its own subprocess (this script with ``--child``), so that one run's
memory never counts in another's. A child loads the embedded SmolLM2-135M-Instruct
(``crossent.models.load_model(None)``), puts the transformers model in training mode with
gradients on (float32, or bfloat16 weights), prepares it as the variant says, and runs
``--warmup`` steps then ``--steps`` timed ones of forward with ``labels``, backward and an AdamW
step, on random token ids. Memory is the process's resident-set high-water mark (``VmHWM`` of
``/proc/self/status``), reset after the warm-up by writing 5 to ``/proc/self/clear_refs``, so it
is the peak of the timed steps alone, and includes the weights and AdamW state; the script also
prints the peak above the resident set just before the timed steps (what the step itself adds:
activations, logits, gradients). Step time is the median of the timed steps.

The machine may be shared, so the runs of a configuration are made in ``--rounds`` rounds that
alternate the variants (unpatched, patched, cce, then the next round in reverse order), and the
table gives the median over the rounds; the load average is printed before and after. With
``--jobs 3`` the variants of a round run at the same time instead, one child each: on a machine
already busy with other work this puts them under the same load (the peak memory of a child is
its own either way), at the price of their competing with each other.

Then, for each variant and each ``--search-checkpointing`` mode, the batch sizes 1, 2, 4, ...
are tried (``--warmup`` then one step each, at ``--search-seq``, ``--search-dtype``) until a
child's timed peak passes ``--budget-gb`` (or it dies); the largest under the budget is printed.

Usage::

    .venv/bin/python benchmarks/hf_patch_step.py [--seq 2048] [--dtypes float32,bfloat16]
        [--checkpointing off,on] [--variants unpatched,patched,cce] [--steps 2] [--warmup 1]
        [--rounds 1] [--jobs 1] [--budget-gb 8] [--search-seq 1024] [--search-checkpointing on]
        [--max-batch 64]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

VARIANTS = ("unpatched", "patched", "cce")
NAMES = {
    "unpatched": "unpatched",
    "patched": "crossent.hf.patch",
    "cce": "cut-cross-entropy's loss under crossent's hook",
}


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _use_cut_cross_entropy() -> None:
    """Make crossent's patched forward compute its loss with cut-cross-entropy's function."""
    import torch
    from cut_cross_entropy import linear_cross_entropy

    module = sys.modules["crossent.hf.patch"]

    def cce_loss(state: Any, head: Any, hidden: Any, labels: Any, arguments: Any) -> Any:
        target = torch.nn.functional.pad(labels, (0, 1), value=-100)[..., 1:].reshape(-1)
        flat = hidden.reshape(-1, hidden.shape[-1])
        return linear_cross_entropy(flat, head.weight, target, impl="torch_compile")

    module._fused_loss = cce_loss  # type: ignore[attr-defined]


def child(
    variant: str, checkpointing: bool, dtype_name: str, shape: tuple[int, int, int, int]
) -> None:
    import torch

    from crossent.hf import patch
    from crossent.models import load_model

    batch, seq, warmup, steps = shape
    dtype = getattr(torch, dtype_name)
    model = load_model(None).model.to(dtype).train().requires_grad_(True)
    if checkpointing:
        model.gradient_checkpointing_enable()
    if variant != "unpatched":
        patch(model)
    if variant == "cce":
        _use_cut_cross_entropy()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    generator = torch.Generator().manual_seed(0)
    vocab = model.get_output_embeddings().weight.shape[0]
    ids = torch.randint(0, vocab, (batch, seq), generator=generator)
    times, losses, before = [], [], _status_bytes("VmRSS")
    for index in range(warmup + steps):
        if index == warmup:
            Path("/proc/self/clear_refs").write_text("5")
            before = _status_bytes("VmRSS")
        start = time.perf_counter()
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
        losses.append(float(loss.detach()))
    peak = _status_bytes("VmHWM")
    result = {"step_s": statistics.median(times[warmup:]), "peak": peak, "loss": losses[0]}
    print(json.dumps({**result, "step_peak": peak - before, "times": times}))


def _run(variant: str, checkpointing: bool, dtype: str, shape: tuple[int, int, int, int]) -> Any:
    command = [sys.executable, __file__, "--child", variant, str(int(checkpointing)), dtype]
    command += [str(value) for value in shape]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        errors = [line for line in done.stderr.strip().splitlines() if line.strip()]
        return {"error": errors[-1] if errors else f"exit code {done.returncode}"}
    return json.loads(lines[-1])


def _gb(count: float) -> str:
    return f"{count / 2**30:.2f}"


def _median_run(runs: list[Any]) -> Any:
    good = [run for run in runs if "error" not in run]
    if not good:
        return runs[0]
    return {
        key: statistics.median(run[key] for run in good)
        for key in ("step_s", "peak", "step_peak", "loss")
    } | {"runs": [round(run["step_s"], 2) for run in good]}


def _table(args: argparse.Namespace, variants: list[str]) -> None:
    print(
        f"one step (forward, backward, AdamW), batch {args.batch}, sequence {args.seq}, "
        f"{args.warmup} warm-up + {args.steps} timed steps a run, median of {args.rounds} "
        "alternating rounds"
    )
    print(
        "| dtype | checkpointing | variant | step s (rounds) | time ratio | peak GiB (step) "
        "| peak ratio (step ratio) | first loss |"
    )
    print("|---|---|---|---|---|---|---|---|")
    shape = (args.batch, args.seq, args.warmup, args.steps)
    for dtype in args.dtypes.split(","):
        for mode in args.checkpointing.split(","):
            runs: dict[str, list[Any]] = {variant: [] for variant in variants}
            for round_index in range(args.rounds):
                order = variants if round_index % 2 == 0 else variants[::-1]
                run = partial(_run, checkpointing=mode == "on", dtype=dtype, shape=shape)
                done = _map(args.jobs, run, order)
                for variant, result in zip(order, done, strict=True):
                    runs[variant].append(result)
            results = {variant: _median_run(runs[variant]) for variant in variants}
            base = results.get("unpatched")
            for variant in variants:
                _row(dtype, mode, variant, results[variant], base)


def _row(dtype: str, mode: str, variant: str, result: Any, base: Any) -> None:
    prefix = f"| {dtype} | {mode} | {NAMES[variant]} |"
    if "error" in result:
        print(f"{prefix} failed: {result['error'][:300]} | | | | |", flush=True)
        return
    time_ratio = peak_ratio = "-"
    if base is not None and "error" not in base and variant != "unpatched":
        time_ratio = f"{result['step_s'] / base['step_s']:.2f}"
        peak_ratio = (
            f"{result['peak'] / base['peak']:.2f} ({result['step_peak'] / base['step_peak']:.2f})"
        )
    rounds = ", ".join(f"{value:.1f}" for value in result["runs"])
    print(
        f"{prefix} {result['step_s']:.2f} ({rounds}) | {time_ratio} | "
        f"{_gb(result['peak'])} ({_gb(result['step_peak'])}) | {peak_ratio} | "
        f"{result['loss']:.6f} |",
        flush=True,
    )


def _search(args: argparse.Namespace, variants: list[str]) -> None:
    print(
        f"largest batch under {args.budget_gb} GiB, {args.search_dtype}, sequence "
        f"{args.search_seq}, {args.warmup} warm-up + 1 step each "
        "(batch: timed peak GiB (step-added GiB))"
    )
    print("| checkpointing | variant | largest batch | tried |")
    print("|---|---|---|---|")
    for mode in args.search_checkpointing.split(","):
        search = partial(_largest_batch, args, mode=mode)
        # Each variant's row as soon as its search ends: a search can take many minutes.
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            futures = {pool.submit(search, variant): variant for variant in variants}
            for future in as_completed(futures):
                best, seen = future.result()
                print(
                    f"| {mode} | {NAMES[futures[future]]} | {best} | {', '.join(seen)} |",
                    flush=True,
                )


def _largest_batch(args: argparse.Namespace, variant: str, mode: str) -> tuple[int, list[str]]:
    batch, best, seen = 1, 0, []
    while batch <= args.max_batch:
        shape = (batch, args.search_seq, args.warmup, 1)
        result = _run(variant, mode == "on", args.search_dtype, shape)
        failed = "error" in result
        if failed or result["peak"] > args.budget_gb * 2**30:
            seen.append(f"{batch}: " + ("failed" if failed else _gb(result["peak"])))
            break
        seen.append(f"{batch}: {_gb(result['peak'])} ({_gb(result['step_peak'])})")
        print(f"  {variant}, batch {seen[-1]} GiB", file=sys.stderr, flush=True)
        best, batch = batch, batch * 2
    return best, seen


def _map(jobs: int, function: Any, items: list[str]) -> list[Any]:
    """``function`` over ``items``, ``jobs`` children at a time (each call is a subprocess)."""
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(function, items))


def _installed(package: str) -> str | None:
    """``package``'s installed version, or None."""
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--dtypes", default="float32,bfloat16", help="or none: search only")
    parser.add_argument("--checkpointing", default="off,on", help="off, on or off,on")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1, help="children at once (the variants)")
    parser.add_argument("--budget-gb", type=float, default=8.0, help="GiB")
    parser.add_argument("--search-seq", type=int, default=1024)
    parser.add_argument("--search-dtype", default="float32")
    parser.add_argument("--search-checkpointing", default="on", help="off, on, off,on or none")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--child", nargs=7, metavar="X", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        variant, mode, dtype, *shape = args.child
        batch, seq, warmup, steps = (int(value) for value in shape)
        child(variant, mode == "1", dtype, (batch, seq, warmup, steps))
        return
    import torch

    variants = [name for name in args.variants.split(",") if name]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"--variants: unknown {', '.join(unknown)} (choose from {VARIANTS})")
    cce = _installed("cut-cross-entropy")
    if "cce" in variants and cce is None:
        parser.error("--variants cce: cut-cross-entropy is not installed (crossent[compare])")
    print(
        f"torch {torch.__version__}, transformers {version('transformers')}, "
        f"cut-cross-entropy {cce or 'not installed'}, threads {torch.get_num_threads()}, "
        f"load average {os.getloadavg()}",
        flush=True,
    )
    start = time.perf_counter()
    if args.dtypes != "none":
        _table(args, variants)
        print(f"load average {os.getloadavg()}, {time.perf_counter() - start:.0f} s", flush=True)
    if args.search_checkpointing != "none":
        _search(args, variants)
    print(f"load average after {os.getloadavg()}, {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
