"""Tiny Hugging Face causal LMs built offline from their configs, for the tests of crossent.hf.

Random weights, float32, one layer, a vocabulary of 128. ``build`` scales the head's weight up so
that the logits span tens of nats: a soft-cap of 5 or a logit scale then changes the loss by far
more than the tolerance. Each ``Arch`` may say how to switch its logit transform off, so that a
test can show first that the transform matters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

VOCAB = 128
SEQ = 16
TOKENS = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
SMALL = {
    "vocab_size": VOCAB,
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "intermediate_size": 64,
    "max_position_embeddings": 64,
    **TOKENS,
}


@dataclass(frozen=True)
class Arch:
    """A tiny config, and how to switch its logit transform off (to show that it matters)."""

    model_type: str
    settings: dict[str, Any] = field(default_factory=dict)
    neutralise: Callable[[PreTrainedModel], None] | None = None


def _no_softcap(model: PreTrainedModel) -> None:
    model.config.final_logit_softcapping = None


def _no_logit_scale(model: PreTrainedModel) -> None:
    model.logit_scale = 1.0  # type: ignore[assignment]


def _no_logits_scaling(model: PreTrainedModel) -> None:
    model.config.logits_scaling = 1.0


ARCHS = {
    "llama-tied": Arch("llama", {**SMALL, "tie_word_embeddings": True}),
    "llama-untied": Arch("llama", {**SMALL, "tie_word_embeddings": False}),
    "gpt2": Arch(
        "gpt2",
        {"vocab_size": VOCAB, "n_embd": 32, "n_layer": 1, "n_head": 2, "n_positions": 64} | TOKENS,
    ),
    "qwen2": Arch("qwen2", SMALL),
    "qwen3": Arch("qwen3", {**SMALL, "head_dim": 16}),
    "mistral": Arch("mistral", {**SMALL, "head_dim": 16}),
    "phi3": Arch("phi3", SMALL),
    "olmo2": Arch("olmo2", SMALL),
    "phi-biased-head": Arch("phi", SMALL),
    "gemma2": Arch(
        "gemma2",
        {**SMALL, "head_dim": 16, "final_logit_softcapping": 5.0, "query_pre_attn_scalar": 16},
        _no_softcap,
    ),
    "gemma3": Arch(
        "gemma3_text",
        {**SMALL, "head_dim": 16, "final_logit_softcapping": 5.0, "query_pre_attn_scalar": 16},
        _no_softcap,
    ),
    "cohere": Arch("cohere", {**SMALL, "logit_scale": 0.25}, _no_logit_scale),
    "granite": Arch("granite", {**SMALL, "logits_scaling": 8.0}, _no_logits_scaling),
    # Beyond the list: more families, found generically as well.
    "gemma": Arch("gemma", {**SMALL, "head_dim": 16}),
    "gpt-neox": Arch("gpt_neox", SMALL),
    "opt-projected": Arch(  # the head's input is projected down from the last hidden state
        "opt",
        {"vocab_size": VOCAB, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
        | {"ffn_dim": 64, "word_embed_proj_dim": 16, "max_position_embeddings": 64, **TOKENS},
    ),
    "falcon": Arch(
        "falcon",
        {"vocab_size": VOCAB, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
        | TOKENS,
    ),
    "mixtral": Arch("mixtral", {**SMALL, "num_local_experts": 2}),
    "starcoder2": Arch("starcoder2", SMALL),
    "gptj-biased-head": Arch(
        "gptj",
        {"vocab_size": VOCAB, "n_embd": 32, "n_layer": 1, "n_head": 2, "rotary_dim": 8}
        | {"n_positions": 64, **TOKENS},
    ),
    "bloom": Arch(
        "bloom", {"vocab_size": VOCAB, "hidden_size": 32, "n_layer": 1, "n_head": 2} | TOKENS
    ),
    "cohere2": Arch("cohere2", {**SMALL, "logit_scale": 0.25}, _no_logit_scale),
    "granitemoe": Arch(
        "granitemoe",
        {**SMALL, "logits_scaling": 8.0, "num_local_experts": 2, "num_experts_per_tok": 1},
        _no_logits_scaling,
    ),
    "stablelm": Arch("stablelm", SMALL),
    "olmo": Arch("olmo", SMALL),
    "smollm3": Arch("smollm3", {**SMALL, "head_dim": 16}),
    "qwen3-moe": Arch(
        "qwen3_moe",
        {**SMALL, "head_dim": 16, "num_experts": 2, "num_experts_per_tok": 1}
        | {"moe_intermediate_size": 32},
    ),
}


def build(arch: Arch, seed: int = 0, dtype: torch.dtype = torch.float32) -> PreTrainedModel:
    torch.manual_seed(seed)
    config = AutoConfig.for_model(arch.model_type, **arch.settings)
    model: PreTrainedModel = AutoModelForCausalLM.from_config(  # type: ignore[no-untyped-call]
        config, dtype=dtype
    )
    head = model.get_output_embeddings()  # type: ignore[no-untyped-call]
    with torch.no_grad():
        head.weight.mul_(60.0)  # logits of tens of nats
        if head.bias is not None:
            head.bias.normal_(0.0, 3.0)
    return model.eval()  # type: ignore[no-any-return, no-untyped-call]


def batch(seed: int = 1, rows: int = 2) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(3, VOCAB, (rows, SEQ), generator=generator)


def loss_and_grads(
    model: PreTrainedModel, **inputs: Any
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    loss = model(**inputs).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads


def assert_same(
    ours: tuple[torch.Tensor, dict[str, torch.Tensor]],
    theirs: tuple[torch.Tensor, dict[str, torch.Tensor]],
) -> None:
    torch.testing.assert_close(ours[0], theirs[0], rtol=1e-6, atol=1e-6)
    assert ours[1].keys() == theirs[1].keys()
    for name, grad in theirs[1].items():
        scale = max(1.0, grad.abs().max().item())
        torch.testing.assert_close(ours[1][name], grad, rtol=1e-5, atol=1e-5 * scale, msg=name)
