"""crossent.comparison: per-token KL and top-1 agreement against float64 transformers logits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from crossent.comparison import compare
from crossent.data import Document
from crossent.models import HFCausalLM, load_model
from crossent.models.gguf import embedded_gguf, gguf_cache_dir

TEXT = "Every effort moves you. The cat sat on the mat, and the dog looked at the cat.\n" * 2


def _log_probs(model: HFCausalLM, ids: list[int]) -> torch.Tensor:
    bos = model.tokenizer.bos_token_id
    with torch.no_grad():
        logits = model.model(torch.tensor([[bos, *ids[:-1]]])).logits[0]
    return logits.double().log_softmax(dim=-1)  # (T, V)


def test_kl_and_agreement_against_float64(smollm2: HFCausalLM) -> None:
    bf16 = load_model(None, dtype=torch.bfloat16, device="cpu")
    assert isinstance(bf16, HFCausalLM)
    result = compare(smollm2, bf16, [Document("t", TEXT)], window=64, largest=3)
    assert result.shared_tokenizer
    assert result.kl is not None
    ids = smollm2.tokenizer.encode(TEXT)
    log_a, log_b = _log_probs(smollm2, ids), _log_probs(bf16, ids)
    kl = (log_a.exp() * (log_a - log_b)).sum(dim=-1)  # (T,)
    assert [d.position for d in result.differences] == list(range(len(ids)))
    for difference, expected in zip(result.differences, kl.tolist(), strict=True):
        assert difference.kl == pytest.approx(expected, abs=2e-4, rel=2e-2)
    assert result.kl.mean == pytest.approx(kl.mean().item(), rel=2e-2)
    assert result.kl.percentiles["max"] == pytest.approx(kl.max().item(), rel=2e-2)
    agree = (log_a.argmax(dim=-1) == log_b.argmax(dim=-1)).double().mean().item()
    assert result.kl.top1_agreement == pytest.approx(agree, abs=1.5 / len(ids))
    nats_a = -log_a.gather(1, torch.tensor(ids)[:, None])[:, 0]
    nats_b = -log_b.gather(1, torch.tensor(ids)[:, None])[:, 0]
    change = (nats_b - nats_a).abs()
    assert len(result.largest) == 3
    assert result.largest[0].position in change.topk(3).indices.tolist()
    # each model's own evaluation is what evaluate reports alone
    assert result.a.totals.nll_nats == pytest.approx(nats_a.sum().item(), rel=1e-5)
    assert result.b.totals.nll_nats == pytest.approx(nats_b.sum().item(), rel=1e-2)


def _tiny_model_with_its_own_tokenizer(folder: Path) -> None:
    """A random two-layer Llama with a byte-level BPE of 300 tokens trained on TEXT."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator([TEXT], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>")
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=fast.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
        bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
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


def test_compare_command_on_two_copies_of_one_model(smollm2: HFCausalLM, tmp_path: Path) -> None:
    """The same weights loaded two ways (GGUF and its converted folder) agree exactly."""
    del smollm2  # the fixture made sure the converted folder is in the cache
    text = tmp_path / "t.txt"
    text.write_text(TEXT, encoding="utf-8")
    out = tmp_path / "c.json"
    folder = str(gguf_cache_dir(embedded_gguf()))
    done = subprocess.run(
        [sys.executable, "-m", "crossent", "compare", "--model", "smollm2-135m", "--model", folder,
         "--data", str(text), "--window", "32", "--json", str(out), "--report",
         str(tmp_path / "c.html")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "top-1 agreement: 100.00%" in done.stdout
    record = json.loads(out.read_text(encoding="utf-8"))
    assert record["shared_tokenizer"] is True
    assert record["kl"]["percentiles"]["max"] == pytest.approx(0.0, abs=1e-6)
    assert record["a"]["totals"]["bits_per_byte"] == pytest.approx(
        record["b"]["totals"]["bits_per_byte"], rel=1e-9
    )
    assert (tmp_path / "c.html").stat().st_size > 1000


def test_compare_needs_two_models() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "crossent", "compare", "--model", "smollm2-135m"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "crossent: error: compare takes exactly two --model options, got 1"
    ]
