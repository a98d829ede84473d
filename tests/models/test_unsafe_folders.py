"""Model folders that could attack or exhaust the machine (issue 15): code of their own, a
crafted pickle, a config asking for absurd sizes. Each is refused in one line before it runs
or allocates anything; the oracle is a marker file the attack would have written, and the
memory the process holds.
"""

from __future__ import annotations

import json
import os
import resource
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from crossent.models import HFCausalLM, load_model


@pytest.fixture
def folder(tmp_path: Path, smollm2: HFCausalLM) -> Path:
    """A tiny Llama with SmolLM2's tokenizer, saved as save_pretrained writes it."""
    config = AutoConfig.for_model(
        "llama", vocab_size=49152, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=64,
    )  # fmt: skip
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
    path = tmp_path / "model"
    model.save_pretrained(path)
    smollm2.hf_tokenizer.save_pretrained(path)
    return path


def test_a_plain_folder_loads(folder: Path) -> None:
    assert load_model(folder, device="cpu").vocab_size == 49152


@pytest.mark.parametrize("model_type", ["llama", "evil"])
def test_code_in_the_folder_never_runs(folder: Path, model_type: str) -> None:
    """transformers would import ``evil.py`` with ``trust_remote_code=True``; crossent never
    passes it. A known architecture loads as transformers' own class; an unknown one is
    refused in one line."""
    marker = folder.parent / "MARKER"
    (folder / "evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from transformers import LlamaForCausalLM as EvilForCausalLM\n"
    )
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "evil.EvilForCausalLM"}
    config["model_type"] = model_type
    (folder / "config.json").write_text(json.dumps(config))
    if model_type == "llama":
        loaded = load_model(folder, device="cpu")
        assert isinstance(loaded, HFCausalLM)
        assert type(loaded.model).__name__ == "LlamaForCausalLM"
    else:
        with pytest.raises(ValueError, match="is not a causal LM transformers can load") as info:
            load_model(folder, device="cpu")
        assert "\n" not in str(info.value)
    assert not marker.exists()


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_pickle_is_refused_without_running_it(folder: Path) -> None:
    marker = folder.parent / "MARKER"
    weights = {**torch.load(_as_pickle(folder), weights_only=True), "evil": _Evil(marker)}
    torch.save(weights, folder / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"pytorch_model\.bin\) hold more than tensors") as info:
        load_model(folder, device="cpu")
    assert "save the model as safetensors" in str(info.value)
    assert not marker.exists()


def _as_pickle(folder: Path) -> Path:
    """The folder's weights moved from safetensors into a plain pytorch_model.bin."""
    import safetensors.torch

    path = folder / "pytorch_model.bin"
    torch.save(safetensors.torch.load_file(folder / "model.safetensors"), path)
    (folder / "model.safetensors").unlink()
    return path


def test_plain_pickle_weights_load_in_weights_only_mode(folder: Path) -> None:
    ours = load_model(folder, device="cpu").head_weight.clone()
    _as_pickle(folder)
    assert torch.equal(load_model(folder, device="cpu").head_weight, ours)


def test_absurd_sizes_are_refused_before_allocating(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_size=65536, intermediate_size=262144, num_hidden_layers=512)
    (folder / "config.json").write_text(json.dumps(config))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ValueError, match="refused before allocating") as info:
        load_model(folder, device="cpu")
    assert "parameters" in str(info.value)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 1 << 20  # well under the 100+ TiB asked for: nothing was allocated
