"""The ``crossent`` command: parses arguments and calls the library, nothing else."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

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
        "Python documentation inside CPython.",
    )
    evaluate.add_argument(
        "--model", help="smollm2-135m (default), a Hugging Face directory or a .gguf file"
    )
    evaluate.add_argument(
        "--data",
        action="append",
        help="a text file, a directory of them, a .jsonl file (with --field) or - for stdin; "
        "repeatable (default: CPython's pydoc text)",
    )
    evaluate.add_argument("--field", help="the text field of JSON Lines input")
    evaluate.add_argument("--errors", choices=["strict", "replace"], default="strict")
    evaluate.add_argument("--window", type=_positive_int, help="tokens per window, L")
    evaluate.add_argument("--stride", type=_positive_int, help="tokens between windows, S <= L")
    evaluate.add_argument("--prefix", choices=["bos", "eos", "none"], help="default: bos, else eos")
    evaluate.add_argument("--batch-size", type=_positive_int, default=4)
    evaluate.add_argument(
        "--max-chars", type=_positive_int, help="score only the first N characters of each text"
    )
    evaluate.add_argument("--json", metavar="FILE", help="write the results as JSON (atomically)")
    return parser


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
    from pathlib import Path

    from transformers.utils import logging as transformers_logging

    from crossent.data import read_documents
    from crossent.data.sources import first_characters
    from crossent.evaluation import evaluate
    from crossent.models import load_model
    from crossent.report.files import write_text_atomically
    from crossent.report.table import format_evaluation

    if args.window is not None and args.stride is not None and args.stride > args.window:
        raise ValueError(f"stride {args.stride} is outside [1, {args.window}] (the window)")
    inputs = [Path(path).resolve() for path in args.data or [] if path != "-"]
    if args.json is not None and Path(args.json).resolve() in inputs:
        raise ValueError(f"--json {args.json} is one of the inputs; it would be overwritten")
    documents = read_documents(args.data or [], field=args.field, errors=args.errors)
    if args.max_chars is not None:
        documents = [first_characters(doc, args.max_chars) for doc in documents]
    # stderr is for crossent's own messages, not transformers' progress bars.
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    model = load_model(args.model)
    result = evaluate(
        model,
        documents,
        window=args.window,
        stride=args.stride,
        prefix=args.prefix,
        batch_size=args.batch_size,
    )
    print(f"{result.model}: window {result.window}, stride {result.stride}, prefix {result.prefix}")
    print(format_evaluation(result))
    if args.json is not None:
        write_text_atomically(args.json, json.dumps(result.to_dict(), indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``crossent`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "bench":
            return _bench(args)
        if args.command == "eval":
            return _evaluate(args)
    except (ValueError, TypeError, OSError) as error:
        print(f"crossent: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("crossent: interrupted", file=sys.stderr)
        return 130
    raise AssertionError(f"unhandled command {args.command!r}")


if __name__ == "__main__":
    sys.exit(main())
