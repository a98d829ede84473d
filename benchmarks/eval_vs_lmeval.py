"""``crossent eval`` against lm-evaluation-harness and the Hugging Face stride recipe, on one text.

Each tool runs once, in a fresh process of its own, one after the other, on the same text (the
first ``--tokens`` SmolLM2 tokens of crossent's default text) with the same model (the embedded
SmolLM2-135M-Instruct, float32, through its cached converted Hugging Face directory):

1. ``crossent eval --data FILE --window L --batch-size B --json OUT``;
2. ``lm-eval run --model hf`` on a local-text task with ``output_type: loglikelihood_rolling``,
   ``max_length=L``, batch size B;
3. the "Perplexity of fixed-length models" recipe of the Transformers guide with
   ``max_length = stride = L`` (one window per forward pass, as the guide does), run by this
   script in a child process of its own.

For each: whole-process wall time (start-up, imports and model load included) and peak resident
memory (``ru_maxrss`` of that child, from ``os.wait4``), tokens scored, nats per token, bits per
byte and word perplexity. Then crossent's ratios to lm-eval, and its tokens per second against a
floor: the forward pass's FLOPs at the fp32 matrix-product rate measured in this run.

Usage::

    .venv/bin/python benchmarks/eval_vs_lmeval.py [--tokens 8192] [--window 1024] [--batch-size 4]

Timings on a shared machine are noisy; the ratios come from one run, in one place.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

TASK = "crossent_bench_text"
# Keep every tool off the network and out of the user's caches.
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
# Targets for crossent against lm-eval, from the issue.
TIME_TARGET = 0.8
MEMORY_TARGET = 0.5


@dataclass(frozen=True)
class Run:
    """One tool's whole-process cost and what it reported."""

    tool: str
    wall_s: float
    peak_mib: float
    load: float  # 1-minute load average when the tool ended: above the cores' count, contention
    tokens: int
    nll_nats: float

    def row(self, num_bytes: int, words: int) -> list[str]:
        return [
            self.tool,
            f"{self.wall_s:.1f}",
            f"{self.peak_mib:.0f}",
            f"{self.load:.1f}",
            str(self.tokens),
            f"{self.nll_nats / self.tokens:.5f}",
            f"{self.nll_nats / num_bytes / math.log(2):.5f}",
            f"{math.exp(self.nll_nats / words):.3f}",
        ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=8192, help="length of the text, in tokens")
    parser.add_argument("--window", type=int, default=1024, help="L, tokens per window")
    parser.add_argument("--batch-size", type=int, default=4, help="windows per forward pass")
    # The Hugging Face recipe's child process: MODEL_DIR TEXT_FILE WINDOW OUT_JSON.
    parser.add_argument("--hf-recipe", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.hf_recipe is not None:
        model_dir, text_file, window, out = args.hf_recipe
        _hf_recipe(Path(model_dir), Path(text_file), int(window), Path(out))
        return 0
    _compare(args.tokens, args.window, args.batch_size)
    return 0


def _compare(num_tokens: int, window: int, batch_size: int) -> None:
    import torch

    from crossent.data import read_documents
    from crossent.evaluation import count_words
    from crossent.models import HFCausalLM, load_model

    model = load_model(None, device="cpu")  # converts the embedded GGUF file once, if needed
    assert isinstance(model, HFCausalLM)
    model_dir = Path(model.model.name_or_path)
    config = model.model.config
    # Tied embeddings are counted once: as the LM head they cost 2 * V * d per token, and as the
    # input embedding a lookup, so 2 * params is the forward's matrix products per token.
    params = sum(parameter.numel() for parameter in model.model.parameters())
    default_text = "".join(read_documents([])[0].parts())
    text = _first_tokens(default_text, model.hf_tokenizer, num_tokens)
    tokens = len(model.tokenizer.encode(text))
    num_bytes, words = len(text.encode("utf-8")), count_words(text)
    del model
    gflops_before = _matmul_gflops(torch)
    # Causal attention: per layer and token, scores and weighted sum over about L/2 positions.
    flops_per_token = 2 * params + 2 * config.num_hidden_layers * window * config.hidden_size

    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(prefix="crossent-bench-") as scratch:
        folder = Path(scratch)
        text_file = folder / "text.txt"
        text_file.write_text(text, encoding="utf-8", newline="")
        env = {**os.environ, **OFFLINE, "HF_HOME": str(folder / "hf")}

        out = folder / "crossent.json"
        command = [str(bin_dir / "crossent"), "eval", "--data", str(text_file)]
        command += ["--window", str(window), "--batch-size", str(batch_size), "--json", str(out)]
        cost = _run(command, env, folder / "crossent.log")
        totals = json.loads(out.read_text())["totals"]
        crossent = Run("crossent eval", *cost, totals["tokens"], totals["nll_nats"])

        metrics, cost = _run_lm_eval(bin_dir, folder, text_file, model_dir, window, batch_size, env)
        # lm-eval reports no token count; it scores every token after the BOS prefix, as
        # crossent does (tests/test_lm_eval_oracle.py checks both on the same model).
        nll = metrics["bits_per_byte,none"] * math.log(2) * num_bytes
        harness = Run("lm-eval (hf)", *cost, tokens, nll)

        out = folder / "recipe.json"
        command = [sys.executable, __file__, "--hf-recipe"]
        command += [str(model_dir), str(text_file), str(window), str(out)]
        cost = _run(command, env, folder / "recipe.log")
        result = json.loads(out.read_text())
        recipe = Run("HF stride recipe", *cost, result["tokens"], result["nll_nats"])

    # Measured before and after the tools, the better one: other users of the machine only slow
    # it down, and a floor should be a lower bound.
    gflops = max(gflops_before, _matmul_gflops(torch))
    floor_s = tokens * flops_per_token / (gflops * 1e9)
    print(_environment(gflops))
    print(
        f"text: the first {tokens} tokens of crossent's default text ({num_bytes} bytes, "
        f"{words} words); window {window}, stride {window}, batch size {batch_size} "
        "(the recipe: 1)\n"
    )
    header = ["tool", "wall s", "peak RSS MiB", "load 1m", "tokens", "nats/token", "bits/byte"]
    header.append("word ppl")
    print(_markdown([header] + [run.row(num_bytes, words) for run in (crossent, harness, recipe)]))
    time_ratio = crossent.wall_s / harness.wall_s
    memory_ratio = crossent.peak_mib / harness.peak_mib
    print(
        f"\ncrossent / lm-eval: time {time_ratio:.2f}x (target <= {TIME_TARGET}x), "
        f"peak memory {memory_ratio:.2f}x (target <= {MEMORY_TARGET}x)"
    )
    print(
        f"crossent: {crossent.tokens / crossent.wall_s:.0f} tokens/s over the whole process; "
        f"floor {tokens / floor_s:.0f} tokens/s ({floor_s:.1f} s: "
        f"{flops_per_token / 1e6:.0f} MFLOP/token at {gflops:.0f} GFLOP/s), "
        f"so the whole process takes {crossent.wall_s / floor_s:.2f}x the floor"
    )
    short = tokens % window  # the length of the recipe's last window, when shorter than L
    print(
        f"HF recipe: {tokens - recipe.tokens} tokens fewer (no prefix token; each window's first "
        "token unscored)"
        + (f", and a last window of only {short} tokens" if short else "")
        + ": a different quantity by construction, not an error (see _hf_recipe)"
    )


def _first_tokens(text: str, tokenizer: Any, num_tokens: int) -> str:
    """The shortest prefix of ``text`` holding its first ``num_tokens`` tokens."""
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)[
        "offset_mapping"
    ]
    if len(offsets) < num_tokens:
        raise ValueError(f"the default text has only {len(offsets)} tokens")
    return text[: offsets[num_tokens - 1][1]]


