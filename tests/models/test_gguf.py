"""GGUF files: converted once by transformers, cached, and the cache left whole on failure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from crossent.models import HFCausalLM, gguf, load_model
from crossent.models.gguf import embedded_gguf, gguf_cache_dir

TEXT = "The quick brown fox jumps over the lazy dog. Ça va? 日本語, emoji 🦊 and a tab\there."


def test_second_load_comes_from_the_cache(smollm2: HFCausalLM) -> None:
    entry = gguf_cache_dir(embedded_gguf())
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(os.listdir(entry))
    assert not [name for name in os.listdir(entry.parent) if name.startswith(".")]
    again = load_model("smollm2-135m", device="cpu")
    ids = torch.tensor([smollm2.tokenizer.encode(TEXT)])
    assert torch.equal(again.hidden_states(ids), smollm2.hidden_states(ids))
    assert torch.equal(again.head_weight, smollm2.head_weight)


@pytest.mark.slow
def test_cached_model_equals_transformers_gguf_loading(smollm2: HFCausalLM) -> None:
    """The oracle: transformers' own dequantisation of the GGUF file, not our cache."""
    path = embedded_gguf()
    reference = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32
    )
    ids = torch.tensor([smollm2.tokenizer.encode(TEXT)])
    with torch.no_grad():
        expected = reference(input_ids=ids).logits
    logits = smollm2.hidden_states(ids) @ smollm2.head_weight.T
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)


def test_cache_dir_honours_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CROSSENT_CACHE_DIR", str(tmp_path))
    entry = gguf_cache_dir(embedded_gguf())
    assert entry.parent == tmp_path / "models"
    assert entry.name.startswith("SmolLM2-135M-Instruct.Q4_1-")


def test_an_interrupted_conversion_leaves_no_entry(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CROSSENT_CACHE_DIR", str(tmp_path))
    source = tmp_path / "tiny.gguf"
    source.write_bytes(b"GGUF, or so it says")

    def write_then_stop(path: Path, folder: Path) -> None:
        (folder / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(gguf, "_convert", write_then_stop)
    with pytest.raises(KeyboardInterrupt):
        gguf.converted_gguf(source)
    assert os.listdir(tmp_path / "models") == []

    monkeypatch.setattr(gguf, "_convert", lambda path, folder: (folder / "config.json").touch())
    entry = gguf.converted_gguf(source)
    assert entry == gguf_cache_dir(source)
    assert os.listdir(tmp_path / "models") == [entry.name]
    assert os.listdir(entry) == ["config.json"]


def test_a_broken_gguf_file_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CROSSENT_CACHE_DIR", str(tmp_path / "cache"))
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf file")
    with pytest.raises(ValueError, match="is not a GGUF model transformers can load"):
        load_model(broken)
    assert os.listdir(tmp_path / "cache" / "models") == []


def test_without_the_embedded_package_the_message_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gguf, "_EMBEDDED_PACKAGE", "crossent_no_such_package")
    with pytest.raises(ValueError, match=r"'smollm2-135m' is not installed: pip install"):
        load_model(None, device="cpu")
