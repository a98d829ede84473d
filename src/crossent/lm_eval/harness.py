"""lm-eval's own command line, with the ``crossent`` model registered and chosen by default.

Every argument goes to lm-evaluation-harness unchanged (``--tasks``, ``--include_path``,
``--model_args pretrained=DIR``, ``--batch_size``, ``--output_path``...), so its documentation
is this command's. Two things are added, nothing is parsed here:

* without a subcommand, ``run`` is meant (as ``lm-eval`` itself assumes);
* ``run`` without ``--model`` (or ``--config``, whose file may name one) gets ``--model crossent``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["SUBCOMMANDS", "harness_arguments", "run_harness"]

SUBCOMMANDS = ("run", "ls", "validate")
_MODEL_FLAGS = ("--model", "-M", "--config", "-C")


def harness_arguments(arguments: Sequence[str]) -> list[str]:
    """``arguments`` as lm-eval's command line reads them, with crossent's two defaults.

    >>> harness_arguments(["--tasks", "lambada"])
    ['run', '--tasks', 'lambada', '--model', 'crossent']
    >>> harness_arguments(["ls", "tasks"])
    ['ls', 'tasks']
    """
    given = list(arguments)
    if not given or given[0] not in SUBCOMMANDS:
        given.insert(0, "run")
    named = any(arg in _MODEL_FLAGS or arg.startswith(("--model=", "--config=")) for arg in given)
    if given[0] == "run" and not named and not {"-h", "--help"} & set(given):
        given += ["--model", "crossent"]
    return given


def run_harness(arguments: Sequence[str]) -> int:
    """Run lm-eval's command line on ``arguments`` with the ``crossent`` model registered.

    Returns:
        lm-eval's exit code: 0 when it finished, its own code when it stopped (2 for an
        argument it refused).
    """
    from lm_eval._cli import HarnessCLI
    from lm_eval.utils import setup_logging

    import crossent.lm_eval.model  # noqa: F401  (registers the "crossent" model)

    saved = sys.argv
    sys.argv = ["lm-eval", *harness_arguments(arguments)]
    try:
        setup_logging()
        parser = HarnessCLI()
        parser.execute(parser.parse_args())
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            return stop.code or 0
        print(stop.code, file=sys.stderr)  # what sys.exit prints for a message it is given
        return 1
    finally:
        sys.argv = saved
    return 0
