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
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from crossent.files import write_text_atomically

if TYPE_CHECKING:
    from crossent.evaluation import EvaluationResult

FORMATS = (".jsonl", ".csv")


def per_token_format(path: str | os.PathLike[str]) -> str:
    """The format a per-token file is written in, from its extension.

    Raises:
        ValueError: the extension is neither ``.jsonl`` nor ``.csv``.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"per-token file {os.fspath(path)} must end in .jsonl or .csv")
    return suffix


def format_per_token(result: EvaluationResult, suffix: str) -> str:
    """The per-token rows of ``result`` as JSON Lines (``.jsonl``) or CSV (``.csv``)."""
    # Imported here: per_token_format checks a file name before anything heavy is loaded.
    from crossent.evaluation import top_alternatives

    names = [document.name for document in result.documents]
    if suffix == ".jsonl":
        lines = [
            json.dumps(
                {
                    "document": names[token.document],
                    "position": token.position,
                    "token_id": token.token_id,
                    "text": token.shown,
                    "start": token.start,
                    "bytes": token.num_bytes,
                    "nats": token.nats,
                    "prob": token.probability,
                    "rank": token.rank,
                    "top": top_alternatives(token.top_ids, token.top_texts, token.top_probs),
                },
                ensure_ascii=False,
            )
            for token in result.tokens
        ]
        return "".join(line + "\n" for line in lines)
    top_k = max((len(token.top_ids) for token in result.tokens), default=0)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
    header = ["document", "position", "token_id", "text", "start", "bytes", "nats", "prob", "rank"]
    for k in range(1, top_k + 1):
        header += [f"top{k}_id", f"top{k}_text", f"top{k}_prob"]
    writer.writerow(header)
    for token in result.tokens:
        row: list[object] = [
            names[token.document],
            token.position,
            token.token_id,
            token.shown,
            token.start,
            token.num_bytes,
            token.nats,
            token.probability,
            token.rank,
        ]
        for top_id, text, prob in zip(token.top_ids, token.top_texts, token.top_probs, strict=True):
            row += [top_id, text, prob]
        writer.writerow(row)
    return buffer.getvalue()


def write_per_token(path: str | os.PathLike[str], result: EvaluationResult) -> None:
    """Write ``result``'s per-token rows to ``path`` (format by extension), atomically."""
    write_text_atomically(path, format_per_token(result, per_token_format(path)))
