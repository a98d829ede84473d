"""The ``crossent`` command: parses arguments and calls the library, nothing else."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, NoReturn

from crossent import __version__
from crossent.bench import (
    DTYPES,
    IMPLEMENTATIONS,
    BenchCase,
    default_cases,
    format_rows,
    quick_cases,
    run_benchmark,
)

if TYPE_CHECKING:
    from crossent.data import Text
    from crossent.models.protocol import CausalLM

EXIT_USAGE = 2


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``crossent`` command line, one subcommand per job."""
    parser = _Parser(
        prog="crossent", description="Cross-entropy for language models: exact, lean and fast."
    )
    parser.add_argument("--version", action="version", version=f"crossent {__version__}")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    bench = commands.add_parser(
        "bench",
        help="time and measure the LM-head loss implementations",
        description="Forward+backward time, peak memory above the inputs and error against "
        "float64 of mean cross_entropy(hidden @ weight.T, target), each implementation in its "
        "own process. Without options: a GPT-2 head (N=8192, d=768, V=50304) and a Llama-3 "
        "head scaled to a CPU (N=4096, d=2048, V=128256).",
    )
    size = bench.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="one small GPT-2 head, about a minute")
    size.add_argument("--tokens", type=_positive_int, help="tokens N (with --dim and --vocab)")
    bench.add_argument("--dim", type=_positive_int, default=768, help="hidden width d")
    bench.add_argument("--vocab", type=_positive_int, default=50304, help="vocabulary size V")
    bench.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    bench.add_argument("--repeats", type=_positive_int, default=3, help="timed runs (median)")
    bench.add_argument(
        "--impl",
        action="append",
        choices=sorted(IMPLEMENTATIONS),
        help="an implementation to run (repeatable; default: every one installed)",
    )
    evaluate = commands.add_parser(
        "eval",
        help="cross-entropy, perplexity and bits per byte of a causal LM on texts",
        description="Score every token of the texts once (rolling windows; see crossent.data."
        "windows) and report nats and bits per token, perplexity, bits per byte, byte and word "
        "perplexity and top-1 accuracy. Defaults: the embedded SmolLM2-135M-Instruct on the "
        "Python documentation inside CPython. Under torchrun the windows are shared across "
        "the processes.",
    )
    evaluate.add_argument("--model", help=_MODEL_HELP)
    _add_scoring_options(evaluate)
    evaluate.add_argument(
        "--per-token",
        metavar="FILE",
        help="write every scored token (text, nats, rank, top-5) as .jsonl or .csv",
    )
    _add_output_options(evaluate)

    compare = commands.add_parser(
        "compare",
        help="two causal LMs on the same texts: bits per byte side by side, and per-token KL",
        description="Evaluate two models on the same texts, as crossent eval does. Bits per "
        "byte is the headline (comparable across tokenizers); when both share a tokenizer, "
        "also the per-token KL divergence of B from A, top-1 agreement and the tokens whose "
        "loss changed most.",
    )
    compare.add_argument(
        "--model", action="append", required=True, help=_MODEL_HELP + "; give it twice: A, then B"
    )
    _add_scoring_options(compare)
    compare.add_argument(
        "--largest", type=_positive_int, default=10, help="how many largest differences to list"
    )
    _add_output_options(compare)
    _add_train_parser(commands)
    _add_explain_parser(commands)
    return parser


