"""Tiny random Llamas: saved to folders that :func:`crossent.models.load_model` reads, with their
own transformers log-probabilities in float64 (the oracle of the uncertainty and comparison
tests), and :func:`tiny_lm` in memory, for tests where the model is not the point (reading
corpora, batching, per-token output).

A model's head is scaled up so that its losses spread over a few nats (a random head gives
nearly uniform predictions, whose losses hardly vary).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from crossent.models import HFCausalLM, train_bpe_tokenizer

SAMPLE = "The cat sat on the mat. Ça va? 日本語 🦊 and the dog ran.\n" * 4


def bpe(texts: list[str], vocab_size: int = 300) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on ``texts``."""
    return train_bpe_tokenizer(texts, vocab_size=vocab_size)


def save_llama(
    folder: Path,
    tokenizer: PreTrainedTokenizerFast,
    seed: int,
    *,
    context: int = 128,
    head_scale: float = 10.0,
) -> Path:
    """A one-layer random Llama with ``tokenizer``, saved to ``folder``; returns ``folder``."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=context,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.lm_head.weight.mul_(head_scale)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def log_probs(folder: Path, ids: list[int], bos: int) -> torch.Tensor:
    """The saved model's logits for BOS + ``ids[:-1]`` (one window), log-softmaxed in float64.

    Shape (T, V) for ``T = len(ids)``.
    """
    model = LlamaForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        logits: torch.Tensor = model(torch.tensor([[bos, *ids[:-1]]])).logits[0]
    return logits.double().log_softmax(dim=-1)


def token_nats(folder: Path, tokenizer: PreTrainedTokenizerFast, text: str) -> torch.Tensor:
    """``-ln p(token)`` of every token of ``text`` after BOS, float64, shape (T,)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    logp = log_probs(folder, ids, tokenizer.bos_token_id)
    return -logp.gather(1, torch.tensor(ids)[:, None])[:, 0]


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
