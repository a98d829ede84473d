"""``crossent eval`` against the forward pass's FLOP floor, in float32 and bfloat16, eager and
``--compile``, and its start-up: every figure a ratio measured in this one run.

What it measures (issue 14, "Evaluation"):

* **The matrix-product rate** of this machine in float32 and bfloat16 (the best of a few
  2048-square products), at the start and again at the end; the better of the two counts, as a
  floor must be a lower bound and other users of the machine only slow it down.
* **The floor**: the forward pass's FLOPs, ``2 * parameters`` per token (every weight is in a
  matrix product; the tied LM head counts once as the head, the embedding is a lookup) plus
  causal attention's ``Q K^T`` and ``P V`` (``2 * layers * window * d`` per token, each token
  attending to about half the window, twice), over the tokens scored, at that rate in the
  run's own dtype.
* **Whole processes**: ``crossent eval --data TEXT --json OUT`` run as a user runs it (a fresh
  subprocess: imports, model load from the cache, tokenizing, scoring, writing), in each dtype
  asked for, with ``--compile`` when asked: wall time, the floor, their ratio, tokens/s, and
  bits per byte with its distance from float32's.
* **Where the time goes**, in this process: model load, tokenizing, and one batch's trunk and
  head (fused loss) timed apart in each dtype, so a slow head does not hide a fast trunk.
* **Compile**: the first compiled call of one batch's shape less an eager call (the compile
  time), the compiled and eager per-token times after it, and the break-even length: the tokens
  at which compiling plus scoring beats eager scoring.
* **Start-up** (``--startup``): a fresh process scoring a 100-token text, with the time to its
  first scored token split into importing crossent (torch and transformers with it), loading
  the cached model, tokenizing and the first forward pass; and ``crossent eval`` on that text.

Usage::

    .venv/bin/python benchmarks/eval_floor.py [--chars N] [--dtypes float32,bfloat16]
        [--compile] [--startup] [--window 2048] [--batch-size B] [--also-batch-size B]

``--chars`` scores a prefix of crossent's default text (all of it, about 110k tokens, by
default); the output says which was run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from crossent.checksums import CHECKSUMS_FILE, VERIFIED_FILE, write_checksums
from crossent.data import read_documents
from crossent.hardware import BF16_MATMUL_FLAGS, cpu_flags
from crossent.losses.linear import linear_cross_entropy_with_stats
from crossent.models import HFCausalLM, gguf, load_model
from crossent.scoring import compiled_trunk

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def gemm_rate(dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """The best rate of a few ``size``-square matrix products in ``dtype``, GFLOP/s."""
    left, right = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.matmul(left, right)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(left, right)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def flops_per_token(model: HFCausalLM, window: int) -> float:
    """The forward pass's FLOPs per token at ``window`` (the module docstring)."""
    config = model.model.config
    params = sum(parameter.numel() for parameter in model.model.parameters())
    return float(2 * params + 2 * config.num_hidden_layers * window * config.hidden_size)


def run_eval(
    text: Path, out: Path, extra: list[str], source: str | None = None
) -> tuple[float, dict[str, Any]]:
    """``crossent eval`` on ``text`` in a fresh process (crossent from ``source``, a ``src``
    folder, when given): its wall time and its JSON totals."""
    env = {**os.environ, "PYTHONPATH": source} if source else None
    command = [sys.executable, "-m", "crossent", "eval", "--data", str(text), "--json", str(out)]
    start = time.perf_counter()
    done = subprocess.run([*command, *extra], capture_output=True, text=True, check=False, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"crossent eval {' '.join(extra)} failed:\n{done.stderr[-3000:]}")
    totals: dict[str, Any] = json.loads(out.read_text())["totals"]
    return wall, totals


def split_times(model: HFCausalLM, tokens: list[int], window: int, batch: int) -> dict[str, float]:
    """One batch's trunk and head seconds (the second of two runs) and tokenizing's."""
    ids = torch.tensor([tokens[:window]] * batch)
    targets = torch.tensor([tokens[1 : window + 1]] * batch)
    with torch.inference_mode():
        model.hidden_states(ids[:, :16])
        for _ in range(2):
            start = time.perf_counter()
            hidden = model.hidden_states(ids)
            trunk = time.perf_counter() - start
            start = time.perf_counter()
            linear_cross_entropy_with_stats(
                hidden.reshape(-1, hidden.shape[-1]),
                model.head_weight,
                targets.reshape(-1),
                model.head_bias,
                reduction="sum",
            )
            head = time.perf_counter() - start
    return {"trunk_s": trunk, "head_s": head, "tokens": float(ids.numel())}


