"""A tiny random Llama with a byte-level BPE tokenizer, for tests where the model is not the
point: reading corpora, batching, per-token output."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedModel

from crossent.models import HFCausalLM
from crossent.models.bpe import train_bpe_tokenizer

SAMPLE = "The cat sat on the mat. Ça va? 日本語 🦊 and the dog ran.\n" * 4


def tiny_lm(context: int = 64) -> HFCausalLM:
    """One layer, vocabulary 300, weights seeded (so two calls give the same model)."""
    tokenizer = train_bpe_tokenizer([SAMPLE] * 20, vocab_size=300)
    config = LlamaConfig(
        vocab_size=300, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=context,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    model: PreTrainedModel = AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
    return HFCausalLM(model, tokenizer, name="tiny")
