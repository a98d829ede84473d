"""The ``crossent`` command: parses arguments and calls the library, nothing else."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from crossent import __version__
from crossent.bench import DTYPES, BenchCase, default_cases, format_rows, quick_cases, run_benchmark

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
        help="time and measure the cross-entropy implementations on LM-sized logits",
        description="Forward+backward time, peak memory and error against float64 of each "
        "cross-entropy implementation, each run in its own process.",
    )
    size = bench.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a half-minute demonstration")
    size.add_argument("--rows", type=_positive_int, help="tokens per batch (with --vocab)")
    bench.add_argument("--vocab", type=_positive_int, default=50304, help="vocabulary size")
    bench.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    bench.add_argument("--repeats", type=_positive_int, default=5, help="timed runs (median)")
    return parser


def _bench(args: argparse.Namespace) -> int:
    if args.quick:
        cases = quick_cases()
    elif args.rows is not None:
        cases = [BenchCase(args.rows, args.vocab, args.dtype, args.repeats)]
    else:
        cases = default_cases()
    print(
        "Mean cross-entropy, forward + backward, each implementation in its own process.\n"
        "peak MiB: peak resident memory above the inputs; |err|: distance from float64, nats.\n"
    )
    print(format_rows(run_benchmark(cases)))
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
