"""Damaged files (issue 15): a truncated or changed checkpoint, training state or model-cache
entry is named in one line, never loaded as a wrong model, and a damaged cache entry is
converted again.

The damage is real (bytes cut off or flipped in the files a real run wrote); the oracle is the
undamaged model's own hidden states and the files' sizes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from crossent.checksums import CHECKSUMS_FILE, write_checksums
from crossent.models import HFCausalLM, gguf, load_model
from crossent.training import train
from crossent.training.checkpoints import read_state
from training.tiny_runs import tiny_config, write_text


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("damage")
    out = folder / "run"
    train(tiny_config(write_text(folder), out, max_steps=2))
    return out


def _copy(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "best"
    shutil.copytree(run / "best", copy)
    return copy


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # in the weights, past the header safetensors checks
    path.write_bytes(bytes(data))


def test_an_undamaged_checkpoint_loads(run: Path) -> None:
    assert (run / "best" / CHECKSUMS_FILE).is_file()
    assert load_model(run / "best", device="cpu").vocab_size > 0


def test_a_truncated_checkpoint_is_named(run: Path, tmp_path: Path) -> None:
    checkpoint = _copy(run, tmp_path)
    weights = checkpoint / "model.safetensors"
    size = weights.stat().st_size
    with weights.open("r+b") as stream:
        stream.truncate(size - 100)
    with pytest.raises(ValueError, match=r"model\.safetensors is truncated") as info:
        load_model(checkpoint, device="cpu")
    assert str(info.value) == (
        f"{weights} is truncated: {size - 100} bytes, but {size} were written"
    )


def test_a_flipped_bit_is_named_and_the_command_line_says_it_in_one_line(
    run: Path, tmp_path: Path
) -> None:
    checkpoint = _copy(run, tmp_path)
    _flip_a_byte(checkpoint / "model.safetensors")
    with pytest.raises(ValueError, match="its SHA-256 is not the one it was written with"):
        load_model(checkpoint, device="cpu")
    done = subprocess.run(
        [sys.executable, "-m", "crossent", "eval", "--model", str(checkpoint),
         "--max-tokens", "8"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"crossent: error: {checkpoint / 'model.safetensors'} is damaged: its SHA-256 is not "
        "the one it was written with"
    ]


def test_a_missing_file_and_a_damaged_checksum_list(run: Path, tmp_path: Path) -> None:
    checkpoint = _copy(run, tmp_path)
    (checkpoint / "tokenizer.json").unlink()
    with pytest.raises(ValueError, match=r"tokenizer\.json is missing from"):
        load_model(checkpoint, device="cpu")
    (checkpoint / CHECKSUMS_FILE).write_text('{"model.safetensors": 3')
    with pytest.raises(ValueError, match="is not the checksum list crossent wrote"):
        load_model(checkpoint, device="cpu")


def test_a_truncated_training_state_is_named(run: Path, tmp_path: Path) -> None:
    folder = tmp_path / "run"
    shutil.copytree(run, folder)
    state = folder / "last" / "training_state.pt"
    os.truncate(state, state.stat().st_size // 2)
    with pytest.raises(ValueError, match=r"^cannot resume from .*training_state\.pt is truncated"):
        read_state(folder)


def test_a_damaged_cache_entry_is_converted_again(
    smollm2: HFCausalLM,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The conversion itself (30 s of transformers' dequantisation, tested in test_gguf.py) is
    stood in for by a copy of what it wrote into the real cache; the checksum check, the
    warning and the rebuild are crossent's own."""
    converted = gguf.gguf_cache_dir(gguf.embedded_gguf())
    monkeypatch.setenv("CROSSENT_CACHE_DIR", str(tmp_path / "cache"))
    conversions: list[Path] = []

    def convert(path: Path, folder: Path) -> None:
        conversions.append(folder)
        for name in os.listdir(converted):
            if name != CHECKSUMS_FILE:
                shutil.copy(converted / name, folder / name)
        write_checksums(folder)  # as the conversion ends

    monkeypatch.setattr(gguf, "_convert", convert)
    load_model(None, device="cpu")
    entry = gguf.gguf_cache_dir(gguf.embedded_gguf())
    _flip_a_byte(entry / "model.safetensors")
    with caplog.at_level("WARNING", logger="crossent.models.gguf"):
        again = load_model(None, device="cpu")
    assert len(conversions) == 2
    assert "the model cache entry is damaged" in caplog.text
    assert "its SHA-256 is not the one it was written with" in caplog.text
    ids = torch.tensor([smollm2.tokenizer.encode("A damaged cache never gives a wrong model.")])
    assert torch.equal(again.hidden_states(ids), smollm2.hidden_states(ids))
    assert sorted(os.listdir(entry.parent)) == [entry.name]
