"""Per-token scores handed on as they are made, in document order, under ``torchrun`` too.

:func:`crossent.evaluation.evaluate` given ``on_token`` calls it once per scored token, with the
token's document name and its :class:`TokenScore`, in document order, as the batches are
scored; nothing of it is kept, so a per-token file written by the sink
(:class:`crossent.report.per_token.PerTokenWriter`) costs no memory per token.

**Under torchrun** the batches are dealt round-robin, so each round of ``world`` batches (one
per rank) is gathered when it is complete and its tokens are handed on in rank order, which
is document order; every rank's ``on_token`` is called with every token. Every rank must
give an ``on_token`` or none (the gathering is collective); a rank that writes nothing gives
one that discards. Only a round's tokens are held at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from crossent.distributed import gather_lists, rank_and_world
from crossent.evaluation.records import TokenScore

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

# Called with (the token's document name, the token), once per scored token, in order.
TokenSink = Callable[[str, TokenScore], None]


class TokenRelay:
    """Hands each batch's tokens to a :data:`TokenSink` in order, gathering ranks per round.

    Args:
        sink: where the tokens go.
        names: the document names, indexed by :attr:`TokenScore.document` (the stream's list,
            which grows as documents are read).
        group: the process group the batches are dealt over.
    """

    def __init__(
        self, sink: TokenSink, names: Sequence[str], group: ProcessGroup | None = None
    ) -> None:
        self.sink = sink
        self.names = names
        self.group = group
        self.world = rank_and_world(group)[1]
        self._pending: list[TokenScore] = []
        self._batches = 0

    def add(self, tokens: list[TokenScore]) -> None:
        """The tokens of the next batch dealt: this rank's scores, or [] for another's batch."""
        self._pending.extend(tokens)
        self._batches += 1
        if self._batches % self.world == 0:
            self.flush()

    def flush(self) -> None:
        """Hand on the tokens held (a round's, gathered from every rank); call it at the end."""
        tokens = gather_lists(self._pending, self.group) if self.world > 1 else self._pending
        self._pending = []
        for token in tokens:
            self.sink(self.names[token.document], token)
