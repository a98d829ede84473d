"""One training step of the embedded SmolLM2 through ``crossent.hf.patch``, against the same
step unpatched: step time, peak memory and the largest batch that fits a memory budget.

Each measurement runs in its own subprocess (this script with ``--child``), so that one run's
memory never counts in another's. A child loads the embedded SmolLM2-135M-Instruct
(``crossent.models.load_model(None)``), puts the transformers model in training mode with
gradients on (float32, or bfloat16 weights with ``--dtype bfloat16``), patches it or not, and runs
``--warmup`` steps then ``--steps`` timed ones of forward with ``labels``, backward and an AdamW
step, on random token ids. Memory is the process's resident-set high-water mark (``VmHWM`` of
``/proc/self/status``), reset after the warm-up by writing 5 to ``/proc/self/clear_refs``, so it
is the peak of the timed steps alone, and includes the weights, gradients and AdamW state; the
script also prints the peak above the resident set just before the timed steps (what the step
itself adds). Step time is the median of the timed steps.

Then, for each of patched and unpatched, the batch sizes 1, 2, 4, ... are tried (one step each,
at ``--search-seq``) until a child's peak passes ``--budget-gb`` (or it dies); the largest under
the budget is printed. CPU only; the numbers are the machine's, and it may be shared, so the load
average is printed before and after. cut-cross-entropy's transformers patch (``cce_patch``) is
not on PyPI's release (25.1.1 has only ``linear_cross_entropy``), so it is not compared here.

Usage::

    .venv/bin/python benchmarks/hf_patch_step.py [--seq 2048] [--dtypes float32,bfloat16]
        [--steps 3] [--warmup 1] [--budget-gb 8] [--search-seq 1024] [--max-batch 64]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any


def _hwm_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def child(patched: bool, dtype_name: str, batch: int, seq: int, warmup: int, steps: int) -> None:
    import torch

    from crossent.hf import patch
    from crossent.models import load_model

    dtype = getattr(torch, dtype_name)
    model = load_model(None).model.to(dtype).train().requires_grad_(True)
    if patched:
        patch(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    generator = torch.Generator().manual_seed(0)
    vocab = model.get_output_embeddings().weight.shape[0]
    ids = torch.randint(0, vocab, (batch, seq), generator=generator)
    times, losses = [], []
    for index in range(warmup + steps):
        if index == warmup:
            Path("/proc/self/clear_refs").write_text("5")
            before = _rss_bytes()
        start = time.perf_counter()
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
        losses.append(float(loss.detach()))
    peak = _hwm_bytes()
    print(
        json.dumps(
            {
                "step_s": statistics.median(times[warmup:]),
                "peak": peak,
                "step_peak": peak - before,
                "loss": losses[0],
            }
        )
    )


def _run(patched: bool, dtype: str, batch: int, seq: int, warmup: int, steps: int) -> Any:
    command = [
        sys.executable,
        __file__,
        "--child",
        str(int(patched)),
        dtype,
        str(batch),
        str(seq),
        str(warmup),
        str(steps),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return None
    return json.loads(lines[-1])


def _gb(count: float) -> str:
    return f"{count / 2**30:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--budget-gb", type=float, default=8.0, help="GiB")
    parser.add_argument("--search-seq", type=int, default=1024)
    parser.add_argument("--search-dtype", default="float32")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--child", nargs=6, metavar="X", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        p, dtype, batch, seq, warmup, steps = args.child
        child(p == "1", dtype, int(batch), int(seq), int(warmup), int(steps))
        return
    import torch

    print(
        f"torch {torch.__version__}, transformers {version('transformers')}, "
        f"threads {torch.get_num_threads()}, load average {os.getloadavg()}"
    )
    print(f"one step (forward, backward, AdamW), batch 1, sequence {args.seq}")
    print(
        "dtype     | unpatched s | patched s | time ratio | unpatched peak GiB (step) "
        "| patched peak GiB (step) | peak ratio (step ratio)"
    )
    for dtype in args.dtypes.split(","):
        theirs = _run(False, dtype, 1, args.seq, args.warmup, args.steps)
        ours = _run(True, dtype, 1, args.seq, args.warmup, args.steps)
        if theirs is None or ours is None:
            print(f"{dtype:9} | a run failed: unpatched {theirs}, patched {ours}")
            continue
        print(
            f"{dtype:9} | {theirs['step_s']:11.2f} | {ours['step_s']:9.2f} | "
            f"{ours['step_s'] / theirs['step_s']:10.2f} | "
            f"{_gb(theirs['peak'])} ({_gb(theirs['step_peak'])}) | "
            f"{_gb(ours['peak'])} ({_gb(ours['step_peak'])}) | "
            f"{ours['peak'] / theirs['peak']:.2f} ({ours['step_peak'] / theirs['step_peak']:.2f})"
            f"   first losses {theirs['loss']:.6f} {ours['loss']:.6f}",
            flush=True,
        )
    print(
        f"largest batch under {args.budget_gb} GiB, {args.search_dtype}, sequence "
        f"{args.search_seq}, one step each (batch: peak GiB)"
    )
    for patched in (False, True):
        batch, best, seen = 1, 0, []
        while batch <= args.max_batch:
            result = _run(patched, args.search_dtype, batch, args.search_seq, 0, 1)
            if result is None or result["peak"] > args.budget_gb * 2**30:
                seen.append(f"{batch}: " + ("failed" if result is None else _gb(result["peak"])))
                break
            seen.append(f"{batch}: {_gb(result['peak'])}")
            best, batch = batch, batch * 2
        name = "patched" if patched else "unpatched"
        print(f"{name:9} | largest batch {best} | {', '.join(seen)}", flush=True)
    print(f"load average after {os.getloadavg()}")


if __name__ == "__main__":
    main()
