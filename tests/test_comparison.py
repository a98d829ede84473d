"""crossent.comparison: per-token KL and top-1 agreement against float64 transformers logits."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from crossent.comparison import compare
from crossent.data import Document
from crossent.models import HFCausalLM, load_model, train_bpe_tokenizer

TEXT = "Every effort moves you. The cat sat on the mat, and the dog looked at the cat.\n" * 2
# Each weight of the perturbed copy is multiplied by 1 + this much Gaussian noise: enough for a
# mean KL near 0.1 nats and a top-1 agreement well below 100% on TEXT.
NOISE = 0.03


def _log_probs(model: HFCausalLM, ids: list[int]) -> torch.Tensor:
    """The model's own transformers logits for BOS + ``ids[:-1]``, log-softmaxed in float64."""
    bos = model.tokenizer.bos_token_id
    with torch.no_grad():
        logits: torch.Tensor = model.model(torch.tensor([[bos, *ids[:-1]]])).logits[0]
    return logits.double().log_softmax(dim=-1)  # (T, V)


@dataclass(frozen=True)
class Oracle:
    """What compare should find for A and B on ``ids``, from their logits in float64."""

    kl: torch.Tensor  # (T,) KL(P_A || P_B) per token, nats
    nats_a: torch.Tensor  # (T,) -ln p_A(token)
    nats_b: torch.Tensor  # (T,)
    top1_agreement: float

    @classmethod
    def of(cls, model_a: HFCausalLM, model_b: HFCausalLM, ids: list[int]) -> Oracle:
        log_a, log_b = _log_probs(model_a, ids), _log_probs(model_b, ids)
        targets = torch.tensor(ids)[:, None]
        return cls(
            kl=(log_a.exp() * (log_a - log_b)).sum(dim=-1),
            nats_a=-log_a.gather(1, targets)[:, 0],
            nats_b=-log_b.gather(1, targets)[:, 0],
            top1_agreement=(log_a.argmax(dim=-1) == log_b.argmax(dim=-1)).double().mean().item(),
        )


def _bits_per_byte(nats: torch.Tensor) -> float:
    """Bits per byte of TEXT from its per-token nats: their sum over ln 2 and its UTF-8 bytes."""
    return nats.sum().item() / (math.log(2) * len(TEXT.encode("utf-8")))


@pytest.fixture(scope="module")
def perturbed(smollm2: HFCausalLM) -> HFCausalLM:
    """A second model, genuinely different from the first, that shares its tokenizer."""
    model = copy.deepcopy(smollm2.model)  # tied embeddings stay tied
    noise = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(1 + NOISE * torch.randn(parameter.shape, generator=noise))
    return HFCausalLM(model, smollm2.hf_tokenizer, name="smollm2-135m-perturbed")


@pytest.fixture(scope="module")
def oracle(smollm2: HFCausalLM, perturbed: HFCausalLM) -> Oracle:
    expected = Oracle.of(smollm2, perturbed, smollm2.tokenizer.encode(TEXT))
    # Far from two copies of one model, so a comparison of A with itself cannot pass.
    assert expected.kl.mean().item() > 0.01
    assert expected.top1_agreement < 0.95
    bits_a, bits_b = (_bits_per_byte(nats) for nats in (expected.nats_a, expected.nats_b))
    assert abs(bits_a - bits_b) > 0.01
    return expected


def test_a_perturbed_copy_against_float64(
    smollm2: HFCausalLM, perturbed: HFCausalLM, oracle: Oracle
) -> None:
    result = compare(smollm2, perturbed, [Document("t", TEXT)], window=64, largest=3)
    assert result.shared_tokenizer
    assert result.kl is not None
    assert [d.position for d in result.differences] == list(range(len(oracle.kl)))
    # compare works in float32: its error on a KL is a few float32 epsilons of the logits.
    for difference, expected in zip(result.differences, oracle.kl.tolist(), strict=True):
        assert difference.kl == pytest.approx(expected, abs=2e-5, rel=1e-3)
    for difference, nats_a, nats_b in zip(
        result.differences, oracle.nats_a.tolist(), oracle.nats_b.tolist(), strict=True
    ):
        assert (difference.nats_a, difference.nats_b) == pytest.approx((nats_a, nats_b), abs=1e-4)
    assert result.kl.tokens == len(oracle.kl)
    assert result.kl.mean == pytest.approx(oracle.kl.mean().item(), rel=1e-4)
    assert result.kl.percentiles["p50"] == pytest.approx(
        torch.quantile(oracle.kl, 0.5).item(), rel=1e-3
    )
    assert result.kl.percentiles["max"] == pytest.approx(oracle.kl.max().item(), rel=1e-3)
    assert result.kl.top1_agreement == pytest.approx(
        oracle.top1_agreement, abs=1.5 / len(oracle.kl)
    )
    change = (oracle.nats_b - oracle.nats_a).abs()
    assert result.largest[0].position in change.topk(3).indices.tolist()
    for side, nats in ((result.a, oracle.nats_a), (result.b, oracle.nats_b)):
        assert side.totals.bytes == len(TEXT.encode("utf-8"))
        assert side.totals.bits_per_byte == pytest.approx(_bits_per_byte(nats), rel=1e-5)
    # B's minus A's bits per byte, paired over tokens: the sample deviation of the changes
    changes = (oracle.nats_b - oracle.nats_a).numpy()
    per_byte = math.log(2) * len(TEXT.encode("utf-8"))
    assert result.difference is not None
    assert result.difference.paired_over == "tokens"
    assert result.difference.bits_per_byte == pytest.approx(changes.sum() / per_byte, rel=1e-4)
    expected_se = math.sqrt(len(changes)) * changes.std(ddof=1) / per_byte
    assert result.difference.standard_error == pytest.approx(expected_se, rel=1e-3)
    # llama.cpp's statistics of the real model against its perturbed copy
    assert result.kl.mean_se == pytest.approx(
        oracle.kl.std().item() / math.sqrt(len(oracle.kl)), rel=1e-3
    )
    delta = (-oracle.nats_b).exp() - (-oracle.nats_a).exp()
    assert result.kl.delta_p is not None
    assert result.kl.delta_p.rms == pytest.approx(delta.square().mean().sqrt().item(), rel=1e-3)


