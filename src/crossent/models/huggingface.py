"""Hugging Face causal LMs behind :class:`~crossent.models.protocol.CausalLM`.

:class:`HFCausalLM` adapts a loaded transformers model; :func:`load_directory` loads one from a
model directory without the network, :func:`load_hub` from the Hugging Face Hub.
:func:`progress_bars` turns transformers' own progress bars ("Loading weights", downloads) on or
off for the length of a load, and puts the user's setting back afterwards.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import huggingface_hub
import torch
import transformers

# The Hub's switch, from its own module: huggingface_hub.utils exports it only lazily.
from huggingface_hub.utils.tqdm import (
    are_progress_bars_disabled,
    disable_progress_bars,
    enable_progress_bars,
)
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as transformers_logging

from crossent.models.errors import first_line
from crossent.models.protocol import CausalLMBase
from crossent.models.tokenizer import HFTokenizer

__all__ = ["HFCausalLM", "dtype_name", "load_directory", "load_hub", "progress_bars"]

# Config fields that make a model's logits something other than hidden @ head.T + bias.
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling")
# Where configs of different architectures keep the context length, most common first.
_CONTEXT_FIELDS = ("max_position_embeddings", "n_positions", "n_ctx", "seq_length", "max_seq_len")


class HFCausalLM(CausalLMBase[HFTokenizer]):
    """A transformers causal LM and its tokenizer, seen through the ``CausalLM`` protocol.

    The model is put in eval mode with gradients off. Construction refuses a model whose logits
    are not ``hidden_states @ head_weight.T (+ head_bias)``: first by the config fields known to
    change them, then by computing a few logits both ways.

    Args:
        model: A transformers ``...ForCausalLM``.
        tokenizer: Its tokenizer.
        name: What the user called the model.
        description: What the weights are; default: the model's class and dtype, e.g.
            ``"LlamaForCausalLM, float32 weights"``.
        quantisation: The GGUF file type the weights were dequantised from, if any.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        name: str,
        description: str | None = None,
        quantisation: str | None = None,
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
        super().__init__(
            name=name,
            tokenizer=HFTokenizer(tokenizer),
            context_length=_context_length(config, name),
            description=description or f"{type(model).__name__}, {dtype_name(head.weight)} weights",
            quantisation=quantisation,
        )
        self.model = model.eval().requires_grad_(False)  # type: ignore[no-untyped-call]
        self.hf_tokenizer = tokenizer
        self._head = head
        self._check_logits()

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


@contextmanager
def progress_bars(enabled: bool) -> Iterator[None]:
    """Show (``enabled``) or hide transformers' and the Hub's progress bars inside the block.

    Both libraries keep a global switch; the settings found on entry are put back on exit, so a
    user's own choice (``transformers.utils.logging.disable_progress_bar()``,
    ``huggingface_hub.utils.disable_progress_bars()``) outlives the block.
    ``HF_HUB_DISABLE_PROGRESS_BARS=1`` keeps the Hub's bars off even when ``enabled``.
    """
    transformers_on = transformers_logging.is_progress_bar_enabled()
    hub_on = not are_progress_bars_disabled()
    _switch_progress_bars(enabled, enabled)
    try:
        yield
    finally:
        _switch_progress_bars(transformers_on, hub_on)


def _switch_progress_bars(transformers_on: bool, hub_on: bool) -> None:
    # The Hub warns when HF_HUB_DISABLE_PROGRESS_BARS outranks a call to enable its bars; the
    # variable is the user's standing choice, so it wins without a word.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if transformers_on:
            transformers_logging.enable_progress_bar()  # type: ignore[no-untyped-call]
        else:
            transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        # transformers switches the Hub's bars with its own: set them after it.
        if hub_on:
            enable_progress_bars()
        else:
            disable_progress_bars()


def load_directory(
    path: Path,
    *,
    name: str,
    dtype: torch.dtype,
    device: torch.device,
    description: str | None = None,
    quantisation: str | None = None,
) -> HFCausalLM:
    """Load the model directory ``path`` (with its ``config.json``) without the network.

    Args:
        path: The directory, as ``save_pretrained`` writes it.
        name: What the user called the model.
        dtype: The dtype of the weights.
        device: Where to put the model.
        description, quantisation: As for :class:`HFCausalLM`.

    Raises:
        ValueError: transformers cannot load it as a causal LM, or :class:`HFCausalLM` refuses
            it.
    """
    return _from_pretrained(
        path,
        name=name,
        dtype=dtype,
        device=device,
        local_files_only=True,
        description=description,
        quantisation=quantisation,
    )


