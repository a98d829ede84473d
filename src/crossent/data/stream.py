"""Documents to batches of windows, read and tokenized as they are scored.

The stream is what evaluation and comparison walk: each document is tokenized whole (a piece at
a time, :mod:`crossent.data.tokens`), preceded by a prefix token, cut into windows by
:func:`crossent.data.iter_windows`, and the windows of all documents are packed, in order, into
batches. Only the windows in flight are held, so a :class:`crossent.data.FileDocument` larger
than memory streams through. As each document is read the stream counts the bytes and words
its scored tokens cover (:mod:`crossent.data.counts`) and, when asked, keeps the text and bytes
of every token.

**Limits.** ``max_documents`` reads only the first documents. ``max_tokens`` stops after that
many scored tokens: the document it falls in is cut after its last token scored (its windows
are those of the cut token ids, as for a text that ended there) and counts only the bytes and
words those tokens cover; later documents are not read.

**The prefix token**, by default, is the tokenizer's BOS token, or its EOS token when it has
no BOS, as lm-evaluation-harness chooses (:func:`choose_prefix`).

**Batches are sized in padded tokens**, not windows: a batch of ``size`` holds as many
consecutive windows as fit in ``size`` full windows' worth of tokens (``size * L``, the rows
times the longest row), so many short documents share one forward pass as fully as the
windows of one long document do, with the same peak memory. ``size`` full windows make a
batch of ``size``, as before; a batch always holds at least one window.

Evaluation computes no padding: :func:`crossent.scoring.score_batch` passes each length of a
batch through the trunk on its own. Comparison makes a batch the models' input by
:func:`pad_windows`: right-padded, because a causal model never looks ahead, so padding after a
window cannot change its scores.

**Token texts are held only until scored**: with ``offsets`` the stream keeps each token's
text and bytes for :meth:`DocumentStream.token_text`, and drops them once the batch that
scored them has been consumed (when the next batch is asked for), so memory does not grow
with the number of tokens.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence, Sized
from itertools import islice
from typing import TYPE_CHECKING, Literal

import torch

from crossent.data.conventions import Convention, Tally, convention_windows
from crossent.data.counts import ScoredCount, SparseCount, count_bytes
from crossent.data.sources import Corpus, Text
from crossent.data.tokens import tokenize_parts
from crossent.data.windows import Window

if TYPE_CHECKING:
    from crossent.models.protocol import Tokenizer

Prefix = Literal["bos", "eos", "none"]
# One window of a stream: the index of its document, and the window.
Indexed = tuple[int, Window]


def choose_prefix(tokenizer: Tokenizer, prefix: Prefix | None = None) -> tuple[Prefix, int | None]:
    """The prefix placed before each document and its token id; None picks BOS, else EOS.

    The id is None for ``"none"``, and also when the tokenizer has no token of the prefix
    chosen: what that means (an error, for a model asked to score) is the caller's to say.
    """
    if prefix is None:
        prefix = "bos" if tokenizer.bos_token_id is not None else "eos"
    if prefix == "none":
        return prefix, None
    return prefix, tokenizer.bos_token_id if prefix == "bos" else tokenizer.eos_token_id


class DocumentStream:
    """Documents to windows, read and tokenized lazily, with what each document counts.

    Args:
        tokenizer: the model's tokenizer.
        documents: the texts, walked once.
        prefix_id: the token before each document, or None (see :func:`choose_prefix`).
        window: input tokens per window, L.
        stride: tokens between window starts, S.
        offsets: keep each token's text, bytes and start (:meth:`token_text`).
        max_tokens: stop after this many scored tokens (the module docstring); None: all.
        max_documents: read at most this many documents; None: all.
        convention: how each document is cut into windows (:mod:`crossent.data.conventions`).

    Attributes:
        names: the name of each document started so far.
        cut: whether the stream stopped early: a document was cut short by ``max_tokens``, or
            documents were left unread by either limit.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        documents: Iterable[Text],
        prefix_id: int | None,
        window: int,
        stride: int,
        offsets: bool,
        *,
        max_tokens: int | None = None,
        max_documents: int | None = None,
        convention: Convention = "lm-eval",
    ) -> None:
        self.tokenizer = tokenizer
        self.documents = documents
        self.prefix_id = prefix_id
        self.window = window
        self.stride = stride
        self.offsets = offsets
        self.max_tokens = max_tokens
        self.max_documents = max_documents
        self.convention = convention
        self.tallies: list[Tally] = []  # how each document started so far was cut
        self.names: list[str] = []
        self.cut = False
        self._counts: list[ScoredCount] = []
        # With offsets, the texts of the tokens not yet scored, per document (see _release).
        self._token_texts: list[list[str]] = []
        self._token_starts: list[list[int]] = []
        self._token_bytes: list[list[bytes]] = []
        self._token_base: list[int] = []  # the position of each document's first kept text
        self._released = 0  # the documents before this one hold no token texts
        # Without a prefix, or when a document may be cut, the counts need each token's extent.
        self._extents = (
            offsets or prefix_id is None or max_tokens is not None or convention != "lm-eval"
        )
        self._budget = max_tokens  # scored tokens left to read
        # For the progress estimate: bytes of all documents, when known up front.
        self.total_bytes: int | None = None
        if isinstance(documents, Sized):
            self.total_bytes = sum(doc.num_bytes for doc in list(documents)[:max_documents])
        elif isinstance(documents, Corpus) and max_documents is None:
            self.total_bytes = documents.total_bytes
        self.tokens_read = 0
        self.bytes_read = 0

    @property
    def count(self) -> int:
        """Documents started so far."""
        return len(self.names)

    @property
    def counts(self) -> list[ScoredCount]:
        """What each document started so far counts: its scored bytes and words, and the
        bytes and words of a first token that is context only (final once it has been read)."""
        return self._counts

    @property
    def truncated(self) -> list[bool]:
        """Whether each document started so far was cut short by ``max_tokens``."""
        return [count.cut for count in self._counts]

    def windows(self) -> Iterator[Indexed]:
        """Every window of every document, in order, with its document's index."""
        documents = iter(self.documents)
        for index, document in enumerate(islice(documents, self.max_documents)):
            if self._budget == 0:  # the last document ended where the tokens ran out
                self.cut = True
                return
            self.names.append(document.name)
            self._counts.append(
                ScoredCount(document.num_bytes, first_unscored=self.prefix_id is None)
                if self.convention == "lm-eval"
                else SparseCount(document.num_bytes)
            )
            self.tallies.append(Tally())
            self._token_texts.append([])
            self._token_starts.append([])
            self._token_bytes.append([])
            self._token_base.append(0)
            ids = self._ids(index, document)
            try:
                windows = convention_windows(
                    self.convention, ids, self.prefix_id, self.window, self.stride
                )
                for win in windows:
                    self._tally(index, win)
                    yield index, win
            except ValueError as error:
                raise ValueError(f"document {document.name}: {error}") from None
            if self._counts[index].cut:
                self.cut = True
                return
        if self.max_documents is not None and next(documents, None) is not None:
            self.cut = True

    def batches(self, size: int) -> Iterator[list[Indexed]]:
        """The windows in consecutive batches of at most ``size * window`` padded tokens.

        A batch's padded tokens are its rows times its longest window; windows are packed in
        order, across documents, and a batch holds at least one (the module docstring). Once
        the caller asks for the next batch, the previous one's token texts are dropped.
        """
        budget = size * self.window
        windows = self.windows()
        pending = next(windows, None)
        while pending is not None:
            batch = [pending]
            longest = len(pending[1].tokens)
            pending = None
            for item in windows:
                length = max(longest, len(item[1].tokens))
                if (len(batch) + 1) * length > budget:
                    pending = item
                    break
                batch.append(item)
                longest = length
            yield batch
            self._release(batch[-1])

    def _release(self, last: Indexed) -> None:
        """Drop the token texts of every position scored up to and including window ``last``."""
        if not self.offsets:
            return
        document, win = last
        for index in range(self._released, document):
            self._token_texts[index] = []
            self._token_starts[index] = []
            self._token_bytes[index] = []
        self._released = max(self._released, document)
        drop = win.first_position + len(win.targets) - self._token_base[document]
        if drop > 0:
            del self._token_texts[document][:drop]
            del self._token_starts[document][:drop]
            del self._token_bytes[document][:drop]
            self._token_base[document] += drop

    def _ids(self, index: int, document: Text) -> Iterator[int]:
        # Without a prefix the first id is context only, so one more id than tokens scored.
        allowed = None if self._budget is None else self._budget + (self.prefix_id is None)
        start = read = 0
        for piece in tokenize_parts(self.tokenizer, document.parts(), offsets=self._extents):
            kept = len(piece.ids) if allowed is None else min(len(piece.ids), allowed - read)
            # Pieces are cut after a line's end, never inside a run of whitespace.
            self._counts[index].add(piece.text, start, kept, piece.token_texts, piece.token_bytes)
            self.tokens_read += kept
            self.bytes_read += count_bytes(piece.text)
            if self.offsets and piece.token_texts is not None and piece.token_starts is not None:
                self._token_texts[index].extend(piece.token_texts[:kept])
                self._token_starts[index].extend(piece.token_starts[:kept])
                self._token_bytes[index].extend((piece.token_bytes or [])[:kept])
            yield from piece.ids[:kept]
            read += kept
            start += len(piece.text)
            if kept < len(piece.ids):
                break
        self.tallies[index].read = read
        if self._budget is not None:
            self._budget -= read - (self.prefix_id is None)

    def _tally(self, index: int, win: Window) -> None:
        self.tallies[index].add(win)
        count = self._counts[index]
        if isinstance(count, SparseCount):
            first = win.first_position + win.score_from
            count.score(first, win.first_position + len(win.targets))

    def estimated_tokens(self) -> int | None:
        """Tokens read so far plus the rest of the bytes at the rate seen so far."""
        if self.total_bytes is None or self.bytes_read == 0:
            return None
        rest = max(0, self.total_bytes - self.bytes_read)
        return self.tokens_read + round(rest * self.tokens_read / self.bytes_read)

    def token_text(self, document: int, position: int) -> tuple[str, int, bytes]:
        """With ``offsets``: a token's text, the character offset in its document where it
        starts, and its bytes (see :mod:`crossent.data.tokens`), for a token of a batch not yet
        consumed (the module docstring)."""
        at = position - self._token_base[document]
        if at < 0:
            raise IndexError(f"token {position} of document {document} was already released")
        return (
            self._token_texts[document][at],
            self._token_starts[document][at],
            self._token_bytes[document][at],
        )


def scored_tokens(batch: Iterable[Indexed]) -> int:
    """The targets the windows of ``batch`` score."""
    return sum(len(win.targets) - win.score_from for _, win in batch)


def pad_windows(
    windows: Sequence[Window], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch of windows as right-padded ``(inputs, targets)``, both ``(B, T)`` int64.

    Targets that are not scored (context, padding) are -100, the ignore index. Padding after a
    window cannot change its scores: a causal model never looks ahead.
    """
    length = max(len(win.tokens) for win in windows)
    inputs = torch.zeros(len(windows), length, dtype=torch.long)
    targets = torch.full((len(windows), length), -100, dtype=torch.long)
    for row, win in enumerate(windows):
        inputs[row, : len(win.tokens)] = torch.tensor(win.tokens)
        scored = slice(win.score_from, len(win.targets))
        targets[row, scored] = torch.tensor(win.targets[scored])
    return inputs.to(device), targets.to(device)
