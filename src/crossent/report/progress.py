"""The progress bar of every crossent command, on stderr: tokens done, tokens/s, time left."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TextIO

from tqdm import tqdm


class TokenProgress:
    """A :class:`crossent.evaluation.Progress` callback drawing a tqdm bar in tokens.

    Evaluation and comparison call it with tokens scored; training with tokens trained.

    The total is an estimate that firms up as documents are read, so the bar's total is updated
    with each call; tqdm derives the rate (tokens/s) and the time left from it.

    Args:
        description: the bar's label.
        enabled: draw it (callers pass whether stderr is a terminal, or the user's choice).
        file: where to draw it (stderr by default).
    """

    def __init__(self, description: str, *, enabled: bool, file: TextIO | None = None) -> None:
        self._bar = tqdm(
            desc=description,
            unit="tok",
            unit_scale=True,
            disable=not enabled,
            file=file if file is not None else sys.stderr,
            dynamic_ncols=True,
            leave=False,
        )

    def __call__(self, scored: int, total: int | None) -> None:
        if total is not None:
            self._bar.total = max(total, scored)
        self._bar.update(scored - self._bar.n)

    def describe(self, **values: object) -> None:
        """Show ``name=value`` pairs after the bar (training's step and loss), drawn on update."""
        self._bar.set_postfix(values, refresh=False)

    def write(self, line: str) -> None:
        """Print ``line`` on stdout above the bar, which is redrawn below it."""
        self._bar.write(line, file=sys.stdout)

    def close(self) -> None:
        """Remove the bar from the terminal."""
        self._bar.close()

    def __enter__(self) -> TokenProgress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
