"""crossent's GPT against transformers' GPT-2, an independent implementation of the same model."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel

import crossent
from crossent.models import GPT, GPTConfig, from_gpt2_state_dict, to_gpt2_state_dict
from crossent.models.gpt import Block

CONFIG = GPTConfig.preset("tiny", vocab_size=97)  # 2 layers, 4 heads, d 64, context 128


def _gpt2(config: GPTConfig) -> GPT2LMHeadModel:
    """transformers' GPT-2 of the same sizes, GPT-2's defaults otherwise, eager attention."""
    # attn_implementation goes to PreTrainedConfig's **kwargs, which GPT2Config's fields hide.
    gpt2_config = GPT2Config(  # type: ignore[call-arg]
        vocab_size=config.vocab_size,
        n_positions=config.context_length,
        n_embd=config.d_model,
        n_layer=config.n_layer,
        n_head=config.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
        # Their attention written out, not the SDPA kernel ours uses.
        attn_implementation="eager",
    )
    model = GPT2LMHeadModel(gpt2_config)
    model.eval()  # type: ignore[no-untyped-call]
    return model


def _perturbed(model: GPT, scale: float = 0.05) -> GPT:
    """``model`` with every parameter moved off its initial value.

    Initial biases are zero and norms one; a conversion that mixed up two of them would go
    unnoticed without this.
    """
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            noise = torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
            parameter.add_(scale * noise)
    return model


def _ids(config: GPTConfig, batch: int = 3, tokens: int = 40, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, config.vocab_size, (batch, tokens), generator=generator)


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float64, 1e-12), (torch.float32, 2e-5)])
def test_logits_equal_transformers_gpt2(dtype: torch.dtype, tolerance: float) -> None:
    torch.manual_seed(0)
    model = _perturbed(GPT(CONFIG)).to(dtype).eval()
    reference = _gpt2(CONFIG).to(dtype)  # type: ignore[arg-type]
    reference.load_state_dict(to_gpt2_state_dict(model), strict=True)
    ids = _ids(CONFIG)
    with torch.no_grad():
        logits = model(ids) @ model.head_weight.T  # (B, T, V)
        expected = reference(ids).logits
    assert logits.shape == (*ids.shape, CONFIG.vocab_size)
    torch.testing.assert_close(logits, expected, rtol=tolerance, atol=tolerance)


def test_loads_transformers_gpt2_weights() -> None:
    torch.manual_seed(0)
    reference = _gpt2(CONFIG).double()
    model = from_gpt2_state_dict(reference.state_dict(), n_head=CONFIG.n_head).eval()
    assert model.config == CONFIG
    ids = _ids(CONFIG)
    with torch.no_grad():
        logits = model(ids) @ model.head_weight.T
        expected = reference(ids).logits
    torch.testing.assert_close(logits, expected, rtol=1e-12, atol=1e-12)
    # A copy: training one must not change the other.
    with torch.no_grad():
        model.head_weight.zero_()
    assert reference.transformer.wte.weight.abs().sum() > 0


def test_conversion_refuses_what_is_not_gpt2() -> None:
    state = to_gpt2_state_dict(GPT(CONFIG))
    with pytest.raises(ValueError, match=r"not divisible by n_head 5"):
        from_gpt2_state_dict(state, n_head=5)
    untied = {**state, "lm_head.weight": torch.zeros_like(state["lm_head.weight"])}
    with pytest.raises(ValueError, match="not tied"):
        from_gpt2_state_dict(untied, n_head=4)
    missing = {k: v for k, v in state.items() if k != "transformer.h.1.mlp.c_fc.bias"}
    with pytest.raises(ValueError, match=r"transformer\.h\.1\.mlp\.c_fc\.bias is missing"):
        from_gpt2_state_dict(missing, n_head=4)
    extra = {**state, "transformer.h.0.attn.q_norm.weight": torch.ones(64)}
    with pytest.raises(ValueError, match=r"unexpected transformer\.h\.0\.attn\.q_norm\.weight"):
        from_gpt2_state_dict(extra, n_head=4)
    narrow = {**state, "transformer.h.0.mlp.c_fc.weight": torch.zeros(64, 128)}
    with pytest.raises(ValueError, match=r"c_fc\.weight has shape \(64, 128\), expected"):
        from_gpt2_state_dict(narrow, n_head=4)


def test_earlier_positions_never_see_later_tokens() -> None:
    torch.manual_seed(0)
    model = GPT(CONFIG).eval()
    ids = _ids(CONFIG)
    changed = ids.clone()
    changed[:, 25:] = (changed[:, 25:] + 1) % CONFIG.vocab_size
    with torch.no_grad():
        hidden, hidden_changed = model(ids), model(changed)
    torch.testing.assert_close(hidden[:, :25], hidden_changed[:, :25], rtol=1e-6, atol=1e-6)
    assert not torch.allclose(hidden[:, 25:], hidden_changed[:, 25:])


def test_untrained_loss_is_log_vocabulary() -> None:
    torch.manual_seed(0)
    config = GPTConfig.preset("tiny", vocab_size=1000)
    model = GPT(config)
    ids = _ids(config, batch=4, tokens=65)
    hidden = model(ids[:, :-1])  # (B, T, d)
    logits = hidden @ model.head_weight.T  # (B, T, V)
    loss = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
    assert loss.item() == pytest.approx(math.log(1000), rel=0.03)
    fused = crossent.linear_cross_entropy(hidden, model.head_weight, ids[:, 1:])
    torch.testing.assert_close(fused, loss)


def test_head_is_the_token_embedding() -> None:
    model = GPT(CONFIG)
    assert model.head_weight is model.token_embedding.weight
    assert all("head" not in name for name in model.state_dict())
    hidden = model(_ids(CONFIG))
    crossent.linear_cross_entropy(hidden[:, :-1], model.head_weight, _ids(CONFIG)[:, 1:]).backward()  # type: ignore[no-untyped-call]
    # One gradient, from both uses: the head's and the embedding lookup's.
    assert model.token_embedding.weight.grad is not None
    assert model.num_parameters() == sum(p.numel() for p in set(model.parameters()))


@pytest.mark.parametrize("preset", ["gpt2", "gpt2-medium"])
def test_parameter_counts_equal_transformers(preset: str) -> None:
    config = GPTConfig.preset(preset)
    with torch.device("meta"):  # shapes only: nothing is allocated
        model = GPT(config)
        reference = _gpt2(config)
    assert model.num_parameters() == reference.num_parameters()
    non_embedding = reference.num_parameters(exclude_embeddings=True)
    assert model.num_parameters(non_embedding=True) == non_embedding


def test_gpt2_preset_is_gpt2_small() -> None:
    with torch.device("meta"):
        model = GPT(GPTConfig.preset("gpt2"))
    # GPT-2 small's published size, with the head tied to the embedding.
    assert model.num_parameters() == 124_439_808


def test_initialisation_is_gpt2s() -> None:
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=512, context_length=64, n_layer=8, n_head=4, d_model=256)
    model = GPT(config)
    block = model.blocks[3]
    assert isinstance(block, Block)
    assert model.token_embedding.weight.std().item() == pytest.approx(0.02, rel=0.02)
    assert block.attention.qkv.weight.std().item() == pytest.approx(0.02, rel=0.02)
    assert block.mlp.up.weight.std().item() == pytest.approx(0.02, rel=0.02)
    residual = 0.02 / math.sqrt(2 * config.n_layer)
    assert block.attention.proj.weight.std().item() == pytest.approx(residual, rel=0.02)
    assert block.mlp.down.weight.std().item() == pytest.approx(residual, rel=0.02)
    assert torch.count_nonzero(block.mlp.up.bias) == 0
    assert torch.equal(block.mlp_norm.weight, torch.ones(256))


def test_dropout_only_while_training() -> None:
    torch.manual_seed(0)
    dropped = GPT(GPTConfig.preset("tiny", vocab_size=97, dropout=0.2))
    plain = GPT(CONFIG)
    plain.load_state_dict(dropped.state_dict())
    ids = _ids(CONFIG)
    assert not torch.allclose(dropped(ids), dropped(ids))
    dropped.eval()
    torch.testing.assert_close(dropped(ids), plain(ids), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"d_model": 65}, "d_model 65 is not divisible by n_head 4"),
        ({"n_layer": 0}, "n_layer must be a positive integer, got 0"),
        ({"vocab_size": 10.5}, "vocab_size must be a positive integer, got 10.5"),
        ({"context_length": True}, "context_length must be a positive integer, got True"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
        ({"heads": 2}, "unknown GPTConfig field"),
    ],
)
def test_bad_config_is_refused(fields: dict[str, object], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        GPTConfig.preset("tiny", **fields)


def test_unknown_preset_lists_the_presets() -> None:
    with pytest.raises(
        ValueError, match="unknown GPT preset 'huge'; choose one of tiny, cpu-small"
    ):
        GPTConfig.preset("huge")


def test_forward_refuses_bad_input() -> None:
    model = GPT(CONFIG)
    with pytest.raises(ValueError, match=r"idx must be \[batch, tokens\], got shape \(5,\)"):
        model(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"129 tokens exceed the context length \(128\)"):
        model(torch.zeros(1, 129, dtype=torch.long))
