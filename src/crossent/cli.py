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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``crossent`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "bench":
            return _bench(args)
    except (ValueError, TypeError, OSError) as error:
        print(f"crossent: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("crossent: interrupted", file=sys.stderr)
        return 130
    raise AssertionError(f"unhandled command {args.command!r}")


if __name__ == "__main__":
    sys.exit(main())
