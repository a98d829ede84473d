"""load_model's dispatch: which kind of model a spec names, and one-line refusals."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub
import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from crossent.models import DEFAULT_MODEL, HFCausalLM, load_model, train_bpe_tokenizer


def test_the_default_is_the_embedded_model(smollm2: HFCausalLM) -> None:
    assert DEFAULT_MODEL == "smollm2-135m"
    assert smollm2.name == DEFAULT_MODEL


def test_a_model_directory_loads_without_the_network(tmp_path: Path) -> None:
    tokenizer = train_bpe_tokenizer(["a tiny text, a tiny model"] * 10, vocab_size=300)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
    )  # fmt: skip
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "tiny")  # type: ignore[no-untyped-call]
    tokenizer.save_pretrained(tmp_path / "tiny")
    model = load_model(tmp_path / "tiny", device="cpu", dtype=torch.bfloat16)
    assert isinstance(model, HFCausalLM)
    assert model.name == str(tmp_path / "tiny")
    assert (model.vocab_size, model.context_length) == (len(tokenizer), 64)
    assert model.head_weight.dtype == torch.bfloat16


def test_a_folder_without_config_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"is not a model: no config\.json in"):
        load_model(tmp_path)


def test_a_file_that_is_not_gguf_is_not_a_model(tmp_path: Path) -> None:
    weights = tmp_path / "model.bin"
    weights.write_bytes(b"\0" * 16)
    with pytest.raises(ValueError, match="is not a model: expected a Hugging Face model directory"):
        load_model(weights)


def test_a_missing_path_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        load_model(tmp_path / "nowhere.gguf")
    with pytest.raises(ValueError, match="does not exist"):
        load_model("./no/such/model")


def test_a_hub_name_offline_fails_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # Offline, the Hub is refused at once instead of after about 30 s of retries. The flag is
    # read when huggingface_hub is imported, so the module's copy is set too.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match="Hugging Face Hub is unreachable") as caught:
        load_model("crossent-no-such-owner/no-such-model")
    message = str(caught.value)
    assert message.startswith(
        "model 'crossent-no-such-owner/no-such-model' is not a local directory or .gguf file"
    )
    assert "\n" not in message
