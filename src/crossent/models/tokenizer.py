"""A transformers tokenizer seen through :class:`~crossent.models.protocol.Tokenizer`.

Every model crossent loads, its own GPT included, tokenizes through transformers, so this one
adapter is what evaluation and training see of any of them.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def _optional_id(token: object) -> int | None:
    return token if isinstance(token, int) else None
