"""What a causal LM does to its logits after the output embedding, read and then verified.

Some architectures change ``head(hidden)`` before the loss: Gemma 2 and 3 soft-cap it
(``final_logit_softcapping``: ``c * tanh(z / c)``), Cohere multiplies it (``logit_scale``),
Granite divides it (``logits_scaling``). :func:`logit_transform` reads those fields from the
config; :func:`check_transform` then runs the model once with its head's output replaced by known
logits spanning ``[-64, 64]`` and requires that what comes out is exactly what the transform
gives, so a transform that crossent does not know (a field of another name, a clamp written in a
forward) is refused instead of silently dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["KNOWN_FIELDS", "LogitTransform", "check_transform", "logit_transform"]

KNOWN_FIELDS = ("final_logit_softcapping", "logit_scale", "logits_scaling")
# Config fields whose names suggest they change the logits: named when the check fails.
_SUSPECT = re.compile(r"logit|softcap|output_mult|lm_head|router", re.IGNORECASE)


@dataclass(frozen=True)
class LogitTransform:
    """``softcap(head(hidden) * multiply / divide)``, the logits a model's loss sees.

    ``multiply`` and ``divide`` are kept apart (rather than one factor) so that the fused loss
    rounds as the model does: Cohere multiplies, Granite divides.
    """

    multiply: float = 1.0
    divide: float = 1.0
    softcap: float | None = None

    def describe(self) -> str:
        parts = []
        if self.multiply != 1.0:
            parts.append(f"logit_scale={self.multiply:g}")
        if self.divide != 1.0:
            parts.append(f"logits_scaling={self.divide:g}")
        if self.softcap is not None:
            parts.append(f"final_logit_softcapping={self.softcap:g}")
        return ", ".join(parts) or "no transform"

    def scale(self, tensor: Tensor) -> Tensor:
        """``tensor * multiply / divide``, the factor folded into the hidden states (or bias)."""
        if self.multiply != 1.0:
            tensor = tensor * self.multiply
        if self.divide != 1.0:
            tensor = tensor / self.divide
        return tensor

    def apply(self, logits: Tensor) -> Tensor:
        """The model's logits from its head's output, in the order transformers computes them."""
        logits = self.scale(logits)
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits


def logit_transform(config: Any) -> LogitTransform:
    """The transform named by ``config``'s known fields (None or 1 meaning none).

    Raises:
        ValueError: a field holds something other than a positive number.
    """
    values = {}
    for field in KNOWN_FIELDS:
        value = getattr(config, field, None)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"config.{field} must be a positive number, got {value!r}")
        values[field] = float(value)
    return LogitTransform(
        multiply=values.get("logit_scale", 1.0),
        divide=values.get("logits_scaling", 1.0),
        softcap=values.get("final_logit_softcapping"),
    )


def suspect_fields(config: Any) -> str:
    """``" (config fields that may be why: a=1, b=2)"``, or ``""`` when none look involved."""
    names = sorted(
        name
        for name in vars(config)
        if _SUSPECT.search(name) and name not in KNOWN_FIELDS and not name.startswith("_")
    )
    if not names:
        return ""
    shown = ", ".join(f"{name}={getattr(config, name)!r}" for name in names)
    return f" (config fields that may be why: {shown})"


def tolerance(dtype: torch.dtype) -> float:
    """The relative difference allowed between two computations of the same thing in ``dtype``."""
    return 2e-5 if dtype in (torch.float32, torch.float64) else 2e-2


def check_transform(
    model: torch.nn.Module, head: torch.nn.Linear, transform: LogitTransform, input_ids: Tensor
) -> None:
    """Refuse ``model`` unless its logits are ``transform.apply(head(hidden))``.

    Runs ``model(input_ids)`` once (the caller holds eval mode and no_grad) with the head's
    output replaced by known logits, and compares the model's logits with the transform's.

    Raises:
        ValueError: the head is not called once on every position, or the logits differ.
    """
    name = type(model).__name__
    calls: list[tuple[torch.Size, Tensor]] = []

    def known_logits(module: torch.nn.Module, args: Any, output: Tensor) -> Tensor:
        grid = torch.linspace(-64.0, 64.0, output.numel(), device=output.device)
        calls.append((args[0].shape, grid.reshape(output.shape).to(output.dtype)))
        return calls[-1][1]

    handle = head.register_forward_hook(known_logits)
    try:
        output = model(input_ids=input_ids)
    finally:
        handle.remove()
    if len(calls) != 1:
        raise ValueError(
            f"{name}'s forward calls its output embedding {len(calls)} times, not once: "
            "crossent cannot find the hidden states its loss is computed from"
        )
    shape, fake = calls[0]
    if shape[:-1] != input_ids.shape:
        raise ValueError(
            f"{name}'s forward calls its output embedding on shape {tuple(shape)}, not on the "
            f"hidden states of every position {tuple(input_ids.shape)}"
        )
    logits = getattr(output, "logits", None)
    if not isinstance(logits, Tensor) or logits.shape != fake.shape:
        raise ValueError(f"{name}'s forward does not return its head's logits as .logits")
    expected = transform.apply(fake).double()
    difference = (logits.double() - expected).abs().max().item()
    if difference > tolerance(fake.dtype) * max(1.0, expected.abs().max().item()):
        raise ValueError(
            f"{name} transforms its logits in a way crossent does not know: they differ from "
            f"its output embedding's after {transform.describe()} by up to {difference:.3g}"
            f"{suspect_fields(model.config)}"
        )