def _add_train_parser(commands: argparse._SubParsersAction[_Parser]) -> None:
    from crossent.training.config import TrainConfig

    default = TrainConfig()
    train = commands.add_parser(
        "train",
        help="train or fine-tune a GPT by minimising cross-entropy, watching validation loss",
        description="Train a GPT-2-style model (or continue a pretrained one with --init, or "
        "distil one with --teacher) on texts, evaluating the whole validation split every "
        "--eval-every steps; keeps the best checkpoint in OUT/best and writes "
        "OUT/metrics.jsonl, OUT/losses.png and OUT/report.html. Without arguments: a small "
        "run on CPython's documentation that takes about 4 minutes on 2 CPU cores. Under "
        "torchrun: DistributedDataParallel with the same global batch.",
    )
    train.add_argument(
        "--data", action="append", help="texts as for crossent eval (default: CPython's docs)"
    )
    train.add_argument("--field", help="the text field of JSON Lines input")
    train.add_argument("--errors", choices=["strict", "replace"], default=default.errors)
    train.add_argument("--train-ratio", type=float, default=default.train_ratio)
    train.add_argument("--preset", default=default.preset, help="GPT size: tiny, cpu-small, gpt2")
    for name in ("n-layer", "n-head", "d-model", "context-length"):
        train.add_argument(f"--{name}", type=_positive_int, help="override the preset")
    train.add_argument("--dropout", type=float, default=default.dropout)
    train.add_argument("--tokenizer", choices=["bpe", "smollm2"], default=default.tokenizer)
    train.add_argument("--vocab-size", type=_positive_int, default=default.vocab_size)
    train.add_argument("--init", metavar="MODEL", help="fine-tune this model instead")
    train.add_argument("--teacher", metavar="MODEL", help="distil from this model")
    train.add_argument("--temperature", type=float, default=default.temperature)
    train.add_argument("--alpha", type=float, default=default.alpha, help="soft-term weight")
    train.add_argument("--batch-size", type=_positive_int, default=default.batch_size)
    train.add_argument("--grad-accum", type=_positive_int, default=default.grad_accum)
    train.add_argument("--max-steps", type=_positive_int, default=default.max_steps)
    train.add_argument(
        "--max-minutes", type=float, default=default.max_minutes, help="cap on training time"
    )
    train.add_argument("--lr", type=float, default=default.lr)
    train.add_argument("--min-lr-ratio", type=float, default=default.min_lr_ratio)
    train.add_argument("--warmup-steps", type=int, default=default.warmup_steps)
    train.add_argument("--weight-decay", type=float, default=default.weight_decay)
    train.add_argument("--grad-clip", type=float, default=default.grad_clip)
    train.add_argument("--label-smoothing", type=float, default=default.label_smoothing)
    train.add_argument("--z-loss", type=float, default=default.z_loss)
    train.add_argument("--eval-every", type=_positive_int, default=default.eval_every)
    train.add_argument("--eval-batch-size", type=_positive_int, default=default.eval_batch_size)
    train.add_argument(
        "--patience",
        type=int,
        default=default.patience,
        help="evaluations without improvement before stopping (0: never stop early)",
    )
    train.add_argument("--autocast", choices=["auto", "bfloat16", "none"], default="auto")
    train.add_argument("--compile", action="store_true", help="torch.compile the model")
    train.add_argument("--seed", type=int, default=default.seed)
    train.add_argument("--device", help="cpu, cuda, ... (default: CUDA when present)")
    train.add_argument("--out", help="output folder (default: runs/<date-time>); must be new")
    train.add_argument("--resume", metavar="OUT", help="continue the run in this folder")
    train.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="draw a progress bar on stderr (default: when stderr is a terminal)",
    )


_MODEL_HELP = "smollm2-135m (default), a Hugging Face directory or a .gguf file"


def _add_scoring_options(parser: argparse.ArgumentParser) -> None:
    """What to read, how to window it, and how to run the model: shared by eval and compare."""
    parser.add_argument(
        "--data",
        action="append",
        help="a text file, a directory of them, a .jsonl file (with --field) or - for stdin; "
        "repeatable (default: CPython's pydoc text)",
    )
    parser.add_argument("--field", help="the text field of JSON Lines input")
    parser.add_argument("--errors", choices=["strict", "replace"], default="strict")
    parser.add_argument(
        "--max-chars", type=_positive_int, help="score only the first N characters of each text"
    )
    parser.add_argument("--window", type=_positive_int, help="tokens per window, L")
    parser.add_argument("--stride", type=_positive_int, help="tokens between windows, S <= L")
    parser.add_argument("--prefix", choices=["bos", "eos", "none"], help="default: bos, else eos")
    parser.add_argument("--batch-size", type=_positive_int, default=4)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: CUDA when present)")
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="draw a progress bar on stderr (default: when stderr is a terminal)",
    )


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON (atomically)")
    parser.add_argument(
        "--report", metavar="FILE", help="write a self-contained HTML report (.html)"
    )


