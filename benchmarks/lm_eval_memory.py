"""lm-evaluation-harness's ``hf`` model against its ``crossent`` model: peak memory and wall time.

Both run the same two local tasks through ``lm_eval.simple_evaluate`` on the same weights (the
embedded SmolLM2-135M-Instruct, float32, through its cached converted Hugging Face directory, or
``--model``), each task and model in a fresh process of its own, one after the other:

* a multiple-choice task (``loglikelihood``): ``--questions`` questions (default: the batch size)
  of a context of about ``--window`` tokens and four one-word choices. The choices of a question
  share one forward pass in both models, so a batch holds ``--batch-size`` distinct inputs, full
  and full-length;
* a rolling task (``loglikelihood_rolling``): one text of about ``--rolling-windows`` windows
  (default: the batch size, so one full batch).

``hf`` holds the ``[batch, window, V]`` logits and their ``log_softmax`` for each batch; the
``crossent`` model holds the hidden states only. For each task and model: whole-process wall time
(start-up, imports and model load included), peak resident memory (``ru_maxrss`` of that child,
from ``os.wait4``) and, on CUDA, ``torch.cuda.max_memory_allocated``; then crossent's ratios per
task, and whether the two models' metrics agree. A child that dies (killed for memory, say) is a
result, not an error: its row says how it ended and its peak memory until then.

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
TASKS = {"choice": CHOICE_TASK, "rolling": ROLLING_TASK}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", type=int, default=2048, help="max_length (default: 2048)")
    parser.add_argument("--batch-size", type=int, default=16, help="default: 16")
    parser.add_argument("--model", help="what crossent eval --model takes (default: embedded)")
    parser.add_argument("--device", default="cpu", help="default: cpu")
    parser.add_argument("--questions", type=int, help="multiple-choice questions (default: batch)")
    parser.add_argument("--rolling-windows", type=int, help="windows of text (default: batch)")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--child", choices=TOOLS, help=argparse.SUPPRESS)
    parser.add_argument("--task", choices=TASKS, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        _write_tasks(
            folder, args.window, args.questions or args.batch_size,
            args.rolling_windows or args.batch_size,
        )  # fmt: skip
        runs = {
            (task, tool): _measure(tool, task, folder, args)
            for task in args.tasks
            for tool in TOOLS
        }
    _print(runs, args)


def _write_tasks(folder: Path, window: int, questions: int, windows: int) -> None:
    """The two tasks, sized so that each batch is full: text of about ``window`` tokens per
    request (SmolLM2 reads this prose at about 4 characters a token; the context stops 40
    characters short, so that context and choice fit in one window)."""
    from crossent.data import read_documents

    prose = read_documents([])[0].text  # CPython's documentation: a few MB of text
    chars = 4 * window
    rows = [
        {"context": prose[i * chars : (i + 1) * chars - 40], "choices": ["the", "a", "an", "of"]}
        for i in range(questions)
    ]
    (folder / "choice.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    rolling = prose[questions * chars : (questions + windows) * chars]  # not the questions' text
    (folder / "rolling.txt").write_text(rolling, encoding="utf-8")
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


def _measure(tool: str, task: str, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Run one tool on one task in a child process: its wall time, peak RSS, what it reported,
    and how it ended (``ok``, or the exit code or signal that stopped it)."""
    command = [
        sys.executable, __file__, "--child", tool, "--task", task, "--folder", str(folder),
        "--window", str(args.window), "--batch-size", str(args.batch_size),
        "--device", args.device, *(["--model", args.model] if args.model else []),
    ]  # fmt: skip
    env = {**os.environ, **OFFLINE, "HF_DATASETS_CACHE": str(folder / "cache")}
    log = folder / f"{task}-{tool}.log"
    with log.open("w") as stream:
        start = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=stream, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
    measured = {"wall_s": wall, "peak_rss_mib": usage.ru_maxrss / 1024}
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        ended = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        print(f"{task} {tool}: {ended}; its log ends:\n{log.read_text()[-2000:]}", file=sys.stderr)
        return {**measured, "ended": ended, "metrics": {}, "cuda_peak_mib": None}
    report: dict[str, Any] = json.loads((folder / f"{task}-{tool}.json").read_text())
    return {**report, **measured, "ended": "ok"}


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
        tasks=[TASKS[args.task]],
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
    (args.folder / f"{args.task}-{args.child}.json").write_text(json.dumps(report))


def _print(runs: dict[tuple[str, str], dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"window {args.window}, batch {args.batch_size}, device {args.device}")
    print(
        f"{'task':8} {'model':10} {'ended':18} {'wall s':>8} {'peak RSS MiB':>13} {'CUDA MiB':>9}"
    )
    for (task, tool), run in runs.items():
        cuda = "-" if run["cuda_peak_mib"] is None else f"{run['cuda_peak_mib']:.0f}"
        print(
            f"{task:8} {tool:10} {run['ended']:18} {run['wall_s']:8.1f} "
            f"{run['peak_rss_mib']:13.0f} {cuda:>9}"
        )
    for task in args.tasks:
        ours, theirs = runs[(task, "crossent")], runs[(task, "hf")]
        note = (
            "" if theirs["ended"] == "ok" else f" (hf {theirs['ended']}: its peak is a lower bound)"
        )
        print(f"{task}: crossent / hf: wall {ours['wall_s'] / theirs['wall_s']:.2f}x, peak RSS "
              f"{ours['peak_rss_mib'] / theirs['peak_rss_mib']:.2f}x{note}")  # fmt: skip
        if ours["cuda_peak_mib"] is not None and theirs["cuda_peak_mib"] is not None:
            print(f"{task}: crossent / hf: CUDA peak "
                  f"{ours['cuda_peak_mib'] / theirs['cuda_peak_mib']:.2f}x")  # fmt: skip
        for name, value in theirs["metrics"].items():
            print(f"{name}: hf {value:.8g}, crossent {ours['metrics'].get(name, float('nan')):.8g}")


if __name__ == "__main__":
    main()
