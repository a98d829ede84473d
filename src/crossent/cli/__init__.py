"""The ``crossent`` command: one thin module per subcommand, each parsing and calling the library.

``crossent --version``, ``crossent COMMAND --help`` and every argument error are answered before
anything heavy is imported (PyTorch, transformers, matplotlib): each command module imports the
library it calls only inside its ``run``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from crossent.cli import bench, compare, evaluate, explain, lm_eval, sample, train
from crossent.cli.arguments import EXIT_USAGE, Parser
from crossent.extras import MissingExtraError, extra_for
from crossent.failures import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    RunError,
    defer_interrupts_in_import,
    exit_code_of,
    signal_received,
    terminate_as_interrupt,
)
from crossent.version import __version__

_COMMANDS = (bench, evaluate, compare, train, explain, sample, lm_eval)


def build_parser() -> Parser:
    """The ``crossent`` command line, one subcommand per job."""
    parser = Parser(
        prog="crossent", description="Cross-entropy for language models: exact, lean and fast."
    )
    parser.add_argument("--version", action="version", version=f"crossent {__version__}")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=Parser
    )
    for command in _COMMANDS:
        command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``crossent`` console script; returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
        with terminate_as_interrupt():
            defer_interrupts_in_import("torch")  # a Ctrl-C inside its import would abort it
            code: int = args.run(args)
    except KeyboardInterrupt as interrupt:
        return _interrupted(interrupt)
    except Exception as error:
        # A Ctrl-C that landed in an import and came out as another error (NumPy left half
        # imported, then recursing): the user's interrupt, not a failure to report.
        hidden = signal_received()
        return _failed(error) if hidden is None else _interrupted(hidden)
    swallowed = signal_received()
    if swallowed is not None and code not in (EXIT_INTERRUPTED, EXIT_TERMINATED):
        return _interrupted(swallowed)  # an import guard swallowed it, and the run went on
    return code


def _failed(error: Exception) -> int:
    """The one line and the exit code of a command that raised ``error``."""
    if isinstance(error, MissingExtraError):
        print(f"crossent: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(error, ModuleNotFoundError):
        # A path no require() guarded: still one line, naming the extra when one brings it.
        extra = extra_for(error.name or "")
        if extra is None:
            raise error
        print(
            f"crossent: error: {error.name} is missing: pip install 'crossent[{extra}]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if isinstance(error, (ValueError, TypeError, OSError)):
        print(f"crossent: error: {_message(error)}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(error, RunError):  # the inputs were fine; the run could not go on
        print(f"crossent: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    raise error


def _interrupted(interrupt: KeyboardInterrupt) -> int:
    """Ctrl-C's or SIGTERM's one line and exit code (130, 143)."""
    print("crossent: interrupted", file=sys.stderr)
    _forget_unhandled_interrupt()
    return exit_code_of(interrupt)


def _forget_unhandled_interrupt() -> None:
    """Keep the exit code 130 that :func:`_interrupted` returns.

    CPython marks a ``KeyboardInterrupt`` that escapes code run through its ``PyRun_*`` calls
    and, when the interpreter ends, kills the process with SIGINT instead of exiting with the
    code given, even when Python code caught the exception later (a Ctrl-C 0.3 to 0.85 s into
    ``crossent eval``, while PyTorch is imported, did that in 2 of 36 tries). Every such call
    resets the mark first, so running an empty string through one clears it.
    """
    import ctypes

    ctypes.pythonapi.PyRun_SimpleString(b"")


def _message(error: BaseException) -> str:
    """The error's line, naming the flag rather than the keyword argument where it has both."""
    from crossent.data.sources import InputError

    return error.command_line if isinstance(error, InputError) else str(error)
