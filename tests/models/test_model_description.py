"""Every loaded model says what its weights are: the default is a 4-bit GGUF, not SmolLM2 itself.

The oracles: the GGUF header parsed here with ``struct`` from the format's specification (not
with the ``gguf`` package crossent uses), the parameter count of the converted model, and
files written here with known tensor types.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import BinaryIO

import gguf
import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from crossent.models import HFCausalLM, load_model, save_gpt
from crossent.models.gguf import embedded_gguf, file_type_of, read_file_type
from crossent.models.gpt import GPT, GPTConfig

# From the GGUF specification: llama_ftype 3 is "mostly Q4_1"; the value types' sizes.
SPEC_FILE_TYPES = {3: "Q4_1"}
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
            12: "d"}  # fmt: skip
_STRING, _ARRAY = 8, 9


def _skip_value(file: BinaryIO, kind: int) -> object:
    if kind == _STRING:
        (length,) = struct.unpack("<Q", file.read(8))
        return file.read(length).decode("utf-8")
    if kind == _ARRAY:
        item_kind, count = struct.unpack("<IQ", file.read(12))
        for _ in range(count):
            _skip_value(file, item_kind)
        return None
    code = _SCALARS[kind]
    return struct.unpack("<" + code, file.read(struct.calcsize(code)))[0]


def _header_file_type(path: Path) -> int:
    """``general.file_type`` from the header, read by the specification."""
    with path.open("rb") as file:
        magic, _version, _tensors, keys = struct.unpack("<4sIQQ", file.read(24))
        assert magic == b"GGUF"
        for _ in range(keys):
            key = _skip_value(file, _STRING)
            (kind,) = struct.unpack("<I", file.read(4))
            value = _skip_value(file, kind)
            if key == "general.file_type":
                assert isinstance(value, int)
                return value
    raise AssertionError("no general.file_type")


def test_the_default_model_says_it_is_a_q4_1_gguf(smollm2: HFCausalLM) -> None:
    expected = SPEC_FILE_TYPES[_header_file_type(embedded_gguf())]
    assert smollm2.quantisation == expected == "Q4_1"
    assert smollm2.description.startswith("SmolLM2-135M-Instruct, Q4_1 GGUF (4-bit, ")
    assert smollm2.description.endswith("dequantised to float32")
    # every stored weight is one of the dequantised model's parameters (the head is tied)
    file_type = file_type_of(embedded_gguf())
    parameters = sum(parameter.numel() for parameter in smollm2.model.parameters())
    assert sum(file_type.weights.values()) == parameters
    assert file_type == read_file_type(embedded_gguf())  # what was kept is what the file says


def _write_gguf(path: Path, file_type: gguf.LlamaFileType | None) -> None:
    writer = gguf.GGUFWriter(path, "llama")
    if file_type is not None:
        writer.add_file_type(file_type)
    block = gguf.GGMLQuantizationType.Q8_0
    quantised = gguf.quants.quantize(np.ones((4, 64), dtype=np.float32), block)
    writer.add_tensor("quantised", quantised, raw_dtype=block)
    writer.add_tensor("norm", np.ones(32, dtype=np.float32))
    writer.add_tensor("half", np.ones((2, 16), dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_file_type_and_bits_per_weight_of_a_written_file(tmp_path: Path) -> None:
    path = tmp_path / "tiny.gguf"
    _write_gguf(path, gguf.LlamaFileType.MOSTLY_Q8_0)
    file_type = read_file_type(path)
    assert file_type.file_type == "Q8_0"
    assert file_type.quantised
    assert file_type.weights == {"Q8_0": 256, "F32": 32, "F16": 32}
    # Q8_0 stores 32 weights in 34 bytes: 8-bit values and one 16-bit scale
    bits = 256 * 34 * 8 / 32 + 32 * 32 + 32 * 16
    assert file_type.bits_per_weight == pytest.approx(bits / 320)
    assert file_type.describe() == f"Q8_0 GGUF (8-bit, {bits / 320:.3g} bits per weight)"


def test_a_file_without_its_type_is_named_by_most_of_its_weights(tmp_path: Path) -> None:
    path = tmp_path / "untyped.gguf"
    _write_gguf(path, None)
    assert read_file_type(path).file_type == "Q8_0"


def test_a_float_gguf_is_not_quantised(tmp_path: Path) -> None:
    path = tmp_path / "f16.gguf"
    _write_gguf(path, gguf.LlamaFileType.MOSTLY_F16)
    file_type = read_file_type(path)
    assert file_type.file_type == "F16"
    assert not file_type.quantised
    assert "bit," not in file_type.describe()


def test_a_file_that_is_not_gguf_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "fake.gguf"
    path.write_bytes(b"not a GGUF file at all")
    with pytest.raises(ValueError, match=r"fake\.gguf is not a readable GGUF file"):
        read_file_type(path)


def _tokenizer() -> PreTrainedTokenizerFast:
    from crossent.models import train_bpe_tokenizer

    return train_bpe_tokenizer(["the cat sat on the mat"] * 4, vocab_size=300)


def test_other_models_are_described_and_not_quantised(tmp_path: Path) -> None:
    config = LlamaConfig(
        vocab_size=300, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(tmp_path / "hf")
    tokenizer = _tokenizer()
    tokenizer.save_pretrained(tmp_path / "hf")
    hf = load_model(tmp_path / "hf", device="cpu", dtype=torch.bfloat16)
    assert (hf.description, hf.quantisation) == ("LlamaForCausalLM, bfloat16 weights", None)
    gpt = GPT(GPTConfig.preset("tiny", vocab_size=300))
    save_gpt(tmp_path / "gpt", gpt, tokenizer)
    loaded = load_model(tmp_path / "gpt", device="cpu")
    layers, width = gpt.config.n_layer, gpt.config.d_model
    assert loaded.description == f"crossent GPT ({layers} layers, width {width}), float32 weights"
    assert loaded.quantisation is None


def test_a_training_run_folder_points_at_its_checkpoints(tmp_path: Path) -> None:
    gpt = GPT(GPTConfig.preset("tiny", vocab_size=300))
    save_gpt(tmp_path / "run" / "last", gpt, _tokenizer())
    run = str(tmp_path / "run")
    message = f"'{run}' is a training run folder, not a model: load its checkpoint {run}/last"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        load_model(run, device="cpu")