def _bench(args: argparse.Namespace) -> int:
    if args.quick:
        cases = quick_cases()
    elif args.tokens is not None:
        cases = [BenchCase(args.tokens, args.dim, args.vocab, args.dtype, args.repeats)]
    else:
        cases = default_cases()
    print(
        "Mean cross-entropy of an LM head, forward + backward, each implementation in its own "
        "process.\npeak MiB: peak resident memory above the inputs; |err|: distance from "
        "float64, nats;\nfloor: the three matrix products alone.\n",
        flush=True,
    )
    print(format_rows(run_benchmark(cases, args.impl)))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    # Imported here: transformers takes seconds to import, which `crossent bench` need not pay.
    import json

    from crossent.evaluation import evaluate
    from crossent.report.html import render_evaluation_report
    from crossent.report.per_token import per_token_format, write_per_token
    from crossent.report.progress import TokenProgress
    from crossent.report.table import format_evaluation

    if args.per_token is not None:
        per_token_format(args.per_token)
    documents = _documents(args, outputs=[args.json, args.report, args.per_token])
    with _distributed() as (rank, device):
        model = _load(args.model, args, device)
        show = _show_progress(args, rank)
        with TokenProgress("scoring", enabled=show) as progress:
            result = evaluate(
                model,
                documents,
                window=args.window,
                stride=args.stride,
                prefix=args.prefix,
                batch_size=args.batch_size,
                per_token=args.per_token is not None or args.report is not None,
                progress=progress,
            )
        if rank != 0:
            return 0
    print(f"{result.model}: window {result.window}, stride {result.stride}, prefix {result.prefix}")
    print(format_evaluation(result))
    _write(args.json, lambda: json.dumps(result.to_dict(), indent=2) + "\n")
    if args.per_token is not None:
        write_per_token(args.per_token, result)
        print(f"wrote {args.per_token}")
    _write(args.report, lambda: render_evaluation_report(result))
    return 0


def _show_progress(args: argparse.Namespace, rank: int) -> bool:
    """Draw a bar on rank 0 only: when asked to, or by default when stderr is a terminal."""
    return rank == 0 and (args.progress if args.progress is not None else sys.stderr.isatty())


def _write(path: str | None, text: Callable[[], str]) -> None:
    """Write ``text()`` to ``path`` atomically and say so; nothing when no path was asked for."""
    from crossent.files import write_text_atomically

    if path is not None:
        write_text_atomically(path, text())
        print(f"wrote {path}")


def _compare(args: argparse.Namespace) -> int:
    import json

    from crossent.comparison import compare
    from crossent.report.html import render_comparison_report
    from crossent.report.progress import TokenProgress
    from crossent.report.table import format_comparison

    if len(args.model) != 2:
        raise ValueError(f"compare takes exactly two --model options, got {len(args.model)}")
    documents = _documents(args, outputs=[args.json, args.report])
    with _distributed() as (rank, device):
        model_a = _load(args.model[0], args, device)
        model_b = _load(args.model[1], args, device)
        show = _show_progress(args, rank)
        with TokenProgress("comparing", enabled=show) as progress:
            comparison = compare(
                model_a,
                model_b,
                documents,
                window=args.window,
                stride=args.stride,
                prefix=args.prefix,
                batch_size=args.batch_size,
                largest=args.largest,
                progress=progress,
            )
        if rank != 0:
            return 0
    print(format_comparison(comparison))
    _write(args.json, lambda: json.dumps(comparison.to_dict(), indent=2) + "\n")
    _write(args.report, lambda: render_comparison_report(comparison))
    return 0


def _train(args: argparse.Namespace) -> int:
    import dataclasses
    import time
    from pathlib import Path

    from tqdm import tqdm

    from crossent.training import TrainConfig, train

    out = args.resume or args.out or time.strftime("runs/%Y%m%d-%H%M%S")
    if args.resume is None and Path(out).exists() and any(Path(out).iterdir()):
        raise ValueError(
            f"output folder {out} is not empty; choose a new --out, or --resume {out} to continue"
        )
    # The flags are named after TrainConfig's fields; those that need a conversion follow.
    flags = {
        field.name: getattr(args, field.name)
        for field in dataclasses.fields(TrainConfig)
        if hasattr(args, field.name)
    }
    flags.update(data=tuple(args.data or ()), patience=args.patience or None, out=out)
    config = TrainConfig(**flags)
    with _distributed() as (rank, device):
        if device is not None:
            config = dataclasses.replace(config, device=device)
        show = _show_progress(args, rank)
        bar = tqdm(
            desc="training", unit="tok", unit_scale=True, disable=not show, leave=False,
            dynamic_ncols=True,
        )  # fmt: skip

        def progress(step: int, steps: int, tokens: int, loss: float) -> None:
            bar.total = steps * tokens
            bar.update(step * tokens - bar.n)
            bar.set_postfix(step=step, loss=f"{loss:.3f}", refresh=False)

        def log(line: str) -> None:
            if rank == 0:
                bar.write(line, file=sys.stdout)

        try:
            result = train(config, resume=args.resume, log=log, progress=progress)
        finally:
            bar.close()
        if rank != 0:
            return 0
    first, best = result.records[0], result.best
    print(
        f"{result.parameters:,} parameters; training text {result.split.train_bytes} bytes "
        f"({result.train_tokens} tokens), validation {result.split.validation_bytes} bytes "
        f"({result.validation_tokens} tokens)"
    )
    print(
        f"validation loss {first.val_loss:.4f} -> {best.val_loss:.4f} nats/token "
        f"({best.val_bits_per_byte:.4f} bits/byte) at step {best.step}; stopped: {result.stopped}"
    )
    print(f"outputs in {result.out}: best/, last/, metrics.jsonl, losses.png, report.html")
    return 0


