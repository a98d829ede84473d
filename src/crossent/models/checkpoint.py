"""The folder a crossent :class:`~crossent.models.gpt.GPT` is saved in, and loading it back.

A checkpoint folder holds:

* ``crossent_gpt.json``: ``{"format": "crossent-gpt", "version": 1, "config": {...}}``, the
  :class:`~crossent.models.gpt.GPTConfig` fields; its presence is what marks the folder as a
  crossent GPT (:func:`crossent.models.load_model` checks for it before ``config.json``);
* ``model.safetensors``: the weights by :class:`~crossent.models.gpt.GPT`'s parameter names,
  the tied LM head stored once, as the token embedding;
* the tokenizer's files, as ``save_pretrained`` writes them (``tokenizer.json``, ...).

Other files are ignored, so training can keep its own state (optimizer, step) in the same
folder.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from crossent.distributed import default_device
from crossent.files import staging_folder, write_text_atomically
from crossent.models.gpt import GPT, GPTConfig
from crossent.models.protocol import CausalLMBase
from crossent.models.tokenizer import HFTokenizer

__all__ = ["CONFIG_FILE", "WEIGHTS_FILE", "GPTCausalLM", "load_gpt", "save_gpt"]

CONFIG_FILE = "crossent_gpt.json"
WEIGHTS_FILE = "model.safetensors"
_FORMAT = "crossent-gpt"
_VERSION = 1


class GPTCausalLM(CausalLMBase[HFTokenizer]):
    """A crossent :class:`~crossent.models.gpt.GPT` and its tokenizer, seen as a ``CausalLM``.

    The module is used as it is: wrapping a model in training changes neither its mode nor its
    gradients (:func:`load_gpt` is what puts a loaded one in eval mode with gradients off).

    Args:
        module: The GPT.
        tokenizer: Its tokenizer; every id it makes must be below ``module.config.vocab_size``.
        name: What the user called the model.

    Raises:
        ValueError: the tokenizer has more tokens than the model's vocabulary.
    """

    def __init__(self, module: GPT, tokenizer: PreTrainedTokenizerBase, *, name: str) -> None:
        _check_fits(module.config, tokenizer, name)
        super().__init__(
            name=name,
            tokenizer=HFTokenizer(tokenizer),
            context_length=module.config.context_length,
            description=f"crossent GPT ({module.config.n_layer} layers, width "
            f"{module.config.d_model}), {str(module.head_weight.dtype).removeprefix('torch.')} "
            "weights",
        )
        self.module = module
        self.hf_tokenizer = tokenizer

    @property
    def head_weight(self) -> torch.Tensor:
        return self.module.head_weight

    @property
    def head_bias(self) -> torch.Tensor | None:
        return None

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The final hidden states after the last norm: ``[B, T]`` int64 -> ``[B, T, d]``.

        Raises:
            ValueError: ``input_ids`` is not ``[B, T]`` or ``T`` exceeds the context length.
        """
        hidden: torch.Tensor = self.module(input_ids)
        return hidden