def compile_times(
    model: HFCausalLM, tokens: list[int], window: int, batch: int
) -> dict[str, float]:
    """Compile time, eager and compiled seconds per token at one batch's shape, break-even."""
    ids = torch.tensor([tokens[:window]] * batch)
    trunk = compiled_trunk(model)
    with torch.inference_mode():
        model.hidden_states(ids)
        start = time.perf_counter()
        model.hidden_states(ids)
        eager = time.perf_counter() - start
        start = time.perf_counter()
        trunk(ids)
        first = time.perf_counter() - start
        start = time.perf_counter()
        trunk(ids)
        compiled = time.perf_counter() - start
    saving = (eager - compiled) / ids.numel()
    return {
        "compile_s": first - compiled,
        "eager_s_per_token": eager / ids.numel(),
        "compiled_s_per_token": compiled / ids.numel(),
        "break_even_tokens": (first - compiled) / saving if saving > 0 else math.inf,
    }


STARTUP_CHILD = """
import sys, time, json
start = time.perf_counter()
import torch
from crossent.data import Document
from crossent.data.stream import DocumentStream
from crossent.models import load_model
from crossent.scoring import score_batch
imported = time.perf_counter()
model = load_model(None)
loaded = time.perf_counter()
stream = DocumentStream(model.tokenizer, [Document("t", open(sys.argv[1]).read())],
                        model.tokenizer.bos_token_id, 2048, 2048, False)
batch = next(stream.batches(4))
tokenized = time.perf_counter()
with torch.inference_mode():
    score_batch(model, [win for _, win in batch], 0)
scored = time.perf_counter()
print(json.dumps({"import_s": imported - start, "load_s": loaded - imported,
                  "tokenize_s": tokenized - loaded, "first_forward_s": scored - tokenized}))
"""


def startup(folder: Path, text: str, tokenizer: Any) -> list[dict[str, float]]:
    """The start-up of a fresh process on the first 100 tokens of ``text``, twice, from a copy
    of the model's cache entry with fresh checksums: the first run hashes every file, the
    second finds them recorded (crossent.checksums), as every later run of a user does."""
    offsets = tokenizer(text[:2000], add_special_tokens=False, return_offsets_mapping=True)
    short = folder / "short.txt"
    short.write_text(text[: offsets["offset_mapping"][99][1]], encoding="utf-8")
    entry = gguf.gguf_cache_dir(gguf.embedded_gguf())
    cache = folder / "cache"
    skip = shutil.ignore_patterns(CHECKSUMS_FILE, VERIFIED_FILE)
    try:  # hard links: the same bytes without copying half a gigabyte
        shutil.copytree(entry, cache / "models" / entry.name, ignore=skip, copy_function=os.link)
    except OSError:
        shutil.rmtree(cache, ignore_errors=True)
        shutil.copytree(entry, cache / "models" / entry.name, ignore=skip)
    write_checksums(cache / "models" / entry.name)
    time.sleep(2.1)  # files changed in the last two seconds are never recorded as verified
    env = {**os.environ, "CROSSENT_CACHE_DIR": str(cache)}
    runs = []
    for _ in range(2):
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", STARTUP_CHILD, str(short)],
            capture_output=True, text=True, check=True, env=env,
        )  # fmt: skip
        parts: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
        parts["process_s"] = time.perf_counter() - start
        runs.append(parts)
    runs[-1]["eval_wall_s"] = run_eval(short, folder / "short.json", [])[0]
    return runs


