"""Per-token results as JSON Lines or CSV, one row per scored token.

Columns: the document's name, the token's position among the document's tokens, its id, its
text, the character offset where it starts, the bytes of the document it covers, its
surprisal in nats, its probability, the rank of the true token (1 = the model's top choice), and
the top-k alternatives with their probabilities. JSON Lines nests the alternatives as a list of
``{"id", "text", "prob"}``; CSV flattens them into ``top1_id, top1_text, top1_prob, ...``.

**A token's text** is :attr:`crossent.TokenScore.shown`: its bytes as UTF-8, except that each
byte of an incomplete UTF-8 sequence is written ``<0xNN>`` (two hexadecimal digits, SentencePiece's
name for a byte token). Byte-level BPE and byte fallback cut an emoji or a CJK character into such
byte tokens: 😀 may be ``<0xF0><0x9F>``, ``<0x98>``, ``<0x80>`` in three rows. Where no byte is
cut the texts concatenate to the document; ``start`` is the character where a token starts (for
a byte of a character, where that character starts) and ``bytes`` how many of the document's
UTF-8 bytes it covers, so a document's ``bytes`` add up to its scored bytes.

**CSV** is written by Python's :mod:`csv` with every text field quoted (``QUOTE_NONNUMERIC``), so
a text holding a comma, a quote, a carriage return or a newline reads back whole through
``csv.reader``; numbers are unquoted, floats written to full precision.

**Streamed as scored.** :class:`PerTokenWriter` is the ``on_token`` of
:func:`crossent.evaluation.evaluate`: each row is written as its token is scored, to a temporary
file beside the target that is renamed into place when the evaluation ends (removed if it
fails), so memory does not grow with the number of tokens and a reader never sees a part.
The CSV header is written with the first row, when the number of alternatives is known.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from crossent.files import open_atomically

if TYPE_CHECKING:
    from crossent.evaluation import EvaluationResult, TokenScore
    from crossent.evaluation.token_sink import TokenSink

FORMATS = (".jsonl", ".csv")
_HEADER = ["document", "position", "token_id", "text", "start", "bytes", "nats", "prob", "rank"]


def per_token_format(path: str | os.PathLike[str]) -> str:
    """The format a per-token file is written in, from its extension.

    Raises:
        ValueError: the extension is neither ``.jsonl`` nor ``.csv``.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"per-token file {os.fspath(path)} must end in .jsonl or .csv")
    return suffix


class PerTokenWriter:
    """Per-token rows written to a binary file one token at a time (the module docstring).

    Call it with each token's document name and score (it is a
    :data:`crossent.evaluation.token_sink.TokenSink`), then :meth:`close` to end the file
    (the CSV header, for a file with no rows).

    Args:
        file: where the rows go, as UTF-8.
        suffix: ``".jsonl"`` or ``".csv"``.
    """

    def __init__(self, file: BinaryIO, suffix: str) -> None:
        self.file = file
        self.suffix = suffix
        self.rows = 0
        self._buffer = io.StringIO()
        self._csv = csv.writer(self._buffer, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)

    def __call__(self, name: str, token: TokenScore) -> None:
        if self.rows == 0 and self.suffix == ".csv":
            self._header(len(token.top_ids))
        self.rows += 1
        if self.suffix == ".jsonl":
            self._write(json.dumps(_json_row(name, token), ensure_ascii=False) + "\n")
            return
        row: list[object] = [name, token.position, token.token_id, token.shown, token.start]
        row += [token.num_bytes, token.nats, token.probability, token.rank]
        for top_id, text, prob in zip(token.top_ids, token.top_texts, token.top_probs, strict=True):
            row += [top_id, text, prob]
        self._csv.writerow(row)
        self._write(self._buffer.getvalue())
        self._buffer.seek(0)
        self._buffer.truncate()

    def close(self) -> None:
        """End the file: a CSV file with no rows gets its header."""
        if self.rows == 0 and self.suffix == ".csv":
            self._header(0)

    def _header(self, top_k: int) -> None:
        header = list(_HEADER)
        for k in range(1, top_k + 1):
            header += [f"top{k}_id", f"top{k}_text", f"top{k}_prob"]
        self._csv.writerow(header)
        self._write(self._buffer.getvalue())
        self._buffer.seek(0)
        self._buffer.truncate()

    def _write(self, text: str) -> None:
        self.file.write(text.encode("utf-8"))


def _json_row(name: str, token: TokenScore) -> dict[str, object]:
    # Imported here: per_token_format checks a file name before anything heavy is loaded.
    from crossent.evaluation import top_alternatives

    return {
        "document": name,
        "position": token.position,
        "token_id": token.token_id,
        "text": token.shown,
        "start": token.start,
        "bytes": token.num_bytes,
        "nats": token.nats,
        "prob": token.probability,
        "rank": token.rank,
        "top": top_alternatives(token.top_ids, token.top_texts, token.top_probs),
    }


@contextmanager
def per_token_file(path: str | os.PathLike[str]) -> Iterator[PerTokenWriter]:
    """A :class:`PerTokenWriter` onto ``path`` (format by extension), put in place atomically
    when the block ends and removed if it raises."""
    suffix = per_token_format(path)
    with open_atomically(path) as file:
        writer = PerTokenWriter(file, suffix)
        yield writer
        writer.close()


def format_per_token(result: EvaluationResult, suffix: str) -> str:
    """The per-token rows of ``result`` as JSON Lines (``.jsonl``) or CSV (``.csv``)."""
    buffer = io.BytesIO()
    writer = PerTokenWriter(buffer, suffix)
    names = [document.name for document in result.documents]
    for token in result.tokens:
        writer(names[token.document], token)
    writer.close()
    return buffer.getvalue().decode("utf-8")


def write_per_token(path: str | os.PathLike[str], result: EvaluationResult) -> None:
    """Write ``result``'s per-token rows to ``path`` (format by extension), atomically."""
    with per_token_file(path) as writer:
        names = [document.name for document in result.documents]
        for token in result.tokens:
            writer(names[token.document], token)


@contextmanager
def per_token_output(
    path: str | os.PathLike[str] | None, *, write: bool = True
) -> Iterator[TokenSink | None]:
    """The ``on_token`` of :func:`crossent.evaluation.evaluate` for a per-token file.

    None without a ``path``; a :class:`PerTokenWriter` onto it (see :func:`per_token_file`)
    where ``write``; a sink that discards the rows otherwise (the other ranks under torchrun,
    which must take part in gathering the tokens but leave the writing to rank 0).
    """
    if path is None:
        yield None
    elif not write:
        yield _discard
    else:
        with per_token_file(path) as writer:
            yield writer


def _discard(name: str, token: TokenScore) -> None:
    """A sink that writes nothing."""
