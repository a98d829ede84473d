"""The ``crossent`` command: parses arguments and calls the library, nothing else."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
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
    return parser


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
    from crossent.report.files import write_text_atomically
    from crossent.report.html import render_evaluation_report
    from crossent.report.per_token import per_token_format, write_per_token
    from crossent.report.progress import TokenProgress
    from crossent.report.table import format_evaluation

    if args.per_token is not None:
        per_token_format(args.per_token)
    documents = _documents(args, outputs=[args.json, args.report, args.per_token])
    with _distributed() as (rank, device):
        model = _load(args.model, args, device)
        show = rank == 0 and (args.progress if args.progress is not None else sys.stderr.isatty())
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
    if args.json is not None:
        write_text_atomically(args.json, json.dumps(result.to_dict(), indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.per_token is not None:
        write_per_token(args.per_token, result)
        print(f"wrote {args.per_token}")
    if args.report is not None:
        write_text_atomically(args.report, render_evaluation_report(result))
        print(f"wrote {args.report}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from crossent.comparison import compare
    from crossent.report.files import write_text_atomically
    from crossent.report.html import render_comparison_report
    from crossent.report.progress import TokenProgress
    from crossent.report.table import format_comparison

    if len(args.model) != 2:
        raise ValueError(f"compare takes exactly two --model options, got {len(args.model)}")
    documents = _documents(args, outputs=[args.json, args.report])
    with _distributed() as (rank, device):
        model_a = _load(args.model[0], args, device)
        model_b = _load(args.model[1], args, device)
        show = rank == 0 and (args.progress if args.progress is not None else sys.stderr.isatty())
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
    if args.json is not None:
        kl = comparison.kl
        record = {
            "a": comparison.a.to_dict(),
            "b": comparison.b.to_dict(),
            "shared_tokenizer": comparison.shared_tokenizer,
            "kl": None if kl is None else asdict(kl),
            "largest": [asdict(difference) for difference in comparison.largest],
        }
        write_text_atomically(args.json, json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.report is not None:
        write_text_atomically(args.report, render_comparison_report(comparison))
        print(f"wrote {args.report}")
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
    except (ValueError, TypeError, OSError) as error:
        print(f"crossent: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("crossent: interrupted", file=sys.stderr)
        return 130
    raise AssertionError(f"unhandled command {args.command!r}")


if __name__ == "__main__":
    sys.exit(main())