def _matmul_gflops(torch: Any) -> float:
    """The best fp32 matrix-product rate of a few 2048-square products, GFLOP/s."""
    size = 2048
    left, right = torch.randn(size, size), torch.randn(size, size)
    torch.matmul(left, right)  # warm-up
    best = math.inf
    for _ in range(5):
        start = time.perf_counter()
        torch.matmul(left, right)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def _run(command: list[str], env: dict[str, str], log: Path) -> tuple[float, float, float]:
    """Run ``command`` to completion: its wall time in s, its peak resident memory in MiB, and
    the 1-minute load average at its end."""
    with log.open("w") as stream:
        start = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=stream, stderr=subprocess.STDOUT)
        # wait4 gives this child's own rusage (RUSAGE_CHILDREN would be the maximum so far).
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f"{command[0]} exited with {process.returncode}:\n{tail}")
    return wall, usage.ru_maxrss / 1024, os.getloadavg()[0]  # ru_maxrss is in KiB on Linux


def _run_lm_eval(
    bin_dir: Path,
    folder: Path,
    text_file: Path,
    model_dir: Path,
    window: int,
    batch_size: int,
    env: dict[str, str],
) -> tuple[dict[str, float], tuple[float, float, float]]:
    """lm-eval's rolling log-likelihood through its own command line: its metrics, its cost."""
    tasks = folder / "tasks"
    tasks.mkdir()
    config = {
        "task": TASK,
        "dataset_path": "text",
        "dataset_kwargs": {
            "data_files": [str(text_file)],
            "sample_by": "document",
            "cache_dir": str(folder / "datasets"),
        },
        "output_type": "loglikelihood_rolling",
        "test_split": "train",
        "doc_to_text": "",
        "doc_to_target": "text",
        "metric_list": [
            {"metric": "word_perplexity"},
            {"metric": "byte_perplexity"},
            {"metric": "bits_per_byte"},
        ],
    }
    (tasks / f"{TASK}.yaml").write_text(json.dumps(config, indent=2))  # JSON is YAML
    results = folder / "lm-eval-results"
    command = [str(bin_dir / "lm-eval"), "run", "--model", "hf"]
    command += ["--model_args", f"pretrained={model_dir},dtype=float32,max_length={window}"]
    command += ["--tasks", TASK, "--include_path", str(tasks), "--device", "cpu"]
    command += ["--batch_size", str(batch_size), "--output_path", str(results)]
    cost = _run(command, env, folder / "lm-eval.log")
    (found,) = results.rglob("results_*.json")
    metrics: dict[str, float] = json.loads(found.read_text())["results"][TASK]
    return metrics, cost


