"""The error of a run that went wrong after its inputs were accepted.

A bad flag or an unreadable file is the user's to fix, and the command line answers it with exit
code 2 (``ValueError``). :class:`RunError` is the other kind: the inputs were fine, but the run
could not go on (the loss became NaN, another run holds the output folder). The command line
prints its one line and exits with 1, and what the run had written before stays as it was.
"""

from __future__ import annotations

__all__ = ["EXIT_FAILED", "NonFiniteLossError", "RunError"]

EXIT_FAILED = 1


class RunError(RuntimeError):
    """A run stopped by what happened during it; the message is one line saying what and where.

    Example:
        >>> str(RunError("step 7: the training loss is nan"))
        'step 7: the training loss is nan'
    """


class NonFiniteLossError(ValueError):
    """A loss summed into a result was NaN: the model diverged or read bad input.

    A ``ValueError``, as any input that cannot be scored; training turns it into a
    :class:`RunError` naming the step.
    """
