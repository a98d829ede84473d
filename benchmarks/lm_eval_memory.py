"""lm-evaluation-harness's ``hf`` model against its ``crossent`` model: peak memory and wall time.

Both run the same two local tasks through ``lm_eval.simple_evaluate``, each in a fresh process
of its own, one after the other, on the same weights (the embedded SmolLM2-135M-Instruct, float32,
through its cached converted Hugging Face directory, or ``--model``):

* a multiple-choice task (``loglikelihood``): ``--batch-size`` requests of about ``--window``
  tokens each (a long context, four one-word choices), so every batch is full and full-length;
* a rolling task (``loglikelihood_rolling``): one text of ``--batch-size`` windows.

``hf`` holds the ``[batch, window, V]`` logits and their ``log_softmax`` for each batch; the
``crossent`` model holds the hidden states only. For each: whole-process wall time (start-up,
imports and model load included), peak resident memory (``ru_maxrss`` of that child, from
``os.wait4``) and, on CUDA, ``torch.cuda.max_memory_allocated``; then crossent's ratios, and
whether the two models' metrics agree.

Usage::

    .venv/bin/python benchmarks/lm_eval_memory.py [--window 2048] [--batch-size 16] [--device cuda]

Timings on a shared machine are noisy; the ratios come from one run, in one place.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CHOICE_TASK = "crossent_bench_choice"
ROLLING_TASK = "crossent_bench_rolling"
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
TOOLS = ("hf", "crossent")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", type=int, default=2048, help="max_length (default: 2048)")
    parser.add_argument("--batch-size", type=int, default=16, help="default: 16")
    parser.add_argument("--model", help="what crossent eval --model takes (default: embedded)")
    parser.add_argument("--device", default="cpu", help="default: cpu")
    parser.add_argument("--child", choices=TOOLS, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        _write_tasks(folder, args.window, args.batch_size)
        runs = {tool: _measure(tool, folder, args) for tool in TOOLS}
    _print(runs, args)


def _write_tasks(folder: Path, window: int, batch_size: int) -> None:
    """The two tasks, sized so that each batch is full: text of about ``window`` tokens per
    request (SmolLM2 reads English prose at about 4 characters a token)."""
    from crossent.data import read_documents

    prose = read_documents([])[0].text  # CPython's documentation: a few MB of text
    chars = 4 * window
    questions = [
        {"context": prose[i * chars : (i + 1) * chars - 40], "choices": ["the", "a", "an", "of"]}
        for i in range(batch_size // 4 or 1)
    ]
    (folder / "choice.jsonl").write_text("".join(json.dumps(row) + "\n" for row in questions))
    (folder / "rolling.txt").write_text(prose[: batch_size * chars], encoding="utf-8")
    cache = str(folder / "cache")
    configs = [
        {
            "task": CHOICE_TASK, "dataset_path": "json", "output_type": "multiple_choice",
            "dataset_kwargs": {"data_files": {"test": str(folder / "choice.jsonl")},
                               "cache_dir": cache},
            "test_split": "test", "doc_to_text": "{{context}}", "doc_to_choice": "choices",
            "doc_to_target": 0, "metric_list": [{"metric": "acc"}],
        },
        {
            "task": ROLLING_TASK, "dataset_path": "text", "output_type": "loglikelihood_rolling",
            "dataset_kwargs": {"data_files": [str(folder / "rolling.txt")],
                               "sample_by": "document", "cache_dir": cache},
            "test_split": "train", "doc_to_text": "", "doc_to_target": "text",
            "metric_list": [{"metric": "bits_per_byte"}],
        },
    ]  # fmt: skip
    (folder / "tasks").mkdir()
    for config in configs:
        (folder / "tasks" / f"{config['task']}.yaml").write_text(json.dumps(config, indent=2))


def _measure(tool: str, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Run one tool in a child process: its wall time, peak RSS and what it reported."""
    command = [
        sys.executable, __file__, "--child", tool, "--folder", str(folder),
        "--window", str(args.window), "--batch-size", str(args.batch_size),
        "--device", args.device, *(["--model", args.model] if args.model else []),
    ]  # fmt: skip
    env = {**os.environ, **OFFLINE, "HF_DATASETS_CACHE": str(folder / "cache")}
    log = folder / f"{tool}.log"
    with log.open("w") as stream:
        start = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=stream, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{tool} failed:\n{log.read_text()[-3000:]}")
    report: dict[str, Any] = json.loads((folder / f"{tool}.json").read_text())
    return {**report, "wall_s": wall, "peak_rss_mib": usage.ru_maxrss / 1024}


def _child(args: argparse.Namespace) -> None:
    import lm_eval
    import torch
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from crossent.lm_eval import CrossentLM
    from crossent.models import HFCausalLM, load_model

    model = load_model(args.model, device=args.device)
    if args.child == "hf":
        assert isinstance(model, HFCausalLM), "the hf model needs a Hugging Face model"
        harness: Any = HFLM(
            pretrained=model.model, tokenizer=model.hf_tokenizer, device=args.device,
            batch_size=args.batch_size, max_length=args.window,
        )  # fmt: skip
    else:
        harness = CrossentLM(model, batch_size=args.batch_size, max_length=args.window)
    output = lm_eval.simple_evaluate(
        harness,
        tasks=[CHOICE_TASK, ROLLING_TASK],
        task_manager=TaskManager(include_path=str(args.folder / "tasks"), include_defaults=False),
        bootstrap_iters=0,
    )
    metrics = {
        f"{task}/{name}": value
        for task, values in output["results"].items()
        for name, value in values.items()
        if isinstance(value, float) and "stderr" not in name
    }
    cuda = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    report = {"metrics": metrics, "cuda_peak_mib": cuda}
    (args.folder / f"{args.child}.json").write_text(json.dumps(report))


def _print(runs: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"window {args.window}, batch {args.batch_size}, device {args.device}")
    print(f"{'model':10} {'wall s':>8} {'peak RSS MiB':>13} {'CUDA peak MiB':>14}")
    for tool, run in runs.items():
        cuda = "-" if run["cuda_peak_mib"] is None else f"{run['cuda_peak_mib']:.0f}"
        print(f"{tool:10} {run['wall_s']:8.1f} {run['peak_rss_mib']:13.0f} {cuda:>14}")
    ours, theirs = runs["crossent"], runs["hf"]
    print(f"crossent / hf: wall {ours['wall_s'] / theirs['wall_s']:.2f}x, peak RSS "
          f"{ours['peak_rss_mib'] / theirs['peak_rss_mib']:.2f}x")  # fmt: skip
    if ours["cuda_peak_mib"] is not None:
        print(f"crossent / hf: CUDA peak {ours['cuda_peak_mib'] / theirs['cuda_peak_mib']:.2f}x")
    for name, value in theirs["metrics"].items():
        print(f"{name}: hf {value:.8g}, crossent {ours['metrics'][name]:.8g}")


if __name__ == "__main__":
    main()