def _hf_recipe(model_dir: Path, text_file: Path, window: int, out: Path) -> None:
    """The Transformers guide's stride recipe with stride = max_length = ``window``.

    As the guide does: the text is one sequence, without a prefix token; window ``k`` is
    ``ids[k*S : k*S + L]``, its labels are its own ids with those an earlier window covered set
    to -100; the model's mean loss is multiplied by the number of labels minus one (the guide's
    correction for the shift inside the model). With S = L nothing is masked, and the shift
    leaves each window's first token without a prediction, so one token per window goes
    unscored; the last window is simply shorter, so its tokens see less context. crossent (and
    lm-eval) instead put BOS before the text, overlap windows by one token, so every token is
    scored once, and end the last window at the end of the text with a full L tokens of input.
    So the recipe's numbers differ from theirs by construction, not by error.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids = tokenizer(text_file.read_text(encoding="utf-8"), return_tensors="pt").input_ids  # (1, n)
    length = ids.shape[1]
    nll, counted, covered = 0.0, 0, 0
    for begin in range(0, length, window):
        end = min(begin + window, length)
        inputs = ids[:, begin:end]
        labels = inputs.clone()
        labels[:, : inputs.shape[1] - (end - covered)] = -100
        with torch.no_grad():
            mean = model(input_ids=inputs, labels=labels).loss
        weight = int((labels != -100).sum()) - labels.shape[0]
        nll += float(mean) * weight
        counted += weight
        covered = end
        if end == length:
            break
    out.write_text(json.dumps({"tokens": counted, "nll_nats": nll}))


def _environment(gflops: float) -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    return (
        f"machine: {cpu}, {os.cpu_count()} cores, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads, fp32 matmul {gflops:.0f} GFLOP/s; "
        f"crossent {version('crossent')}, lm-eval {version('lm_eval')}, "
        f"transformers {version('transformers')}"
    )


def _markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + " --- |" * len(rows[0])]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
