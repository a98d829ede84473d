"""benchmarks/bf16_batch.py's machinery on a tiny model, and the README's word on bf16 (issue 11,
item 18). The measured numbers are in docs/benchmarks.md; no test asserts them or any timing."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from crossent.data import Document
from crossent.models import load_model, train_bpe_tokenizer

ROOT = Path(__file__).parents[1]
TEXTS = ["The cat sat on the mat.", "Every effort moves you, and the dog looked at the cat " * 3,
         "A short one."]  # fmt: skip


def _benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bf16_batch", ROOT / "benchmarks/bf16_batch.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_float32_sums_do_not_move_with_the_batch_size(tmp_path: Path) -> None:
    """The property the benchmark contrasts bf16 with: padding a batch changes no fp32 sum."""
    tokenizer = train_bpe_tokenizer(TEXTS * 4, vocab_size=300)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    documents = [Document(f"d{index}", text) for index, text in enumerate(TEXTS)]
    lengths = {len(tokenizer(text)["input_ids"]) for text in TEXTS}
    assert len(lengths) == 3  # different lengths, so a batch of three pads two of them
    nll = _benchmark().nll_by_batch(load_model(tmp_path, device="cpu"), documents, [1, 3])
    assert sorted(nll) == [1, 3]
    assert nll[3] == pytest.approx(nll[1], rel=1e-5)
    for values in nll.values():
        assert len(values) == 3
        assert all(value > 0 for value in values)


def test_readme_says_what_bf16_numbers_are_worth() -> None:
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert "`--dtype bfloat16` numbers are approximate" in readme
    assert "`--batch-size`" in readme
    assert "benchmarks/bf16_batch.py" in readme
    benchmarks = (ROOT / "docs/benchmarks.md").read_text(encoding="utf-8")
    assert "## bfloat16 against float32, and the batch size" in benchmarks
    assert "`lscpu` flags" in benchmarks
