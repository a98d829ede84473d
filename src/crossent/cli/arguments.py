"""What the commands share: the parser class, argument types, options and output writing."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias

from crossent.extras import require

if TYPE_CHECKING:
    from crossent.models.protocol import CausalLM

EXIT_USAGE = 2
MODEL_HELP = "smollm2-135m (default), a Hugging Face directory or a .gguf file"
# What add_subparsers() returns, which each command module adds its parser to.
Commands: TypeAlias = "argparse._SubParsersAction[Parser]"


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    """An argument type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def add_scoring_options(parser: argparse.ArgumentParser) -> None:
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
        "--max-chars", type=positive_int, help="score only the first N characters of each text"
    )
    parser.add_argument("--window", type=positive_int, help="tokens per window, L")
    parser.add_argument("--stride", type=positive_int, help="tokens between windows, S <= L")
    parser.add_argument("--prefix", choices=["bos", "eos", "none"], help="default: bos, else eos")
    parser.add_argument("--batch-size", type=positive_int, default=4)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: CUDA when present)")
    add_progress_option(parser)


def scoring_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`crossent.evaluate` and :func:`crossent.compare` that
    :func:`add_scoring_options` parsed."""
    return {
        "window": args.window,
        "stride": args.stride,
        "prefix": args.prefix,
        "batch_size": args.batch_size,
    }


def add_progress_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="draw a progress bar on stderr (default: when stderr is a terminal)",
    )


def add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON (atomically)")
    parser.add_argument(
        "--report", metavar="FILE", help="write a self-contained HTML report (.html)"
    )


def show_progress(args: argparse.Namespace, rank: int) -> bool:
    """Draw a bar on rank 0 only: when asked to, or by default when stderr is a terminal."""
    return rank == 0 and (args.progress if args.progress is not None else sys.stderr.isatty())


def write_output(path: str | None, text: Callable[[], str]) -> None:
    """Write ``text()`` to ``path`` atomically and say so; nothing when no path was asked for."""
    from crossent.files import write_text_atomically

    if path is not None:
        write_text_atomically(path, text())
        print(f"wrote {path}")


def load(spec: str | None, args: argparse.Namespace, device: str | None) -> CausalLM:
    """The model ``spec`` names, in the ``--dtype`` and on the ``--device`` the user asked for."""
    require("hf", "loading a model")
    import torch
    from transformers.utils import logging as transformers_logging

    from crossent.models import load_model

    # stderr is for crossent's own messages, not transformers' progress bars.
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    dtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
    return load_model(spec, dtype=dtype, device=args.device or device)