def _add_explain_parser(commands: argparse._SubParsersAction[_Parser]) -> None:
    explain = commands.add_parser(
        "explain",
        help="show, with real numbers, how cross-entropy is computed and why it behaves as it does",
        description="Three explanations, each checked against independent computations. "
        "Toy distributions: --probs (or --logits) with --target (one-hot) or --p (soft), e.g. "
        "--probs 0.2,0.7,0.1 --labels dog,cat,fish --target cat; without any input, that "
        "example. A text: the six steps from a model's logits to its loss, and every "
        "position's next token with its rank and alternatives. --stability: the naive "
        "-log(softmax(z) + 1e-10) against the log-space loss on extreme logits. Lists are "
        "comma-separated; write a list that starts with a minus sign as --logits=-1,2,3.",
    )
    explain.add_argument("text", nargs="?", help="a text for the model to read")
    explain.add_argument("--model", help=_MODEL_HELP + " (with a text)")
    explain.add_argument("--prefix", choices=["bos", "eos", "none"], help="default: bos, else eos")
    explain.add_argument("--top-k", type=_positive_int, default=5, help="alternatives shown")
    explain.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    explain.add_argument("--device", help="cpu, cuda, ... (default: CUDA when present)")
    prediction = explain.add_mutually_exclusive_group()
    prediction.add_argument("--probs", type=_numbers, help="the predicted probabilities q")
    prediction.add_argument("--logits", type=_numbers, help="logits instead: q = softmax")
    explain.add_argument("--labels", type=_names, help="one name per class (default 0, 1, ...)")
    target = explain.add_mutually_exclusive_group()
    target.add_argument("--target", help="the label of the right answer (a one-hot p)")
    target.add_argument("--p", type=_numbers, help="a target distribution instead")
    explain.add_argument(
        "--label-smoothing", type=float, default=0.0, help="eps: the target becomes "
        "(1 - eps) p + eps / V, as in PyTorch",
    )  # fmt: skip
    explain.add_argument(
        "--stability", action="store_true", help="the naive loss against the log-space one "
        "(default cases, or the row of --logits with --target in float32 and float64)",
    )  # fmt: skip
    explain.add_argument("--json", metavar="FILE", help="write the numbers as JSON (atomically)")
    explain.add_argument("--html", metavar="FILE", help="write a self-contained page (.html)")
    explain.add_argument("--plots", metavar="DIR", help="write the figures as PNG files here")


def _numbers(text: str) -> list[float]:
    try:
        return [float(item) for item in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers such as 0.2,0.7,0.1, got {text!r}"
        ) from None


def _names(text: str) -> list[str]:
    return [item.strip() for item in text.split(",")]


