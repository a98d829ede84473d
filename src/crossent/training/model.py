"""The model a run trains: a new crossent GPT, or a loaded one to fine-tune, ready to optimise.

A new GPT gets its tokenizer from the teacher (a student must share it), from the embedded
SmolLM2, or a byte-level BPE trained on the training text. A model to continue (``init``, or
the checkpoint of a resumed run) is loaded as ``crossent eval`` loads it and must be a crossent
GPT or a transformers causal LM.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from crossent.training.config import TrainConfig
from crossent.training.data import TextSplit

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from crossent.models.protocol import CausalLM

# The sequence length when fine-tuning a model of a longer context without --context-length.
DEFAULT_INIT_CONTEXT = 1024


@dataclass
class TrainingModel:
    """The model being trained, seen two ways: as a module to optimise and as a CausalLM.

    Attributes:
        trainable: the module whose ``forward(idx)`` gives the final hidden states ``(B, T, d)``.
        lm: the same weights as a :class:`crossent.models.CausalLM`, for evaluation.
        tokenizer_files: the transformers tokenizer saved with each checkpoint.
    """

    trainable: nn.Module
    lm: CausalLM
    tokenizer_files: Any

    @property
    def head_weight(self) -> Tensor:
        return self.lm.head_weight

    @property
    def head_bias(self) -> Tensor | None:
        return self.lm.head_bias

    def context(self, config: TrainConfig) -> int:
        """The training sequence length (and validation window): a new GPT's context, or for a
        pretrained model ``config.context_length``, else its context capped at
        :data:`DEFAULT_INIT_CONTEXT`; never beyond the model's context."""
        own = self.lm.context_length
        return min(own, config.context_length or min(own, DEFAULT_INIT_CONTEXT))


class HiddenStates(nn.Module):
    """A transformers causal LM as a module whose forward returns the final hidden states."""

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, idx: Tensor) -> Tensor:
        output = self.model.base_model(input_ids=idx, use_cache=False)
        hidden: Tensor = output.last_hidden_state  # (B, T, d)
        return hidden


def build_model(
    config: TrainConfig,
    split: TextSplit,
    teacher: CausalLM | None,
    device: torch.device,
    checkpoint: Path | None,
) -> TrainingModel:
    """The model to train: ``checkpoint`` (a resumed run's), else ``config.init``, else a new GPT.

    Raises:
        ValueError: the model to continue is neither a crossent GPT nor a transformers model,
            or the teacher has no transformers tokenizer to give a new student.
    """
    from crossent.models.checkpoint import GPTCausalLM
    from crossent.models.gpt import GPT, GPTConfig

    source = str(checkpoint) if checkpoint is not None else config.init
    if source is not None:
        return _continued(source, device)
    tokenizer, vocab_size = _new_tokenizer(config, split, teacher)
    sizes = {
        name: value
        for name in ("n_layer", "n_head", "d_model", "context_length")
        if (value := getattr(config, name)) is not None
    }
    gpt_config = GPTConfig.preset(
        config.preset, vocab_size=vocab_size, dropout=config.dropout, **sizes
    )
    module = GPT(gpt_config).to(device)
    return TrainingModel(module, GPTCausalLM(module, tokenizer, name=config.out), tokenizer)


def load(spec: str | None, device: torch.device) -> CausalLM:
    """The model ``spec`` names, as ``crossent eval`` loads it (None: the embedded SmolLM2)."""
    from crossent.models import load_model

    return load_model(spec, device=device)


def module_parameters(module: nn.Module) -> int:
    """Parameters of ``module``, each shared (tied) one counted once."""
    return sum(parameter.numel() for parameter in module.parameters())


def _continued(source: str, device: torch.device) -> TrainingModel:
    from crossent.models.checkpoint import GPTCausalLM
    from crossent.models.huggingface import HFCausalLM

    lm = load(source, device)
    if isinstance(lm, GPTCausalLM):
        lm.module.train().requires_grad_(True)
        return TrainingModel(lm.module, lm, lm.hf_tokenizer)
    if isinstance(lm, HFCausalLM):
        lm.model.train().requires_grad_(True)
        return TrainingModel(HiddenStates(lm.model), lm, lm.hf_tokenizer)
    raise ValueError(f"cannot train model {source!r}: it is neither a crossent GPT nor HF")


def _new_tokenizer(
    config: TrainConfig, split: TextSplit, teacher: CausalLM | None
) -> tuple[Any, int]:
    """A new GPT's transformers tokenizer and vocabulary size."""
    from crossent.models.bpe import train_bpe_tokenizer

    if teacher is not None:
        tokenizer = getattr(teacher, "hf_tokenizer", None)
        if tokenizer is None:
            raise ValueError("the teacher has no transformers tokenizer to give the student")
        return tokenizer, teacher.vocab_size
    if config.tokenizer == "smollm2":
        tokenizer = load(None, torch.device("cpu")).hf_tokenizer  # type: ignore[attr-defined]
    else:
        tokenizer = train_bpe_tokenizer([split.train], config.vocab_size)
    return tokenizer, len(tokenizer)
