"""The error of a run that went wrong after its inputs were accepted.

A bad flag or an unreadable file is the user's to fix, and the command line answers it with exit
code 2 (``ValueError``). :class:`RunError` is the other kind: the inputs were fine, but the run
could not go on (the loss became NaN, another run holds the output folder). The command line
prints its one line and exits with 1, and what the run had written before stays as it was.

SIGTERM (what ``kill``, a job scheduler or ``torchrun`` sends) ends a command as Ctrl-C does:
:func:`terminate_as_interrupt` makes it raise :class:`Terminated`, a ``KeyboardInterrupt``, so
that every output being written is removed or finished (never left half-written), training
saves what lets it resume, and the exit code is 143 (128 + SIGTERM) instead of 130.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

__all__ = [
    "EXIT_FAILED",
    "NonFiniteLossError",
    "RunError",
    "Terminated",
    "exit_code_of",
    "terminate_as_interrupt",
]

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


EXIT_INTERRUPTED = 128 + signal.SIGINT
EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process was, as Ctrl-C raises ``KeyboardInterrupt``."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While the ``with`` block runs, SIGTERM raises :class:`Terminated` in the main thread
    (elsewhere, where no handler can be set, it does nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def exit_code_of(interrupt: BaseException) -> int:
    """The exit code of a command ended by ``interrupt``: 143 for SIGTERM, 130 for Ctrl-C.

    Example:
        >>> exit_code_of(Terminated()), exit_code_of(KeyboardInterrupt())
        (143, 130)
    """
    terminated = isinstance(interrupt, Terminated) or isinstance(interrupt.__context__, Terminated)
    return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
