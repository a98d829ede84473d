"""The one small interface every causal language model in crossent is seen through.

Evaluation and training never ask a model for logits. They ask for the final hidden states (what
the LM head consumes) and for the head's weight and bias, and hand those to
:func:`crossent.linear_cross_entropy`, so a full ``[tokens, V]`` logits tensor is never held.

The contract that makes this exact: for every implementation,
``logits == hidden_states(input_ids) @ head_weight.T (+ head_bias)``. A model whose own logits are
anything else (soft-capped, scaled) must be refused by its loader, not approximated.

:class:`CausalLMBase` is the part of the protocol every adapter implements the same way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar, runtime_checkable

import torch


@runtime_checkable
class Tokenizer(Protocol):
    """Text to token ids and back, without adding any special token."""

    @property
    def bos_token_id(self) -> int | None:
        """The beginning-of-sequence token, or ``None`` when the tokenizer has none."""
        ...

    @property
    def eos_token_id(self) -> int | None:
        """The end-of-sequence token, or ``None`` when the tokenizer has none."""
        ...

    def encode(self, text: str) -> list[int]:
        """The ids of ``text``, with no BOS, EOS or other special token added."""
        ...

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """The ids of :meth:`encode` and, for each, the ``(start, end)`` characters it covers."""
        ...

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids``, special tokens included, spaces not "cleaned up"."""
        ...


@runtime_checkable
class CausalLM(Protocol):
    """A causal language model, seen as a trunk producing hidden states and a linear LM head.

    Shapes: ``B`` batch, ``T`` tokens, ``d`` hidden size, ``V`` vocabulary (rows of the head).
    """

    @property
    def name(self) -> str:
        """What the user called the model (``smollm2-135m``, a path, a hub name)."""
        ...

    @property
    def description(self) -> str:
        """What the weights are, in one line: where they come from, how they were stored and
        their dtype, e.g. ``"SmolLM2-135M-Instruct, Q4_1 GGUF (4-bit, 5.74 bits per weight)
        dequantised to float32"``. Results show it beside the name, so that nobody takes a
        quantised model's numbers for the published model's."""
        ...

    @property
    def quantisation(self) -> str | None:
        """The GGUF file type the weights were dequantised from (``"Q4_1"``), or ``None`` when
        they were never quantised (a Hugging Face model, a crossent checkpoint, an F16 GGUF)."""
        ...

    @property
    def tokenizer(self) -> Tokenizer: ...

    @property
    def context_length(self) -> int:
        """The most tokens one input row may have."""
        ...

    @property
    def vocab_size(self) -> int:
        """``V``, the number of logits per position; may exceed the tokenizer's own size."""
        ...

    @property
    def device(self) -> torch.device:
        """Where the weights live; input ids must be put there."""
        ...

    @property
    def head_weight(self) -> torch.Tensor:
        """The LM head weight, ``[V, d]``."""
        ...

    @property
    def head_bias(self) -> torch.Tensor | None:
        """The LM head bias, ``[V]``, or ``None``."""
        ...

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The final hidden states, after the last norm: ``[B, T]`` int64 -> ``[B, T, d]``."""
        ...


TokenizerT = TypeVar("TokenizerT", bound=Tokenizer)


class CausalLMBase(ABC, Generic[TokenizerT]):
    """What every adapter's :class:`CausalLM` shares: a name, a tokenizer, a context length.

    An adapter passes those to ``__init__`` and defines the head and :meth:`hidden_states`;
    the vocabulary size and the device are read off the head, so they cannot disagree with it.

    Args:
        name: What the user called the model.
        tokenizer: Its tokenizer, as the protocol sees it.
        context_length: The most tokens one input row may have.
        description: What the weights are (see :attr:`CausalLM.description`).
        quantisation: The GGUF file type they were dequantised from, if any.
    """

    def __init__(
        self,
        *,
        name: str,
        tokenizer: TokenizerT,
        context_length: int,
        description: str,
        quantisation: str | None = None,
    ) -> None:
        self._name = name
        self._tokenizer = tokenizer
        self._context_length = context_length
        self._description = description
        self._quantisation = quantisation

    @property
    def name(self) -> str:
        return self._name

    @property
    def description(self) -> str:
        return self._description

    @property
    def quantisation(self) -> str | None:
        return self._quantisation

    @property
    def tokenizer(self) -> TokenizerT:
        return self._tokenizer

    @property
    def context_length(self) -> int:
        return self._context_length

    @property
    def vocab_size(self) -> int:
        return int(self.head_weight.shape[0])

    @property
    def device(self) -> torch.device:
        return self.head_weight.device

    @property
    @abstractmethod
    def head_weight(self) -> torch.Tensor:
        """The LM head weight, ``[V, d]``."""

    @property
    @abstractmethod
    def head_bias(self) -> torch.Tensor | None:
        """The LM head bias, ``[V]``, or ``None``."""

    @abstractmethod
    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The final hidden states, after the last norm: ``[B, T]`` int64 -> ``[B, T, d]``."""
