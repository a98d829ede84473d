"""HFTokenizer, the protocol's view of a transformers tokenizer, on the embedded SmolLM2's."""

from __future__ import annotations

from transformers import PreTrainedTokenizerFast

from crossent.models import HFCausalLM, Tokenizer
from crossent.models.tokenizer import HFTokenizer

TEXT = "The quick brown fox jumps over the lazy dog. Ça va? 日本語, emoji 🦊 and a tab\there."


def test_round_trips_without_special_tokens(smollm2: HFCausalLM) -> None:
    tokenizer = smollm2.tokenizer
    assert isinstance(tokenizer, Tokenizer)
    ids = tokenizer.encode(TEXT)
    assert all(isinstance(token, int) for token in ids)
    assert tokenizer.bos_token_id not in ids
    assert tokenizer.decode(ids) == TEXT
    assert tokenizer.encode("") == []


def test_ids_are_transformers_own(smollm2: HFCausalLM) -> None:
    """The oracle: the same tokenizer called directly, as lm-eval calls it."""
    text = f"{TEXT}<|im_end|>"
    expected = smollm2.hf_tokenizer.encode(text, add_special_tokens=False)
    assert smollm2.tokenizer.encode(text) == expected
    assert expected[-1] == smollm2.tokenizer.eos_token_id  # the special string is its id


def test_offsets_cover_the_characters_of_each_token(smollm2: HFCausalLM) -> None:
    ids, offsets = smollm2.tokenizer.encode_with_offsets(TEXT)
    assert ids == smollm2.tokenizer.encode(TEXT)
    assert len(offsets) == len(ids)
    assert offsets[0][0] == 0
    assert offsets[-1][1] == len(TEXT)
    assert all(start <= end for start, end in offsets)


def test_a_tokenizer_without_bos_says_none(smollm2: HFCausalLM) -> None:
    backend = smollm2.hf_tokenizer.backend_tokenizer
    tokenizer = HFTokenizer(
        PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
            tokenizer_object=backend, eos_token="<|im_end|>"
        )
    )
    assert tokenizer.bos_token_id is None
    assert tokenizer.eos_token_id == 2
    assert tokenizer.encode(TEXT) == smollm2.tokenizer.encode(TEXT)
