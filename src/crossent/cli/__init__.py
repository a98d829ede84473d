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
from crossent.failures import EXIT_FAILED, RunError, exit_code_of, terminate_as_interrupt
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
            code: int = args.run(args)
    except MissingExtraError as error:
        print(f"crossent: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except ModuleNotFoundError as error:
        # A path no require() guarded: still one line, naming the extra when one brings it.
        extra = extra_for(error.name or "")
        if extra is None:
            raise
        print(
            f"crossent: error: {error.name} is missing: pip install 'crossent[{extra}]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except (ValueError, TypeError, OSError) as error:
        print(f"crossent: error: {_message(error)}", file=sys.stderr)
        return EXIT_USAGE
    except RunError as error:  # the inputs were fine; the run could not go on
        print(f"crossent: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt as interrupt:
        print("crossent: interrupted", file=sys.stderr)
        return exit_code_of(interrupt)
    return code


def _message(error: BaseException) -> str:
    """The error's line, naming the flag rather than the keyword argument where it has both."""
    from crossent.data.sources import InputError

    return error.command_line if isinstance(error, InputError) else str(error)
