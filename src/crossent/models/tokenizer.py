"""A transformers tokenizer seen through :class:`~crossent.models.protocol.Tokenizer`.

Every model crossent loads, its own GPT included, tokenizes through transformers, so this one
adapter is what evaluation and training see of any of them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cached_property

from transformers import PreTrainedTokenizerBase

__all__ = ["HFTokenizer"]


class HFTokenizer:
    """A transformers tokenizer seen through :class:`~crossent.models.protocol.Tokenizer`.

    Special-token strings written in the text (``<|im_end|>``) become their special ids, as
    ``tokenizer.encode(text, add_special_tokens=False)`` does in transformers and lm-eval.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.hf_tokenizer = tokenizer

    @property
    def bos_token_id(self) -> int | None:
        return _optional_id(self.hf_tokenizer.bos_token_id)

    @property
    def eos_token_id(self) -> int | None:
        return _optional_id(self.hf_tokenizer.eos_token_id)

    def encode(self, text: str) -> list[int]:
        # verbose=False: whole documents are longer than the model's context by design.
        ids = self.hf_tokenizer.encode(text, add_special_tokens=False, verbose=False)
        return [int(token) for token in ids]

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        if not self.hf_tokenizer.is_fast:
            raise ValueError(
                "character offsets of tokens need a fast (Rust) tokenizer; this model's is not"
            )
        encoding = self.hf_tokenizer(
            text, add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )
        ids = [int(token) for token in encoding["input_ids"]]
        offsets = [(int(start), int(end)) for start, end in encoding["offset_mapping"]]
        return ids, offsets

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.hf_tokenizer.decode(list(ids), clean_up_tokenization_spaces=False))

    def token_bytes(self, ids: Sequence[int]) -> list[bytes | None]:
        """The raw bytes each token stands for, where the vocabulary says so; else None.

        Known for SentencePiece byte-fallback tokens (``<0xE2>``) and for every token of a
        byte-level BPE (GPT-2's byte-to-character table): the tokens that can hold part of a
        UTF-8 character. Other tokens (whole-character pieces such as ``"▁the"``) give None;
        their text is their characters.
        """
        pieces = self.hf_tokenizer.convert_ids_to_tokens(list(ids))
        return [self._piece_bytes(piece) if isinstance(piece, str) else None for piece in pieces]

    def _piece_bytes(self, piece: str) -> bytes | None:
        fallback = _BYTE_FALLBACK.fullmatch(piece)
        if fallback is not None:
            return bytes([int(fallback.group(1), 16)])
        if not self._byte_level:
            return None
        table = _BYTE_OF_CHARACTER
        if not all(character in table for character in piece):
            return None
        return bytes(table[character] for character in piece)

    @cached_property
    def _byte_level(self) -> bool:
        """Whether the tokenizer decodes by GPT-2's byte-level table."""
        backend = getattr(self.hf_tokenizer, "backend_tokenizer", None)
        decoder = getattr(backend, "decoder", None)
        return decoder is not None and type(decoder).__name__ == "ByteLevel"


# SentencePiece's name for a token that is one raw byte.
_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def _byte_table() -> dict[str, int]:
    """Byte-level BPE's character for each byte, reversed: printable Latin-1 bytes stand for
    themselves, the other 68 bytes for the characters from U+0100 on, in byte order."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    others = [byte for byte in range(256) if byte not in printable]
    table = {chr(byte): byte for byte in printable}
    table.update({chr(0x100 + index): byte for index, byte in enumerate(others)})
    return table


_BYTE_OF_CHARACTER = _byte_table()


def _optional_id(token: object) -> int | None:
    return token if isinstance(token, int) else None
