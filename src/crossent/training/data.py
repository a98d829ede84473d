"""The training and validation texts, and the order in which training sequences are seen.

The text is split once, by characters: the first ``train_ratio`` for training, the rest for
validation, contiguous (the textbook split), so no validation sentence is ever trained on. The
validation text is scored whole by :func:`crossent.evaluate`, by the same convention as
``crossent eval``. The training text is tokenized once, preceded by the prefix token that
evaluation would put before it (:func:`crossent.data.stream.choose_prefix`), and cut
into non-overlapping rows of ``T + 1`` tokens (input and shifted target). Rows are shuffled
once per epoch by a generator seeded with ``seed + epoch``, and the k-th row of the run is a pure
function of ``k``: so a resumed run sees the rows an uninterrupted one would, and any split of a
step into micro-batches (or across processes) trains on the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from crossent.data import read_documents
from crossent.data.counts import count_bytes
from crossent.data.stream import choose_prefix
from crossent.training.config import TrainConfig

if TYPE_CHECKING:
    from crossent.models.protocol import Tokenizer


@dataclass(frozen=True)
class TextSplit:
    """The two parts of the text and their sizes.

    Attributes:
        train: the training text.
        validation: the validation text.
        train_bytes: UTF-8 bytes of ``train`` (:func:`crossent.data.counts.count_bytes`).
        validation_bytes: UTF-8 bytes of ``validation``.
    """

    train: str
    validation: str
    train_bytes: int
    validation_bytes: int


def split_text(text: str, train_ratio: float) -> TextSplit:
    """The first ``train_ratio`` of ``text``'s characters for training, the rest for validation.

    Raises:
        ValueError: either part would be empty.

    >>> split = split_text("abcdefghij", 0.9)
    >>> split.train, split.validation
    ('abcdefghi', 'j')
    """
    cut = int(len(text) * train_ratio)
    train, validation = text[:cut], text[cut:]
    if not train or not validation:
        raise ValueError(
            f"a text of {len(text)} characters split at {train_ratio} leaves an empty part"
        )
    return TextSplit(train, validation, count_bytes(train), count_bytes(validation))


def training_text(config: TrainConfig) -> str:
    """The documents of ``config.data`` (CPython's documentation when empty), their texts joined
    by blank lines (one text for one document)."""
    parts = []
    for document in read_documents(list(config.data), field=config.field, errors=config.errors):
        parts.append("".join(document.parts()))
    return "\n\n".join(parts)


def training_ids(tokenizer: Tokenizer, text: str) -> list[int]:
    """The training text's token ids after the prefix token an evaluation puts before a text.

    Raises:
        ValueError: the tokenizer has neither a BOS nor an EOS token.
    """
    _, prefix = choose_prefix(tokenizer)
    if prefix is None:
        raise ValueError("the tokenizer has neither a BOS nor an EOS token to start the text with")
    return [prefix, *tokenizer.encode(text)]


class TrainingRows:
    """Rows of ``T + 1`` consecutive training tokens, in a shuffled order that depends only on
    the seed.

    Args:
        token_ids: the tokenized training text, prefix token first.
        context_length: ``T``.
        seed: the seed of the shuffles.

    Raises:
        ValueError: the text has fewer than ``T + 1`` tokens.
    """

    def __init__(self, token_ids: list[int], context_length: int, seed: int) -> None:
        span = context_length + 1
        if len(token_ids) < span:
            raise ValueError(
                f"the training text has {len(token_ids)} tokens, fewer than one row of "
                f"{span} (the context length + 1): give more text or a shorter context"
            )
        count = (len(token_ids) - 1) // context_length
        ids = torch.tensor(token_ids[: count * context_length + 1], dtype=torch.long)
        # Row r is ids[r*T : r*T + T + 1]: consecutive rows share one token (target, then input).
        self.rows = ids.unfold(0, span, context_length)  # (rows, T + 1)
        self.context_length = context_length
        self.seed = seed
        self._epoch = -1
        self._order = torch.empty(0, dtype=torch.long)

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def take(self, start: int, count: int) -> Tensor:
        """Rows ``start, ..., start + count - 1`` of the run, ``(count, T + 1)`` int64."""
        picked = [self._row(index) for index in range(start, start + count)]
        return self.rows[torch.tensor(picked)]

    def _row(self, index: int) -> int:
        epoch, offset = divmod(index, len(self))
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            self._order = torch.randperm(len(self), generator=generator)
            self._epoch = epoch
        return int(self._order[offset])
