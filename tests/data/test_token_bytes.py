"""Each token's bytes, for a SentencePiece-style byte-fallback tokenizer (issue 11, item 12).

The tokenizer is built here from a vocabulary of 256 ``<0xNN>`` byte tokens and a few
characters, as Llama's byte fallback works; the oracle is its own pieces
(``convert_ids_to_tokens``), read as the byte each ``<0xNN>`` names.
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models
from transformers import PreTrainedTokenizerFast

from crossent.data.tokens import show_bytes, tokenize_parts
from crossent.models.tokenizer import HFTokenizer

TEXT = "a😀bé漢a"


def _byte_fallback_tokenizer() -> HFTokenizer:
    vocab = {"<unk>": 0, **{f"<0x{b:02X}>": 1 + b for b in range(256)}, "a": 257, "b": 258}
    vocab["é"] = 259  # a Latin-1 character: not to be read as byte 0xE9
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", byte_fallback=True))
    backend.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    return HFTokenizer(PreTrainedTokenizerFast(tokenizer_object=backend))  # type: ignore[no-untyped-call]


def test_byte_tokens_carry_their_own_bytes() -> None:
    tokenizer = _byte_fallback_tokenizer()
    [piece] = tokenize_parts(tokenizer, [TEXT], offsets=True)
    names = tokenizer.hf_tokenizer.convert_ids_to_tokens(piece.ids)
    expected = [
        bytes([int(name[3:5], 16)]) if name.startswith("<0x") else name.encode() for name in names
    ]
    assert sum(name.startswith("<0x") for name in names) == 7  # the emoji and the CJK character
    assert piece.token_bytes == expected
    assert piece.token_texts is not None
    assert "".join(piece.token_texts) == TEXT
    assert piece.token_starts == [0, 1, 1, 1, 1, 2, 3, 4, 4, 4, 5]
    assert [show_bytes(data) for data in expected[1:5]] == ["<0xF0>", "<0x9F>", "<0x98>", "<0x80>"]
    assert show_bytes(expected[6]) == "é"