def environment() -> str:
    """The CPU, its bf16 flags, the threads, and the machine's load now."""
    cpu = "unknown CPU"
    try:
        listed = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        cpu = next(
            row.split(":", 1)[1].strip() for row in listed.splitlines() if "Model name" in row
        )
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    flags = sorted(cpu_flags() & (BF16_MATMUL_FLAGS | {"avx512f", "amx_tile", "avx2"}))
    load = " ".join(f"{value:.1f}" for value in os.getloadavg())
    return (
        f"machine: {cpu}, {os.cpu_count()} cores, flags {' '.join(flags) or 'none of note'}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; load {load}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chars", type=int, help="score only this prefix of the default text")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--compile", action="store_true", help="also run eval --compile (fp32)")
    parser.add_argument("--startup", action="store_true", help="also measure the start-up")
    parser.add_argument("--baseline", help="also run float32 eval from this src folder")
    parser.add_argument("--window", type=int, default=2048)
    parser.add_argument(
        "--batch-size", type=int, help="windows per pass (default: crossent eval's own default)"
    )
    parser.add_argument(
        "--also-batch-size", type=int, action="append", default=[], metavar="B",
        help="also run float32 eval at this batch size (repeatable)",
    )  # fmt: skip
    args = parser.parse_args()
    dtypes = args.dtypes.split(",")
    print(environment())
    rates = {name: gemm_rate(DTYPES[name]) for name in DTYPES}
    print("matmul GFLOP/s at the start: " + ", ".join(f"{k} {v:.0f}" for k, v in rates.items()))
    text = "".join(read_documents([])[0].parts())[: args.chars]
    start = time.perf_counter()
    model = load_model(None, device="cpu")
    assert isinstance(model, HFCausalLM)
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    tokens = model.tokenizer.encode(text)
    tokenize_s = time.perf_counter() - start
    window = min(args.window, len(tokens) - 1)
    flops = flops_per_token(model, window)
    which = "all of it" if args.chars is None else f"its first {args.chars} characters"
    print(
        f"text: crossent's default text, {which}: {len(tokens)} tokens; window {window}, "
        f"batch size {args.batch_size or 'crossent eval default'}; "
        f"{flops / 1e6:.0f} MFLOP per token"
    )
    print(f"in this process: model load {load_s:.2f} s, tokenizing {tokenize_s:.2f} s")
    splits = {"float32": split_times(model, tokens, window, 1)}
    compiled = compile_times(model, tokens, window, 1) if args.compile else None
    del model
    if "bfloat16" in dtypes:
        low = load_model(None, device="cpu", dtype=torch.bfloat16)
        assert isinstance(low, HFCausalLM)
        splits["bfloat16"] = split_times(low, tokens, window, 1)
        del low
    for name, split in splits.items():
        print(
            f"{name}: one batch of {split['tokens']:.0f} tokens: trunk {split['trunk_s']:.2f} s "
            f"({split['tokens'] / split['trunk_s']:.0f} tokens/s), head {split['head_s']:.2f} s"
        )
    if compiled is not None:
        print(
            "compile (float32, one batch's shape): "
            + ", ".join(f"{key} {value:.3g}" for key, value in compiled.items())
        )
    runs: list[tuple[str, str, list[str]]] = [(name, name, ["--dtype", name]) for name in dtypes]
    if args.baseline:
        runs.insert(0, ("float32, baseline", "float32", []))
    if args.compile:
        runs.append(("float32 --compile", "float32", ["--compile"]))
    for size in args.also_batch_size:
        runs.append((f"float32, batch size {size}", "float32", ["--batch-size", str(size)]))
    with tempfile.TemporaryDirectory(prefix="crossent-floor-") as scratch:
        folder = Path(scratch)
        data = folder / "text.txt"
        data.write_text(text, encoding="utf-8", newline="")
        extra = ["--window", str(window)]
        extra += ["--batch-size", str(args.batch_size)] if args.batch_size else []
        results = {
            label: run_eval(
                data, folder / "out.json", extra + flags,
                args.baseline if label.endswith("baseline") else None,
            )
            for label, _, flags in runs
        }  # fmt: skip
        startup_parts = None
        if args.startup:
            from transformers import AutoTokenizer

            cached = load_model(None, device="cpu")
            assert isinstance(cached, HFCausalLM)
            tokenizer = AutoTokenizer.from_pretrained(cached.model.name_or_path)
            del cached
            startup_parts = startup(folder, text, tokenizer)
    after = {name: gemm_rate(DTYPES[name]) for name in DTYPES}
    print("matmul GFLOP/s at the end: " + ", ".join(f"{k} {v:.0f}" for k, v in after.items()))
    best = {name: max(rates[name], after[name]) for name in DTYPES}
    print("\n| run | wall s | floor s | x floor | tokens/s | bits/byte | vs float32 |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    base = results.get("float32")
    for label, dtype, _ in runs:
        wall, totals = results[label]
        floor = totals["tokens"] * flops / (best[dtype] * 1e9)
        delta = "" if base is None else f"{totals['bits_per_byte'] - base[1]['bits_per_byte']:+.2e}"
        speed = "" if base is None else f" ({base[0] / wall:.2f}x)"
        print(
            f"| {label} | {wall:.1f}{speed} | {floor:.1f} | {wall / floor:.2f} | "
            f"{totals['tokens'] / wall:.0f} | {totals['bits_per_byte']:.6f} | {delta} |"
        )
    for number, parts in enumerate(startup_parts or []):
        label = "first run, hashing the cache" if number == 0 else "later run, hashes recorded"
        print(f"start-up on 100 tokens, {label}: " + ", ".join(
            f"{key} {value:.2f}" for key, value in parts.items()))  # fmt: skip
    print(environment())
    return 0


if __name__ == "__main__":
    sys.exit(main())