def load_hub(name: str, *, dtype: torch.dtype, device: torch.device) -> HFCausalLM:
    """Load the Hugging Face Hub model ``name`` (``"owner/model"``), where the network allows.

    Raises:
        ValueError: the Hub is unreachable, has no such model, or transformers cannot load it
            as a causal LM; the message is one line.
    """
    try:
        AutoConfig.from_pretrained(name)
    except OSError as error:
        reason = first_line(error)
        if huggingface_hub.constants.HF_HUB_OFFLINE or "connect" in reason.lower():
            raise ValueError(
                f"model {name!r} is not a local directory or .gguf file, and the Hugging Face "
                f"Hub is unreachable: {reason}"
            ) from None
        raise ValueError(
            f"model {name!r} is not a local directory or .gguf file, nor a Hugging Face Hub "
            f"model: {reason}"
        ) from None
    return _from_pretrained(name, name=name, dtype=dtype, device=device, local_files_only=False)


def _from_pretrained(
    source: str | Path,
    *,
    name: str,
    dtype: torch.dtype,
    device: torch.device,
    local_files_only: bool,
    description: str | None = None,
    quantisation: str | None = None,
) -> HFCausalLM:
    try:
        # trust_remote_code stays False: a model folder never runs code of its own here.
        config = AutoConfig.from_pretrained(source, local_files_only=local_files_only)
        check_size(config, name, dtype, device)
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_files_only)
        model = AutoModelForCausalLM.from_pretrained(
            source, local_files_only=local_files_only, dtype=dtype
        )
    except pickle.UnpicklingError:
        raise ValueError(
            f"{name!r}: its pickle weights (pytorch_model.bin) hold more than tensors, and "
            "crossent reads pickles only in PyTorch's weights-only mode: refused; save the "
            "model as safetensors (save_pretrained's default) from a trusted copy"
        ) from None
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(
            f"{name!r} is not a causal LM transformers can load: {first_line(error)}"
        ) from None
    return HFCausalLM(
        model.to(device),  # type: ignore[arg-type]
        tokenizer,
        name=name,
        description=description,
        quantisation=quantisation,
    )


def check_size(
    config: transformers.PretrainedConfig, name: str, dtype: torch.dtype, device: torch.device
) -> None:
    """Refuse, before allocating anything, a model whose weights would not fit in memory.

    The parameters are counted on PyTorch's meta device (shapes, no storage), so a config that
    asks for absurd sizes costs nothing to check; the limit is the memory available now (CUDA's
    free memory on a GPU, else ``MemAvailable``). An architecture that cannot be built on the
    meta device is not checked here.

    Raises:
        ValueError: the weights would need more bytes than are available.
    """
    try:
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
    except Exception:  # a guard only: loading reports the real error
        return
    needed = sum(parameter.numel() for parameter in skeleton.parameters()) * dtype.itemsize
    available = _available_bytes(device)
    if available is not None and needed > available:
        raise ValueError(
            f"{name!r}: its config.json describes {needed / dtype.itemsize:,.0f} parameters, "
            f"{needed / 2**30:,.1f} GiB in {str(dtype).removeprefix('torch.')}, more than the "
            f"{available / 2**30:,.1f} GiB available on {device}: refused before allocating"
        )


def _available_bytes(device: torch.device) -> int | None:
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def dtype_name(tensor: torch.Tensor) -> str:
    """``"float32"`` for a float32 tensor: its dtype as ``--dtype`` spells it."""
    return str(tensor.dtype).removeprefix("torch.")


def _context_length(config: transformers.PretrainedConfig, name: str) -> int:
    for field in _CONTEXT_FIELDS:
        value = getattr(config, field, None)
        if isinstance(value, int) and value > 0:
            return value
    raise ValueError(f"model {name!r} does not say its context length (none of {_CONTEXT_FIELDS})")
