"""The error of a run that went wrong after its inputs were accepted.

A bad flag or an unreadable file is the user's to fix, and the command line answers it with exit
code 2 (``ValueError``). :class:`RunError` is the other kind: the inputs were fine, but the run
could not go on (the loss became NaN, another run holds the output folder). The command line
prints its one line and exits with 1, and what the run had written before stays as it was.

SIGTERM (what ``kill``, a job scheduler or ``torchrun`` sends) ends a command as Ctrl-C does:
:func:`terminate_as_interrupt` makes it raise :class:`Terminated`, a ``KeyboardInterrupt``, so
that every output being written is removed or finished (never left half-written), training
saves what lets it resume, and the exit code is 143 (128 + SIGTERM) instead of 130.

A signal that lands while PyTorch, NumPy or transformers are being imported can be swallowed by
their import guards (which catch everything and carry on, or fail later with an unrelated
error), so the signal is also remembered: :func:`signal_received` says whether one came, and the
command line reports the run as interrupted whatever became of the exception. Inside PyTorch's
own import a raised interrupt is worse: it can land in Python code that PyTorch's C++ calls
(``torch._C._c10d_init`` while ``torch.distributed`` initialises), where pybind11 turns it into a
C++ exception nothing catches and the process aborts (SIGABRT, a core message instead of the one
line). :func:`interrupts_deferred` holds a signal back over such a block and raises it after, and
:func:`defer_interrupts_in_import` puts a package's first import, wherever it happens, in one.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType, ModuleType

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_TERMINATED",
    "NonFiniteLossError",
    "RunError",
    "Terminated",
    "defer_interrupts_in_import",
    "exit_code_of",
    "interrupts_deferred",
    "signal_received",
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


_received: list[int] = []  # the signals that came during terminate_as_interrupt, in order


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt


_HANDLED = (signal.SIGINT, signal.SIGTERM)
_Handler = Callable[[int, FrameType | None], None]


@contextlib.contextmanager
def _handled_by(handler: _Handler) -> Iterator[None]:
    """SIGINT and SIGTERM go to ``handler`` while the ``with`` block runs, then back to their
    handlers before it; outside the main thread, where no handler can be set, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, handler) for number in _HANDLED}
    try:
        yield
    finally:
        for number, earlier in previous.items():
            signal.signal(number, earlier)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While the ``with`` block runs, SIGTERM raises :class:`Terminated` and SIGINT
    ``KeyboardInterrupt`` in the main thread, and both are remembered for
    :func:`signal_received` (elsewhere, where no handler can be set, nothing changes)."""
    if threading.current_thread() is threading.main_thread():
        _received.clear()
    with _handled_by(_raise_interrupt):
        yield


def _remember(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Inside :func:`terminate_as_interrupt`: while the ``with`` block runs, SIGINT and SIGTERM
    are only remembered, and the first that came is raised when the block ends (as
    :class:`Terminated` or ``KeyboardInterrupt``). For imports of C++ extensions, where an
    exception raised from a signal handler aborts the process instead of unwinding (the module
    docstring); a block that stays short, as the interrupt waits for its end.

    Example:
        >>> with terminate_as_interrupt(), interrupts_deferred():
        ...     pass
        >>> signal_received() is None
        True
    """
    before = len(_received)
    with _handled_by(_remember):  # outside the main thread nothing is remembered or raised
        yield
    if len(_received) > before:
        raise Terminated if _received[before] == signal.SIGTERM else KeyboardInterrupt


def signal_received() -> KeyboardInterrupt | None:
    """The interrupt of the first SIGINT or SIGTERM of the last :func:`terminate_as_interrupt`
    block, even where the code it landed in caught the exception; None when none came.

    Example:
        >>> with terminate_as_interrupt():
        ...     pass
        >>> signal_received() is None
        True
    """
    if not _received:
        return None
    return Terminated() if _received[0] == signal.SIGTERM else KeyboardInterrupt()


def exit_code_of(interrupt: BaseException) -> int:
    """The exit code of a command ended by ``interrupt``: 143 for SIGTERM, 130 for Ctrl-C.

    Example:
        >>> exit_code_of(Terminated()), exit_code_of(KeyboardInterrupt())
        (143, 130)
    """
    terminated = isinstance(interrupt, Terminated) or isinstance(interrupt.__context__, Terminated)
    return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED


class _DeferringLoader(importlib.abc.Loader):
    """A module's own loader, its ``exec_module`` run inside :func:`interrupts_deferred`."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def __getattr__(self, name: str) -> object:  # get_resource_reader, get_filename, ...
        return getattr(self.loader, name)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        with interrupts_deferred():
            self.loader.exec_module(module)


class _DeferringFinder(importlib.abc.MetaPathFinder):
    """Finds ``name`` through the other finders, once, and hands back its spec with a
    :class:`_DeferringLoader`."""

    def __init__(self, name: str) -> None:
        self.name = name

    def find_spec(
        self, fullname: str, path: object = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)  # once: the import below and later ones go the usual way
        import importlib.util

        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _DeferringLoader(spec.loader)
        return spec


def defer_interrupts_in_import(name: str) -> None:
    """Make the first import of top-level package ``name`` (``"torch"``) run inside
    :func:`interrupts_deferred`, wherever it happens; nothing when it is imported already.
    The command line does this for PyTorch (the module docstring), so that each command still
    imports it only once its options are checked."""
    if name not in sys.modules and not any(
        isinstance(finder, _DeferringFinder) and finder.name == name for finder in sys.meta_path
    ):
        sys.meta_path.insert(0, _DeferringFinder(name))