@pytest.mark.slow
def test_kl_and_agreement_against_float64(smollm2: HFCausalLM) -> None:
    """The same weights computed in bfloat16: compare's numbers for a mixed-dtype pair."""
    bf16 = load_model(None, dtype=torch.bfloat16, device="cpu")
    assert isinstance(bf16, HFCausalLM)
    result = compare(smollm2, bf16, [Document("t", TEXT)], window=64, largest=3)
    assert result.shared_tokenizer
    assert result.kl is not None
    ids = smollm2.tokenizer.encode(TEXT)
    oracle = Oracle.of(smollm2, bf16, ids)
    assert [d.position for d in result.differences] == list(range(len(ids)))
    for difference, expected in zip(result.differences, oracle.kl.tolist(), strict=True):
        assert difference.kl == pytest.approx(expected, abs=2e-4, rel=2e-2)
    assert result.kl.mean == pytest.approx(oracle.kl.mean().item(), rel=2e-2)
    assert result.kl.percentiles["max"] == pytest.approx(oracle.kl.max().item(), rel=2e-2)
    assert result.kl.top1_agreement == pytest.approx(oracle.top1_agreement, abs=1.5 / len(ids))
    change = (oracle.nats_b - oracle.nats_a).abs()
    assert len(result.largest) == 3
    assert result.largest[0].position in change.topk(3).indices.tolist()
    # each model's own evaluation is what evaluate reports alone
    assert result.a.totals.nll_nats == pytest.approx(oracle.nats_a.sum().item(), rel=1e-5)
    assert result.b.totals.nll_nats == pytest.approx(oracle.nats_b.sum().item(), rel=1e-2)


def _tiny_model_with_its_own_tokenizer(folder: Path) -> None:
    """A random two-layer Llama with a byte-level BPE of 280 tokens trained on TEXT."""
    tokenizer = train_bpe_tokenizer([TEXT], vocab_size=280)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(folder)


def test_different_tokenizers_compare_bits_per_byte_only(
    smollm2: HFCausalLM, tmp_path: Path
) -> None:
    _tiny_model_with_its_own_tokenizer(tmp_path / "tiny")
    tiny = load_model(tmp_path / "tiny", device="cpu")
    result = compare(smollm2, tiny, [Document("t", TEXT)], window=64)
    assert not result.shared_tokenizer
    assert result.kl is None
    assert result.differences == []
    assert result.a.totals.bytes == result.b.totals.bytes == len(TEXT.encode())
    assert result.a.totals.tokens != result.b.totals.tokens


@pytest.mark.slow
def test_compare_command_on_the_model_and_a_perturbed_copy(
    perturbed: HFCausalLM, oracle: Oracle, tmp_path: Path
) -> None:
    """``crossent compare`` of the embedded model with a folder holding the perturbed copy."""
    folder = tmp_path / "perturbed"
    perturbed.model.save_pretrained(folder)
    perturbed.hf_tokenizer.save_pretrained(folder)
    text = tmp_path / "t.txt"
    text.write_text(TEXT, encoding="utf-8")
    out = tmp_path / "c.json"
    done = subprocess.run(
        [sys.executable, "-m", "crossent", "compare", "--model", "smollm2-135m", "--model",
         str(folder), "--data", str(text), "--window", "64", "--json", str(out), "--report",
         str(tmp_path / "c.html")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    record = json.loads(out.read_text(encoding="utf-8"))
    assert record["shared_tokenizer"] is True
    agreement = record["kl"]["top1_agreement"]
    assert f"top-1 agreement: {100 * agreement:.2f}%" in done.stdout
    assert agreement == pytest.approx(oracle.top1_agreement, abs=1.5 / len(oracle.kl))
    assert record["kl"]["tokens"] == len(oracle.kl)
    assert record["kl"]["mean"] == pytest.approx(oracle.kl.mean().item(), rel=1e-4)
    assert record["kl"]["percentiles"]["max"] == pytest.approx(oracle.kl.max().item(), rel=1e-3)
    for side, nats in (("a", oracle.nats_a), ("b", oracle.nats_b)):
        assert record[side]["totals"]["bits_per_byte"] == pytest.approx(
            _bits_per_byte(nats), rel=1e-5
        )
    assert (tmp_path / "c.html").stat().st_size > 1000


def test_compare_needs_two_models() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "crossent", "compare", "--model", "smollm2-135m"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "crossent: error: compare takes at least two --model options, got 1"
    ]
