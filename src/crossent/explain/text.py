"""A causal language model reading a text, in the textbook's six steps from logits to loss, and
each position's true next token with its rank and the most likely alternatives.

Which tokens a text scores follows ``crossent eval`` (:mod:`crossent.data.windows`): the text is
preceded by a prefix token (BOS, else EOS; never scored) so that every one of its tokens is
scored, the first one included. With ``prefix="none"`` the first token is context only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from crossent import tolerance
from crossent.data import Document
from crossent.evaluation import (
    EvaluationResult,
    TokenScore,
    evaluate,
    prefix_token,
    top_alternatives,
)
from crossent.explain.checks import PRINTED_TOLERANCE, Check
from crossent.explain.numbers import temperatures_shown
from crossent.explain.temperature import TemperatureScan
from crossent.explain.temperature_text import scan_text
from crossent.losses import reference
from crossent.losses.cross_entropy import cross_entropy
from crossent.metrics import nats_to_bits, perplexity

if TYPE_CHECKING:
    from crossent.evaluation import Prefix
    from crossent.losses.reference import SixSteps
    from crossent.models.protocol import CausalLM

# The longest text explain_text scores: its float64 steps hold a few [tokens, V] tensors.
MAX_TEXT_TOKENS = 256


@dataclass(frozen=True)
class TokenStep:
    """One scored position: the true next token and what the model thought of it.

    Attributes:
        position: the token's index among the text's tokens (0 is the first), as in
            :class:`crossent.TokenScore`.
        token_id: the true next token.
        text: its characters in the text (see :attr:`crossent.TokenScore.text`).
        probability: step 3, its softmax probability (float64 from the model's logits).
        log_probability: step 4, ``ln probability``, in nats (at most 0).
        rank: 1 when it was the model's top prediction, else 1 + the number of tokens with a
            higher logit (from :func:`crossent.evaluate`).
        top_ids: the most likely next tokens, most likely first.
        top_texts: their decoded texts.
        top_probs: their probabilities.
    """

    position: int
    token_id: int
    text: str
    probability: float
    log_probability: float
    rank: int
    top_ids: tuple[int, ...]
    top_texts: tuple[str, ...]
    top_probs: tuple[float, ...]

    @property
    def nats(self) -> float:
        """This token's loss, ``-ln p``, in nats."""
        return -self.log_probability

    def to_dict(self) -> dict[str, Any]:
        """The numbers under stable keys; the alternatives as ``crossent eval --per-token``
        writes them, ``{"id", "text", "prob"}``."""
        return {
            "position": self.position,
            "token_id": self.token_id,
            "text": self.text,
            "probability": self.probability,
            "log_probability": self.log_probability,
            "nats": self.nats,
            "rank": self.rank,
            "top": top_alternatives(self.top_ids, self.top_texts, self.top_probs),
        }


@dataclass(frozen=True)
class TextExplanation:
    """A model's cross-entropy on a text in the six steps, with every token's details.

    Attributes:
        model: the model's name.
        text: the text.
        prefix: the prefix token used: ``"bos"``, ``"eos"`` or ``"none"``.
        input_ids: the model's input, ``[prefix] + tokens[:-1]`` (``tokens[:-1]`` without one).
        input_texts: each input token decoded.
        logits_shape: step 1, ``(1, T, V)``: one text, ``T`` positions, ``V`` logits each.
        logits_dtype: the logits' dtype (the model's), e.g. ``"float32"``.
        probability_sum_error: step 2, the largest ``|sum(softmax row) - 1|``.
        tokens: steps 3 and 4 for each of the ``T`` targets, with rank and top alternatives.
        mean_log_probability: step 5, the mean of the log-probabilities, in nats.
        nats: step 6, its negation: the cross-entropy, in nats per token.
        bits: the same in bits per token.
        perplexity: ``e ** nats``.
        checks: the six steps' result against crossent's and PyTorch's losses and
            ``crossent.evaluate``, and the per-token numbers against ``crossent.evaluate``'s.
        temperatures: with temperatures asked for, the text at each of them
            (:mod:`crossent.explain.temperature_text`), with its own checks; None otherwise.
    """

    model: str
    text: str
    prefix: Prefix
    input_ids: tuple[int, ...]
    input_texts: tuple[str, ...]
    logits_shape: tuple[int, ...]
    logits_dtype: str
    probability_sum_error: float
    tokens: tuple[TokenStep, ...]
    mean_log_probability: float
    nats: float
    bits: float
    perplexity: float
    checks: tuple[Check, ...]
    temperatures: TemperatureScan | None = None

    def to_dict(self) -> dict[str, Any]:
        """The numbers under stable keys (``crossent explain TEXT --json``)."""
        return {
            "mode": "text",
            "model": self.model,
            "text": self.text,
            "prefix": self.prefix,
            "input_ids": list(self.input_ids),
            "logits_shape": list(self.logits_shape),
            "logits_dtype": self.logits_dtype,
            "probability_sum_error": self.probability_sum_error,
            "tokens": [token.to_dict() for token in self.tokens],
            "mean_log_probability": self.mean_log_probability,
            "nats": self.nats,
            "bits": self.bits,
            "perplexity": self.perplexity,
            "temperatures": None if self.temperatures is None else self.temperatures.to_dict(),
            "checks": [check.to_dict() for check in self.checks],
        }


def check_text(text: str) -> None:
    """Refuse a text :func:`explain_text` cannot score before any model is loaded.

    Raises:
        ValueError: the text is empty.
    """
    if not text:
        raise ValueError("the text is empty; give at least one character to score")


def explain_text(
    model: CausalLM,
    text: str,
    *,
    prefix: Prefix | None = None,
    top_k: int = 5,
    temperatures: Sequence[float] = (),
) -> TextExplanation:
    """The textbook's six steps on a real model and text, checked against crossent's own losses.

    The text is tokenized whole and preceded by the prefix token exactly as
    :func:`crossent.evaluate` does (BOS by default, else EOS), so the model's input is
    ``[prefix] + tokens[:-1]`` and its targets are all the text's tokens; the six steps and
    ``crossent.evaluate`` score the same tokens from the same context. The steps run in float64
    on the model's logits (:func:`crossent.reference.six_steps`) and are the truth the other
    numbers are checked against. ``torch.nn.functional.cross_entropy`` on the same logits must
    agree to the printed precision (:data:`PRINTED_TOLERANCE`), give or take the rounding of a
    loss returned in the logits' dtype (a few parts in a thousand in bfloat16);
    :func:`crossent.cross_entropy`, ``crossent.evaluate``'s mean and per-token losses and its
    top-k probabilities may be off by no more than PyTorch's own error at the logits' dtype plus
    a few machine epsilons (relative; :mod:`crossent.tolerance`), and its ranks must equal those
    counted from the logits.

    Args:
        model: any :class:`crossent.models.CausalLM`.
        text: the text, at most :data:`MAX_TEXT_TOKENS` tokens (``crossent eval`` takes longer
            ones).
        prefix: ``"bos"``, ``"eos"`` or ``"none"``; None picks BOS, else EOS.
        top_k: how many alternatives to list per position.
        temperatures: temperatures ``T > 0`` to show the text at, the logits divided by ``T``
            (:mod:`crossent.explain.temperature_text`), beside ``T = 1``; none by default.

    Returns:
        The :class:`TextExplanation`, in nats.

    Raises:
        ValueError: an empty text, a text too long, one token without a prefix (nothing to
            predict it from), a model without the prefix token asked for, or a temperature that
            is not a finite number > 0.
    """
    temperatures_shown(temperatures)
    used_prefix, sequence = _sequence(model, text, prefix, top_k)
    routes = _Routes.compute(model, sequence)
    evaluation = evaluate(
        model,
        [Document("text", text)],
        prefix=used_prefix,
        per_token=True,
        top_k=top_k,
        batch_size=1,
    )
    scores = evaluation.tokens
    if [score.token_id for score in scores] != sequence[1:]:
        raise RuntimeError("crossent.evaluate scored other tokens than the six steps")

    steps = routes.steps
    tokens = tuple(
        TokenStep(
            position=score.position,
            token_id=score.token_id,
            text=score.text,
            probability=probability,
            log_probability=log_probability,
            rank=score.rank,
            top_ids=score.top_ids,
            top_texts=score.top_texts,
            top_probs=score.top_probs,
        )
        for score, probability, log_probability in zip(
            scores, steps.target_probas[0].tolist(), steps.log_probas[0].tolist(), strict=True
        )
    )
    nats = float(steps.neg_avg_log_probas)
    scan = None
    if temperatures:
        targets = torch.tensor([sequence[1:]], device=model.device)  # (1, T)
        mean_probability = float(steps.target_probas[0].mean())
        scan = scan_text(routes.logits, targets, temperatures, plain=(nats, mean_probability))
    return TextExplanation(
        model=model.name,
        text=text,
        prefix=used_prefix,
        input_ids=tuple(sequence[:-1]),
        input_texts=tuple(model.tokenizer.decode([token]) for token in sequence[:-1]),
        logits_shape=tuple(routes.logits.shape),
        logits_dtype=str(routes.logits.dtype).removeprefix("torch."),
        probability_sum_error=float((steps.probas[0].sum(-1) - 1).abs().max()),
        tokens=tokens,
        mean_log_probability=float(steps.avg_log_probas),
        nats=nats,
        bits=nats_to_bits(nats),
        perplexity=perplexity(nats),
        checks=_checks(routes, evaluation, tokens, nats, top_k),
        temperatures=scan,
    )


def _sequence(
    model: CausalLM, text: str, prefix: Prefix | None, top_k: int
) -> tuple[Prefix, list[int]]:
    """The prefix used and the token ids ``[prefix] + tokens``, once the text can be scored."""
    check_text(text)
    if not 1 <= top_k <= model.vocab_size:
        raise ValueError(f"top_k {top_k} is outside [1, {model.vocab_size}] (the vocabulary)")
    used_prefix, prefix_id = prefix_token(model, prefix)
    sequence = ([prefix_id] if prefix_id is not None else []) + model.tokenizer.encode(text)
    if len(sequence) < 2:
        raise ValueError(
            "the text is one token and there is no prefix token: nothing to predict it from"
        )
    limit = min(MAX_TEXT_TOKENS, model.context_length)
    if len(sequence) - 1 > limit:
        raise ValueError(
            f"the text scores {len(sequence) - 1} tokens; explain shows at most {limit} "
            "(crossent eval scores texts of any length)"
        )
    return used_prefix, sequence


@dataclass(frozen=True)
class _Routes:
    """The model's logits for the text and every route from them to the loss but evaluate's."""

    logits: Tensor  # (1, T, V), in the model's dtype
    steps: SixSteps  # in float64: the truth
    crossent_loss: float
    torch_loss: float
    torch_tokens: list[float]  # T per-token losses, PyTorch in the logits' dtype
    torch_softmax: Tensor  # (T, V), in the logits' dtype
    ranks: list[int]  # T: 1 + the number of logits above the target's

    @classmethod
    def compute(cls, model: CausalLM, sequence: Sequence[int]) -> _Routes:
        inputs = torch.tensor([sequence[:-1]], device=model.device)  # (1, T)
        targets = torch.tensor([sequence[1:]], device=model.device)  # (1, T)
        with torch.no_grad():
            hidden = model.hidden_states(inputs)  # (1, T, d)
            logits = F.linear(hidden, model.head_weight, model.head_bias)  # (1, T, V)
            ranks = (logits > logits.gather(-1, targets.unsqueeze(-1))).sum(-1) + 1  # (1, T)
            return cls(
                logits=logits,
                steps=reference.six_steps(logits, targets),
                crossent_loss=float(cross_entropy(logits, targets)),
                torch_loss=float(F.cross_entropy(logits.flatten(0, 1), targets.flatten())),
                torch_tokens=F.cross_entropy(logits[0], targets[0], reduction="none").tolist(),
                torch_softmax=torch.softmax(logits[0], dim=-1),
                ranks=ranks[0].tolist(),
            )


def _checks(
    routes: _Routes,
    evaluation: EvaluationResult,
    tokens: Sequence[TokenStep],
    nats: float,
    top_k: int,
) -> tuple[Check, ...]:
    """Every route's loss, per-token losses, top-k probabilities and ranks against the steps.

    PyTorch's own errors at the logits' dtype against the float64 steps set the budget for
    crossent's (:mod:`crossent.tolerance`).
    """
    dtype = routes.logits.dtype
    scores: list[TokenScore] = evaluation.tokens
    exact_tokens = [token.nats for token in tokens]
    torch_token_error = max(
        abs(value - exact) for value, exact in zip(routes.torch_tokens, exact_tokens, strict=True)
    )
    token_error = max(
        abs(score.nats - exact) for score, exact in zip(scores, exact_tokens, strict=True)
    )
    probas = routes.steps.probas[0]  # (T, V)
    top_ids = torch.tensor([score.top_ids for score in scores], device=probas.device)  # (T, k)
    exact_top = probas.gather(-1, top_ids).cpu()  # (T, k)
    top_probs = torch.tensor([score.top_probs for score in scores], dtype=torch.float64)
    top_error = float((top_probs - exact_top).abs().max())
    torch_top_error = float(
        (routes.torch_softmax.gather(-1, top_ids).cpu() - exact_top).abs().max()
    )
    rank_mismatches = sum(
        int(ours != score.rank) for ours, score in zip(routes.ranks, scores, strict=True)
    )
    loss_error = abs(routes.torch_loss - nats)
    scale = max(1.0, abs(nats))
    return (
        Check(
            "torch.nn.functional.cross_entropy",
            routes.torch_loss,
            nats,
            # and the rounding of a loss returned in the logits' dtype: nothing in float32
            PRINTED_TOLERANCE + torch.finfo(dtype).eps * scale,
        ),
        Check(
            "crossent.cross_entropy",
            routes.crossent_loss,
            nats,
            tolerance.allowed_error(loss_error, dtype, scale),
        ),
        Check(
            "crossent.evaluate, nats per token",
            evaluation.totals.nats_per_token,
            nats,
            tolerance.allowed_error(loss_error, dtype, scale),
        ),
        Check(
            "crossent.evaluate per token, largest |difference|",
            token_error,
            0.0,
            tolerance.allowed_error(torch_token_error, dtype, max(1.0, *exact_tokens)),
        ),
        Check(
            f"crossent.evaluate top-{top_k} probabilities, largest |difference|",
            top_error,
            0.0,
            tolerance.allowed_error(torch_top_error, dtype),
        ),
        Check("crossent.evaluate ranks that differ from the logits' count", rank_mismatches, 0, 0),
    )
