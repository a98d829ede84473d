"""Training a byte-level BPE tokenizer on the user's text, the way GPT-2's was made.

The tokenizer works on the UTF-8 bytes of the text, each byte shown as one printable character
(GPT-2's byte-to-unicode table), so all 256 bytes are in the vocabulary from the start and any
text encodes, characters never seen in training included; decoding gives back the exact text.
Merges are learned within GPT-2's pre-tokenization pieces (words with their leading space,
runs of digits, punctuation, whitespace). No space is added before the text, so encoding is
lossless, and ``<|endoftext|>`` is the one special token, both BOS and EOS, as in GPT-2.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

__all__ = ["END_OF_TEXT", "train_bpe_tokenizer"]

END_OF_TEXT = "<|endoftext|>"
# Every byte value, plus the special token.
_SMALLEST_VOCABULARY = 256 + 1


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Learn a byte-level BPE of at most ``vocab_size`` tokens from ``texts``.

    Args:
        texts: the training text, as one string or many (documents, lines); read once.
        vocab_size: the size of the vocabulary, the 256 bytes and ``<|endoftext|>`` included.
            Fewer tokens result when the text has fewer distinct pairs left to merge.

    Returns:
        A fast tokenizer whose BOS and EOS are ``<|endoftext|>`` (id 0); its ``save_pretrained``
        folder loads back with ``AutoTokenizer.from_pretrained``.

    Raises:
        ValueError: ``vocab_size`` leaves no room for a single merge.

    >>> tokenizer = train_bpe_tokenizer(["the cat sat on the mat"] * 10, vocab_size=300)
    >>> ids = tokenizer.encode("the mat 🐈", add_special_tokens=False)
    >>> tokenizer.decode(ids), tokenizer.eos_token_id
    ('the mat 🐈', 0)
    """
    if vocab_size <= _SMALLEST_VOCABULARY:
        raise ValueError(
            f"vocab_size must exceed {_SMALLEST_VOCABULARY} (256 bytes and {END_OF_TEXT}), "
            f"got {vocab_size}"
        )
    tokenizer = Tokenizer(models.BPE())
    # add_prefix_space=False: a space invented before the text would not decode away.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT],
        # All 256 bytes, not only those the text happens to contain.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([texts] if isinstance(texts, str) else texts, trainer)
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer,
        bos_token=END_OF_TEXT,
        eos_token=END_OF_TEXT,
        # The default cleanup removes spaces before punctuation when decoding: not lossless.
        clean_up_tokenization_spaces=False,
    )
