"""HFCausalLM: the embedded SmolLM2 through the CausalLM protocol, checked against transformers."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedModel

from crossent.models import CausalLM, HFCausalLM, Tokenizer, train_bpe_tokenizer

TINY = LlamaConfig(
    vocab_size=300, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
    num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
)  # fmt: skip
TEXT = "The quick brown fox jumps over the lazy dog. Ça va? 日本語, emoji 🦊 and a tab\there."


def test_satisfies_the_protocol(smollm2: HFCausalLM) -> None:
    assert isinstance(smollm2, CausalLM)
    assert isinstance(smollm2.tokenizer, Tokenizer)
    assert not smollm2.model.training
    assert not any(parameter.requires_grad for parameter in smollm2.model.parameters())


def test_smollm2_facts(smollm2: HFCausalLM) -> None:
    # From SmolLM2-135M-Instruct's config: Llama, 30 layers, d = 576, tied embeddings.
    assert smollm2.name == "smollm2-135m"
    assert smollm2.vocab_size == 49152
    assert smollm2.context_length == 8192
    assert smollm2.head_weight.shape == (49152, 576)
    assert smollm2.head_weight.dtype == torch.float32
    assert smollm2.head_bias is None
    assert smollm2.device == torch.device("cpu")
    # The Instruct tokenizer: <|im_start|> begins, <|im_end|> ends a sequence.
    tokenizer = smollm2.tokenizer
    assert tokenizer.bos_token_id == 1
    assert tokenizer.eos_token_id == 2
    assert tokenizer.decode([1, 2]) == "<|im_start|><|im_end|>"


def test_hidden_states_through_the_head_are_the_models_logits(smollm2: HFCausalLM) -> None:
    ids = torch.tensor([smollm2.tokenizer.encode(TEXT)] * 2)  # (B, T)
    hidden = smollm2.hidden_states(ids)
    assert hidden.shape == (*ids.shape, 576)
    logits = hidden @ smollm2.head_weight.T  # (B, T, V)
    with torch.no_grad():
        expected = smollm2.model(input_ids=ids).logits
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)


def test_hidden_states_refuses_bad_input(smollm2: HFCausalLM) -> None:
    with pytest.raises(ValueError, match=r"input_ids must be \[batch, tokens\]"):
        smollm2.hidden_states(torch.tensor([1, 2, 3]))
    too_long = torch.zeros(1, smollm2.context_length + 1, dtype=torch.long)
    with pytest.raises(ValueError, match="exceed the context length of model 'smollm2-135m'"):
        smollm2.hidden_states(too_long)


def _tiny(**config: object) -> PreTrainedModel:
    torch.manual_seed(0)
    model: PreTrainedModel = AutoModelForCausalLM.from_config(  # type: ignore[no-untyped-call]
        LlamaConfig(**{**TINY.to_dict(), **config})
    )
    return model


def test_a_model_that_scales_its_logits_is_refused() -> None:
    tokenizer = train_bpe_tokenizer(["a tiny text"] * 10, vocab_size=300)
    with pytest.raises(ValueError, match=r"transforms its logits \(logit_scale=2\.0\)"):
        HFCausalLM(_tiny(logit_scale=2.0), tokenizer, name="scaled")
    assert HFCausalLM(_tiny(logit_scale=1.0), tokenizer, name="plain").vocab_size == 300


def test_logits_other_than_hidden_states_at_the_head_are_refused() -> None:
    """A change no config field announces is caught by computing a few logits both ways."""
    tokenizer = train_bpe_tokenizer(["a tiny text"] * 10, vocab_size=300)
    model = _tiny()
    plain = model.forward

    def shifted(*args: object, **kwargs: object) -> object:
        output = plain(*args, **kwargs)
        output.logits = output.logits + torch.arange(output.logits.shape[-1])
        return output

    model.forward = shifted
    with pytest.raises(ValueError, match="computes its logits in a way crossent does not support"):
        HFCausalLM(model, tokenizer, name="shifted")
