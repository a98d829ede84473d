"""The embedded SmolLM2 through the CausalLM protocol, checked against transformers itself."""

from __future__ import annotations

import os
from pathlib import Path

import huggingface_hub
import pytest
import torch
from transformers import AutoModelForCausalLM

from crossent.models import CausalLM, HFCausalLM, Tokenizer, load_model
from crossent.models.huggingface import _embedded_gguf, gguf_cache_dir

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


def test_tokenizer_round_trips_without_special_tokens(smollm2: HFCausalLM) -> None:
    ids = smollm2.tokenizer.encode(TEXT)
    assert all(isinstance(token, int) for token in ids)
    assert smollm2.tokenizer.bos_token_id not in ids
    assert smollm2.tokenizer.decode(ids) == TEXT
    assert smollm2.tokenizer.encode("") == []


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


def test_second_load_comes_from_the_cache(smollm2: HFCausalLM) -> None:
    entry = gguf_cache_dir(_embedded_gguf())
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(os.listdir(entry))
    assert not [name for name in os.listdir(entry.parent) if name.startswith(".")]
    again = load_model("smollm2-135m", device="cpu")
    ids = torch.tensor([smollm2.tokenizer.encode(TEXT)])
    assert torch.equal(again.hidden_states(ids), smollm2.hidden_states(ids))
    assert torch.equal(again.head_weight, smollm2.head_weight)


@pytest.mark.slow
def test_cached_model_equals_transformers_gguf_loading(smollm2: HFCausalLM) -> None:
    """The oracle: transformers' own dequantisation of the GGUF file, not our cache."""
    gguf = _embedded_gguf()
    reference = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    ids = torch.tensor([smollm2.tokenizer.encode(TEXT)])
    with torch.no_grad():
        expected = reference(input_ids=ids).logits
    logits = smollm2.hidden_states(ids) @ smollm2.head_weight.T
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)


def test_cache_dir_honours_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CROSSENT_CACHE_DIR", str(tmp_path))
    entry = gguf_cache_dir(_embedded_gguf())
    assert entry.parent == tmp_path / "models"
    assert entry.name.startswith("SmolLM2-135M-Instruct.Q4_1-")


def test_a_folder_without_config_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"is not a model: no config\.json in"):
        load_model(tmp_path)


def test_a_file_that_is_not_gguf_is_not_a_model(tmp_path: Path) -> None:
    weights = tmp_path / "model.bin"
    weights.write_bytes(b"\0" * 16)
    with pytest.raises(ValueError, match="is not a model: expected a Hugging Face model directory"):
        load_model(weights)


def test_a_broken_gguf_file_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CROSSENT_CACHE_DIR", str(tmp_path / "cache"))
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf file")
    with pytest.raises(ValueError, match="is not a GGUF model transformers can load"):
        load_model(broken)
    assert os.listdir(tmp_path / "cache" / "models") == []


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
