"""From what a user typed to a :class:`~crossent.models.protocol.CausalLM`: the one dispatch.

What :func:`load_model` accepts, in the order it decides:

* ``None`` or ``"smollm2-135m"`` (:data:`DEFAULT_MODEL`): the embedded SmolLM2-135M-Instruct
  GGUF file (:mod:`crossent.models.gguf`), 4-bit Q4_1 weights dequantised to float32: not the
  published model, whose losses differ (quantising usually raises them).
* A directory holding ``crossent_gpt.json``: a GPT saved by crossent
  (:func:`crossent.models.checkpoint.load_gpt`), such as a training run's ``RUN/best`` or
  ``RUN/last``. The run folder itself is not a model: naming it is an error that suggests
  ``RUN/best``.
* A directory holding ``config.json``: a Hugging Face model, loaded without the network.
* A file ending in ``.gguf``: dequantised by transformers' GGUF support, once, then cached.
* Anything else that is not an existing path: a Hugging Face Hub name, downloaded through
  transformers into its cache (``HF_HOME``) where the network allows.

Every model says what its weights are in :attr:`~crossent.models.protocol.CausalLM.description`
and, for a GGUF file, its file type in :attr:`~crossent.models.protocol.CausalLM.quantisation`,
read from the file's header.

Each kind of model has its own module; this one only decides which of them a spec names.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from crossent.checksums import verify_checksums
from crossent.distributed import default_device
from crossent.models import checkpoint, gguf, huggingface
from crossent.models.protocol import CausalLM

__all__ = ["DEFAULT_MODEL", "load_model"]

# The model shipped with crossent: no download, no network.
DEFAULT_MODEL = gguf.EMBEDDED_MODEL

# Hub repository ids: "name" or "owner/name".
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def load_model(
    spec: str | os.PathLike[str] | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> CausalLM:
    """Load a causal LM for evaluation (eval mode, no gradients).

    Args:
        spec: ``None`` or ``"smollm2-135m"`` (the embedded default), a crossent GPT
            checkpoint folder, a Hugging Face model directory, a ``.gguf`` file, or a Hugging
            Face Hub name.
        dtype: The dtype of the weights (GGUF files are dequantised to float32 first).
        device: Where to put the model; ``None`` picks CUDA when present, else the CPU.
        progress: Let transformers draw its progress bars on stderr ("Loading weights", Hub
            downloads). Off by default, so a script's stderr holds only what it writes; the
            user's own transformers setting is restored once the model is loaded.

    Returns:
        The model behind the :class:`~crossent.models.protocol.CausalLM` protocol.

    Raises:
        ValueError: ``spec`` is not a model, does not exist, names a Hub model while the Hub
            is unreachable, or is a model whose logits crossent cannot reproduce; the message
            is one line a user can act on.

    Example:
        >>> model = load_model()  # doctest: +SKIP
        >>> model.vocab_size, model.context_length  # doctest: +SKIP
        (49152, 8192)
    """
    with huggingface.progress_bars(progress):
        return _load(spec, dtype=dtype, device=default_device(device))


def _load(
    spec: str | os.PathLike[str] | None, *, dtype: torch.dtype, device: torch.device
) -> CausalLM:
    if spec is None or spec == DEFAULT_MODEL:
        return _load_gguf(gguf.embedded_gguf(), DEFAULT_MODEL, gguf.EMBEDDED_ORIGIN, dtype, device)
    name = os.fspath(spec)
    path = Path(name).expanduser()
    if path.is_dir():
        verify_checksums(path)  # a folder crossent wrote: no damaged file loads
        if (path / checkpoint.CONFIG_FILE).is_file():
            return checkpoint.load_gpt(name, device=device, dtype=dtype)
        if not (path / "config.json").is_file():
            raise ValueError(_not_a_model(name, path))
        return huggingface.load_directory(path, name=name, dtype=dtype, device=device)
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ValueError(
                f"{name!r} is not a model: expected a Hugging Face model directory "
                "(with config.json) or a .gguf file"
            )
        return _load_gguf(path, name, path.name, dtype, device)
    if _HUB_NAME.fullmatch(name) and not name.lower().endswith(".gguf"):
        return huggingface.load_hub(name, dtype=dtype, device=device)
    raise ValueError(f"model {name!r} does not exist")


def _load_gguf(
    path: Path, name: str, origin: str, dtype: torch.dtype, device: torch.device
) -> CausalLM:
    """The GGUF file ``path``, dequantised (once, then cached) and described by its header."""
    folder = gguf.converted_gguf(path)
    file_type = gguf.file_type_of(path)
    description = f"{origin}, {file_type.describe()} dequantised to float32"
    if dtype != torch.float32:
        description += f", then cast to {str(dtype).removeprefix('torch.')}"
    return huggingface.load_directory(
        folder,
        name=name,
        dtype=dtype,
        device=device,
        description=description,
        quantisation=file_type.file_type if file_type.quantised else None,
    )


def _not_a_model(name: str, path: Path) -> str:
    """Why the directory ``path`` is not a model, pointing at its checkpoints when it is a run."""
    runs = [sub for sub in ("best", "last") if (path / sub / checkpoint.CONFIG_FILE).is_file()]
    if runs:
        where = " or ".join(os.path.join(name, sub) for sub in runs)
        return f"{name!r} is a training run folder, not a model: load its checkpoint {where}"
    return f"{name!r} is not a model: no config.json in {path}"
