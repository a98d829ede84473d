"""A crossent GPT saved and loaded back, through load_gpt, load_model and ``crossent eval``."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from transformers import PreTrainedTokenizerFast

import crossent
from crossent.models import (
    GPT,
    CausalLM,
    GPTCausalLM,
    GPTConfig,
    Tokenizer,
    load_gpt,
    load_model,
    save_gpt,
    train_bpe_tokenizer,
)

TRAINING_TEXT = "Every effort moves you. The cat sat on the mat, and the dog sat on the log.\n" * 30
TEXT = "The dog sat on the mat. 🐈 Ωμέγα\r\n"
# Like the training text, so the trained model predicts it well: a misaligned score would show.
EVAL_TEXT = "The dog sat on the mat, and the cat sat on the log.\n"


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return train_bpe_tokenizer([TRAINING_TEXT], vocab_size=300)


@pytest.fixture(scope="module")
def model(tokenizer: PreTrainedTokenizerFast) -> GPT:
    """A tiny GPT trained a little on the text, so its predictions are far from uniform."""
    torch.manual_seed(0)
    config = GPTConfig.preset("tiny", vocab_size=len(tokenizer), context_length=64)
    model = GPT(config)
    ids = torch.tensor(tokenizer.encode(TRAINING_TEXT, add_special_tokens=False)[: 33 * 8])
    batch = ids.view(8, 33)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(30):
        hidden = model(batch[:, :-1])
        crossent.linear_cross_entropy(hidden, model.head_weight, batch[:, 1:]).backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


@pytest.fixture(scope="module")
def saved(
    tmp_path_factory: pytest.TempPathFactory, model: GPT, tokenizer: PreTrainedTokenizerFast
) -> Path:
    folder = tmp_path_factory.mktemp("checkpoints") / "tiny"
    assert save_gpt(folder, model, tokenizer) == folder
    return folder


def test_round_trip_gives_identical_hidden_states(saved: Path, model: GPT) -> None:
    loaded = load_gpt(saved, device="cpu")
    assert loaded.module.config == model.config
    ids = torch.randint(
        0, model.config.vocab_size, (2, 50), generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        expected = model(ids)
    assert torch.equal(loaded.hidden_states(ids), expected)
    assert loaded.head_weight is loaded.module.token_embedding.weight


def test_loaded_model_is_a_causal_lm_for_evaluation(saved: Path, model: GPT) -> None:
    loaded = load_gpt(saved, device="cpu")
    assert isinstance(loaded, CausalLM)
    assert isinstance(loaded.tokenizer, Tokenizer)
    assert loaded.name == os.fspath(saved)
    assert (loaded.vocab_size, loaded.context_length) == (model.config.vocab_size, 64)
    assert loaded.head_bias is None
    assert loaded.device == torch.device("cpu")
    assert not loaded.module.training
    assert not any(parameter.requires_grad for parameter in loaded.module.parameters())


def test_load_model_recognises_the_folder(saved: Path) -> None:
    loaded = load_model(saved, device="cpu", dtype=torch.bfloat16)
    assert isinstance(loaded, GPTCausalLM)
    assert loaded.head_weight.dtype == torch.bfloat16
    assert loaded.name == os.fspath(saved)


def test_tokenizer_comes_back_with_the_same_ids(
    saved: Path, tokenizer: PreTrainedTokenizerFast
) -> None:
    loaded = load_gpt(saved, device="cpu").tokenizer
    ids = tokenizer.encode(TEXT, add_special_tokens=False)
    assert loaded.encode(TEXT) == ids
    assert loaded.decode(ids) == TEXT
    assert loaded.bos_token_id == loaded.eos_token_id == tokenizer.eos_token_id == 0


def test_files_on_disk(saved: Path, model: GPT) -> None:
    names = set(os.listdir(saved))
    assert {"crossent_gpt.json", "model.safetensors", "tokenizer.json"} <= names
    assert not [name for name in names if name.startswith(".")]  # no staging left behind
    record = json.loads((saved / "crossent_gpt.json").read_text(encoding="utf-8"))
    assert record == {"format": "crossent-gpt", "version": 1, "config": model.config.to_dict()}
    with safe_open(saved / "model.safetensors", framework="pt") as weights:
        stored = sum(math.prod(weights.get_slice(key).get_shape()) for key in weights.keys())  # noqa: SIM118 (not a dict)
    # Shapes multiplied out; the tied head is stored once, as the embedding.
    assert stored == model.num_parameters()


def test_other_files_are_left_alone(
    tmp_path: Path, model: GPT, tokenizer: PreTrainedTokenizerFast
) -> None:
    folder = tmp_path / "run" / "best"
    save_gpt(folder, model, tokenizer)
    (folder / "optimizer.pt").write_bytes(b"training state")
    save_gpt(folder, model, tokenizer)
    assert (folder / "optimizer.pt").read_bytes() == b"training state"
    assert isinstance(load_gpt(folder, device="cpu"), GPTCausalLM)


def test_a_failed_save_leaves_no_checkpoint(
    tmp_path: Path, model: GPT, tokenizer: PreTrainedTokenizerFast, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(type(tokenizer), "save_pretrained", fail)
    folder = tmp_path / "new"
    with pytest.raises(OSError, match="disk full"):
        save_gpt(folder, model, tokenizer)
    assert os.listdir(folder) == []


def test_a_tokenizer_larger_than_the_vocabulary_is_refused(
    tmp_path: Path, tokenizer: PreTrainedTokenizerFast
) -> None:
    small = GPT(GPTConfig.preset("tiny", vocab_size=100))
    complaint = rf"the tokenizer has {len(tokenizer)} tokens, more than .* \(100\)"
    with pytest.raises(ValueError, match=complaint):
        save_gpt(tmp_path / "small", small, tokenizer)


def test_bad_checkpoints_are_refused(saved: Path, tmp_path: Path) -> None:
    newer = tmp_path / "newer"
    newer.mkdir()
    record = json.loads((saved / "crossent_gpt.json").read_text(encoding="utf-8"))
    (newer / "crossent_gpt.json").write_text(json.dumps({**record, "version": 2}))
    with pytest.raises(ValueError, match="format version 2 is not 1"):
        load_model(newer, device="cpu")
    (newer / "crossent_gpt.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"no model\.safetensors in"):
        load_model(newer, device="cpu")
    (newer / "crossent_gpt.json").write_text(json.dumps({**record, "config": {"d_model": 7}}))
    with pytest.raises(ValueError, match="has no valid config: d_model 7 is not divisible"):
        load_gpt(newer)
    with pytest.raises(
        ValueError, match=r"is not a crossent GPT checkpoint: no crossent_gpt\.json"
    ):
        load_gpt(tmp_path)


def test_crossent_eval_scores_the_checkpoint(saved: Path, model: GPT, tmp_path: Path) -> None:
    tokenizer = load_gpt(saved, device="cpu").tokenizer
    ids = tokenizer.encode(EVAL_TEXT)
    assert len(ids) < 32  # one window: the oracle below is the whole computation
    text_file = tmp_path / "text.txt"
    text_file.write_bytes(EVAL_TEXT.encode("utf-8"))
    out = tmp_path / "result.json"
    done = subprocess.run(
        [sys.executable, "-m", "crossent", "eval", "--model", str(saved), "--data",
         str(text_file), "--window", "32", "--json", str(out)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["model"] == str(saved)
    (document,) = result["documents"]

    # The oracle: the GPT's own logits in float64, for <|endoftext|> (BOS) and then the text.
    reference = GPT(model.config).double().eval()
    reference.load_state_dict(model.state_dict())
    inputs = torch.tensor([[tokenizer.bos_token_id, *ids[:-1]]])
    with torch.no_grad():
        logits = reference(inputs)[0] @ reference.head_weight.T  # (T, V)
    nll = F.cross_entropy(logits, torch.tensor(ids), reduction="sum").item()
    assert document["tokens"] == len(ids)
    assert document["nll_nats"] == pytest.approx(nll, rel=1e-5)
    assert nll < 0.5 * len(ids) * math.log(model.config.vocab_size)  # far from uniform