def _explain(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from crossent import explain

    toy = [name for name in ("probs", "logits", "labels", "target", "p") if vars(args)[name]]
    toy += ["label-smoothing"] if args.label_smoothing else []
    model = [name for name in ("model", "prefix") if vars(args)[name] is not None]
    if args.text is not None and (toy or args.stability):
        raise ValueError(f"a text takes no --{toy[0] if toy else 'stability'}; explain one thing")
    if args.text is None and model:
        raise ValueError(f"--{model[0]} is for explaining a text; give one")
    if args.html is not None and Path(args.html).suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"--html {args.html} must end in .html")
    for output in (args.json, args.html):
        if output is not None and not Path(output).resolve().parent.is_dir():
            raise ValueError(
                f"output {output}: folder {Path(output).resolve().parent} does not exist"
            )
    if args.json is not None and args.html is not None and args.json == args.html:
        raise ValueError(f"--json and --html both name {args.json}")

    result: explain.DistributionExplanation | explain.TextExplanation | explain.StabilityExplanation
    if args.stability:
        if args.probs or args.p or args.label_smoothing:
            raise ValueError("--stability takes --logits, --labels and --target only")
        cases = list(explain.DEFAULT_STABILITY_CASES)
        if args.logits:
            if args.target is None:
                raise ValueError("--stability with --logits needs --target")
            labels = args.labels or [str(index) for index in range(len(args.logits))]
            if len(labels) != len(args.logits):
                raise ValueError(f"{len(labels)} labels for {len(args.logits)} logits")
            if args.target not in labels:
                raise ValueError(
                    f"target {args.target!r} is not one of the labels: {', '.join(labels)}"
                )
            row, index = tuple(args.logits), labels.index(args.target)
            cases = [
                explain.StabilityCase(f"your logits, {dtype}", row, index, dtype)
                for dtype in ("float32", "float64")
            ]
        elif toy:
            raise ValueError(f"--stability without --logits takes no --{toy[0]}")
        result = explain.explain_stability(cases)
    elif args.text is not None:
        explain.check_text(args.text)
        result = explain.explain_text(
            _load(args.model, args, None), args.text, prefix=args.prefix, top_k=args.top_k
        )
    elif not toy:
        print("No input given: seed 000's example (see crossent explain --help).\n")
        result = explain.explain_distributions(
            [0.2, 0.7, 0.1], labels=["dog", "cat", "fish"], target="cat"
        )
    else:
        if args.probs is None and args.logits is None:
            raise ValueError("give the prediction with --probs or --logits")
        if args.target is None and args.p is None:
            raise ValueError("give the right answer with --target LABEL, or a distribution --p")
        result = explain.explain_distributions(
            args.probs,
            logits=args.logits,
            labels=args.labels,
            target=args.target,
            p=args.p,
            label_smoothing=args.label_smoothing,
        )
    # matplotlib is imported only now, so that bad input is refused without waiting for it
    from crossent.report.explain import format_explanation, render_explanation_page, write_plots

    print(format_explanation(result))
    curves = explain.loss_curves_for(result)
    _write(args.json, lambda: json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n")
    _write(args.html, lambda: render_explanation_page(result, curves))
    if args.plots is not None:
        for path in write_plots(result, curves, args.plots):
            print(f"wrote {path}")
    failed = [check.what for check in (*result.checks, *curves.checks) if not check.agrees]
    if failed:
        print(f"crossent: error: checks disagree: {'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _documents(args: argparse.Namespace, *, outputs: Sequence[str | None]) -> list[Text]:
    """The texts to score, after checking everything that can be checked before a model loads.

    Refuses a stride above the window, a report that is not ``.html``, and an output file that
    is one of the inputs or another output (either would be overwritten).
    """
    from pathlib import Path

    from crossent.data import read_documents
    from crossent.data.sources import first_characters

    if args.window is not None and args.stride is not None and args.stride > args.window:
        raise ValueError(f"stride {args.stride} is outside [1, {args.window}] (the window)")
    if args.report is not None and Path(args.report).suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"--report {args.report} must end in .html")
    seen = {Path(path).resolve(): f"input {path}" for path in args.data or [] if path != "-"}
    for output in outputs:
        if output is None:
            continue
        resolved = Path(output).resolve()
        if resolved in seen:
            raise ValueError(f"output {output} is also {seen[resolved]}; it would be overwritten")
        if not resolved.parent.is_dir():
            raise ValueError(f"output {output}: folder {resolved.parent} does not exist")
        seen[resolved] = f"output {output}"
    documents = read_documents(args.data or [], field=args.field, errors=args.errors)
    if args.max_chars is not None:
        documents = [first_characters(doc, args.max_chars) for doc in documents]
    return documents


def _load(spec: str | None, args: argparse.Namespace, device: str | None) -> CausalLM:
    import torch
    from transformers.utils import logging as transformers_logging

    from crossent.models import load_model

    # stderr is for crossent's own messages, not transformers' progress bars.
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    dtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
    return load_model(spec, dtype=dtype, device=args.device or device)


@contextlib.contextmanager
def _distributed() -> Iterator[tuple[int, str | None]]:
    """Under torchrun, a process group for the run: yields (rank, this rank's device or None).

    gloo on the CPU, NCCL with one GPU per local rank; a single process yields (0, None).
    """
    import torch
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        yield 0, None
        return
    if torch.cuda.is_available():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl")
        device: str | None = f"cuda:{local_rank}"
    else:
        dist.init_process_group("gloo")
        device = "cpu"
    try:
        yield dist.get_rank(), device
    finally:
        dist.destroy_process_group()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``crossent`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "bench":
            return _bench(args)
        if args.command == "eval":
            return _evaluate(args)
        if args.command == "compare":
            return _compare(args)
        if args.command == "train":
            return _train(args)
        if args.command == "explain":
            return _explain(args)
    except (ValueError, TypeError, OSError) as error:
        print(f"crossent: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("crossent: interrupted", file=sys.stderr)
        return 130
    raise AssertionError(f"unhandled command {args.command!r}")


if __name__ == "__main__":
    sys.exit(main())
