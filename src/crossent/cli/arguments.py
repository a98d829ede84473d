"""What the commands share: the parser class, argument types, options and output writing.

Every option has a help line, and every default is shown: argparse's own defaults by the help
formatter (``(default: 4)``), the ones chosen later (the window from the model's context, the
device from what is present) in the help text itself.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias

from crossent.extras import require

if TYPE_CHECKING:
    from crossent.models.protocol import CausalLM

EXIT_USAGE = 2
# What --model accepts: crossent.models.loading.load_model decides, in this order. The default
# model's quantisation is stated here because --help may not read the GGUF file (that needs
# numpy); tests/test_cli_input.py checks it against the file's header.
MODEL_HELP = (
    "smollm2-135m (the embedded SmolLM2-135M-Instruct, a 4-bit Q4_1 GGUF file dequantised to "
    "float32: not the published weights), a crossent checkpoint folder (a training "
    "run's RUN/best or RUN/last), a Hugging Face model directory (with config.json), a .gguf "
    "file, or a Hugging Face Hub name such as HuggingFaceTB/SmolLM2-135M (downloaded through "
    "transformers' cache; needs the network the first time)"
)
DEFAULT_MODEL_HELP = f"the model: {MODEL_HELP} (default: smollm2-135m)"
# Must equal crossent.evaluation.DEFAULT_WINDOW_CAP (importing it here would import torch).
WINDOW_CAP = 2048
# What add_subparsers() returns, which each command module adds its parser to.
Commands: TypeAlias = "argparse._SubParsersAction[Parser]"


class HelpFormatter(argparse.HelpFormatter):
    """Help that ends each option's line with its default, unless the line already says it.

    Unlike ``argparse.ArgumentDefaultsHelpFormatter``, no ``(default: None)`` or
    ``(default: False)`` is shown: an option without a value by default says in its help what
    happens without it.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        shown = default not in (None, False, argparse.SUPPRESS) and action.option_strings
        if shown and "default" not in text and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit code 2, and whose help
    shows every default (:class:`HelpFormatter`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

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
    parser.add_argument(
        "--field",
        metavar="NAME",
        help="the key that holds the text in each line of JSON Lines input (.jsonl files and "
        "stdin); required for them, an error for other files",
    )
    parser.add_argument(
        "--name-field",
        metavar="NAME",
        help="name JSON Lines documents by this field of each line (default: path:line)",
    )
    parser.add_argument(
        "--errors",
        choices=["strict", "replace"],
        default="strict",
        help="invalid UTF-8 in a text: strict stops with its byte offset, replace scores "
        "U+FFFD in its place (bytes are still counted as stored)",
    )
    parser.add_argument(
        "--max-chars",
        type=positive_int,
        metavar="N",
        help="score only the first N characters of each text (default: all of it)",
    )
    add_model_run_options(parser, scoring=True)
    add_progress_option(parser)


def add_model_run_options(parser: argparse.ArgumentParser, *, scoring: bool) -> None:
    """Windows, prefix, batch size, dtype and device; only the last three without ``scoring``."""
    if scoring:
        parser.add_argument(
            "--window",
            type=positive_int,
            metavar="L",
            help=f"tokens per window (default: the model's context, at most {WINDOW_CAP})",
        )
        parser.add_argument(
            "--stride",
            type=positive_int,
            metavar="S",
            help="tokens between window starts, S <= L; each window scores only its last S "
            "tokens (default: L, windows side by side)",
        )
        parser.add_argument(
            "--batch-size",
            type=positive_int,
            help="windows per forward pass (default: on a CPU as many as fit in 512 tokens, "
            "at least one, which measured faster than larger passes; on a GPU 4)",
        )
    parser.add_argument(
        "--prefix",
        choices=["bos", "eos", "none"],
        help="the token put before each text, so its first token is scored (default: bos, "
        "else eos when the tokenizer has no BOS; none leaves the first token unscored)",
    )
    parser.add_argument(
        "--dtype",
        choices=["float32", "bfloat16", "auto"],
        default="float32",
        help="the weights' dtype while scoring; bfloat16 halves the weights' memory and is "
        "about twice as fast on a CPU with bf16 matrix instructions (AMX, AVX512-BF16) or a "
        "GPU from Ampere on, but its numbers are approximate: a few thousandths of a nat per "
        "token from float32's, and they move by as much with --batch-size; auto picks bfloat16 "
        "only where it is fast, else float32, and says which (docs/benchmarks.md)",
    )
    parser.add_argument(
        "--device",
        help="cpu, cuda, cuda:1, ... (default: cuda when present, else cpu; under torchrun "
        "each process's own GPU)",
    )


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
        help="draw a progress bar on stderr, or not (default: when stderr is a terminal)",
    )


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """``--json`` and ``--report``; like every output, written atomically, folders created."""
    parser.add_argument(
        "--json",
        metavar="FILE",
        help="write the results as JSON (atomically; missing folders are created)",
    )
    parser.add_argument(
        "--report",
        metavar="FILE",
        help="write a self-contained HTML report (.html; missing folders are created)",
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

    from crossent.models import load_model

    # load_model draws no transformers progress bar: stderr is for crossent's own messages.
    dtype = torch.bfloat16 if chosen_dtype(args.dtype, args.device or device) else torch.float32
    return load_model(spec, dtype=dtype, device=args.device or device)


def chosen_dtype(dtype: str, device: str | None) -> bool:
    """Whether ``--dtype`` asks for bfloat16; ``auto`` asks where it is fast
    (:func:`crossent.hardware.bf16_matmul_is_fast`) and says on stderr what it chose."""
    if dtype != "auto":
        return dtype == "bfloat16"
    from crossent.hardware import bf16_matmul_is_fast

    fast = bf16_matmul_is_fast(device)
    where = device or "this machine"
    print(
        f"--dtype auto: bfloat16 ({where} multiplies bf16 matrices natively)"
        if fast
        else f"--dtype auto: float32 ({where} has no fast bf16 matrix products)",
        file=sys.stderr,
    )
    return fast