def save_gpt(
    folder: str | os.PathLike[str], model: GPT, tokenizer: PreTrainedTokenizerBase
) -> Path:
    """Write ``model`` and ``tokenizer`` into ``folder`` (created if needed) as a checkpoint.

    Each file is written under a temporary name and renamed into place, the config last, so no
    file is ever seen half-written and a new folder is not a checkpoint until it is complete.
    Files of an earlier checkpoint in the same folder are replaced, other files left alone. A
    caller that needs the whole folder replaced at once writes a fresh folder and renames it.

    Args:
        folder: Where the checkpoint goes.
        model: The GPT; its weights are saved in their dtype.
        tokenizer: The tokenizer the model was trained with (a ``PreTrainedTokenizerFast`` from
            :func:`crossent.models.bpe.train_bpe_tokenizer`, or any transformers tokenizer).

    Returns:
        ``folder`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: the tokenizer has more tokens than the model's vocabulary.
    """
    path = Path(folder).expanduser()
    _check_fits(model.config, tokenizer, os.fspath(folder))
    path.mkdir(parents=True, exist_ok=True)
    # Not write_folder_atomically: it replaces the whole folder, and other files (training's
    # state) must stay, so each file is renamed into place on its own. The staging folder sits
    # inside the checkpoint, beside the files it replaces: the same file system even when the
    # checkpoint folder is a mount point, and its parent need not be writable.
    staging = staging_folder(path / WEIGHTS_FILE)
    try:
        weights = {
            name: tensor.detach().to("cpu").contiguous()
            for name, tensor in model.state_dict().items()
        }
        safetensors.torch.save_file(weights, staging / WEIGHTS_FILE)
        tokenizer.save_pretrained(staging)
        for file in sorted(staging.iterdir()):
            os.replace(file, path / file.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    # Last: its presence is what makes the folder a checkpoint.
    record = {"format": _FORMAT, "version": _VERSION, "config": model.config.to_dict()}
    write_text_atomically(path / CONFIG_FILE, json.dumps(record, indent=2) + "\n")
    return path


def load_gpt(
    folder: str | os.PathLike[str],
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> GPTCausalLM:
    """Load a checkpoint written by :func:`save_gpt`, in eval mode with gradients off.

    Args:
        folder: The checkpoint folder; its name, as given, becomes the model's name.
        device: Where to put the model; ``None`` picks CUDA when present, else the CPU.
        dtype: The dtype of the weights.

    Returns:
        The model behind the ``CausalLM`` protocol; ``.module`` is the
        :class:`~crossent.models.gpt.GPT` itself.

    Raises:
        ValueError: the folder is not a crossent GPT checkpoint, was written by a newer
            crossent, or its weights, config and tokenizer do not match.

    Example:
        >>> model = load_gpt("runs/python-docs/best")  # doctest: +SKIP
        >>> model.module.num_parameters(), model.context_length  # doctest: +SKIP
        (4266752, 256)
    """
    name = os.fspath(folder)
    path = Path(name).expanduser()
    device = default_device(device)
    config = _read_config(path, name)
    weights_file = path / WEIGHTS_FILE
    if not weights_file.is_file():
        raise ValueError(f"{name!r} is not a crossent GPT checkpoint: no {WEIGHTS_FILE} in {path}")
    weights = safetensors.torch.load_file(weights_file)
    with torch.device("meta"):  # every weight comes from the file; skip the random init
        module = GPT(config)
    expected = module.state_dict()
    if set(weights) != set(expected):
        wrong = sorted(set(weights) ^ set(expected))
        raise ValueError(f"{name!r}: {WEIGHTS_FILE} does not match its config ({wrong[0]}, ...)")
    for key, tensor in weights.items():
        if tensor.shape != expected[key].shape:
            raise ValueError(
                f"{name!r}: {key} has shape {tuple(tensor.shape)} in {WEIGHTS_FILE}, "
                f"but its config says {tuple(expected[key].shape)}"
            )
    module.load_state_dict(weights, assign=True)
    module = module.to(device=device, dtype=dtype).eval().requires_grad_(False)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"{name!r}: its tokenizer does not load: {error}") from None
    return GPTCausalLM(module, tokenizer, name=name)


def _read_config(path: Path, name: str) -> GPTConfig:
    config_file = path / CONFIG_FILE
    if not config_file.is_file():
        raise ValueError(f"{name!r} is not a crossent GPT checkpoint: no {CONFIG_FILE} in {path}")
    try:
        record: Any = json.loads(config_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{name!r}: {CONFIG_FILE} is not valid JSON: {error}") from None
    if not isinstance(record, dict) or record.get("format") != _FORMAT:
        raise ValueError(f"{name!r}: {CONFIG_FILE} does not say format {_FORMAT!r}")
    if record.get("version") != _VERSION:
        raise ValueError(
            f"{name!r}: checkpoint format version {record.get('version')!r} is not {_VERSION}, "
            "the one this crossent reads; a newer crossent may have written it"
        )
    try:
        return GPTConfig(**record["config"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{name!r}: {CONFIG_FILE} has no valid config: {error}") from None


def _check_fits(config: GPTConfig, tokenizer: PreTrainedTokenizerBase, name: str) -> None:
    if len(tokenizer) > config.vocab_size:
        raise ValueError(
            f"model {name!r}: the tokenizer has {len(tokenizer)} tokens, more than the "
            f"model's vocabulary ({config.vocab_size})"
        )
