"""Cross-entropy shown with real numbers: on toy distributions, on a model reading a text, at the
edge of floating point.

Three explanations, each a function that returns a frozen dataclass of plain numbers, which
:mod:`crossent.report.explain` turns into a terminal table, JSON, plots and an HTML page:

* :func:`explain_distributions`: a predicted distribution ``q`` over a few labels and a target,
  either one label (a one-hot ``p``) or a distribution ``p``, optionally label-smoothed. Every term
  ``-p_i ln q_i`` of ``H(p, q) = -sum_i p_i ln q_i``, the total in nats and bits, the perplexity,
  the entropy ``H(p)`` and ``KL(p || q)``, and the identity ``H(p, q) = H(p) + KL(p || q)``.
* :func:`explain_text`: a causal language model scoring a text, in the textbook's six steps
  (:func:`crossent.reference.six_steps`): logits, softmax, the target tokens' probabilities, their
  logs, the mean, its negation; then per position the true next token, its rank and the most
  likely alternatives.
* :func:`explain_stability`: the naive ``-log(softmax(z) + 1e-10)`` against the log-space loss on
  extreme logits, beside the exact value, for the loss and for its gradient.

Each explanation computes its headline numbers with crossent's own functions and keeps
:class:`Check` records comparing them with independent computations (PyTorch, plain Python
``math`` in float64); every record must agree within its tolerance, which the tests and the
``crossent explain`` command verify.

Units: every loss, entropy and divergence is in nats (natural log); bits are nats / ln 2, and
perplexity is ``e ** nats`` (= ``2 ** bits``), as in :mod:`crossent.metrics`.

Which tokens a text scores follows ``crossent eval`` (:mod:`crossent.data.windows`): the text is
preceded by a prefix token (BOS, else EOS; never scored) so that every one of its tokens is
scored, the first one included. With ``prefix="none"`` the first token is context only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from crossent.data import Document
from crossent.evaluation import evaluate, prefix_token
from crossent.losses import reference
from crossent.losses.binary import binary_cross_entropy
from crossent.losses.cross_entropy import cross_entropy
from crossent.losses.distill import kl_divergence
from crossent.metrics import nats_to_bits, perplexity

if TYPE_CHECKING:
    from crossent.evaluation import Prefix
    from crossent.models.protocol import CausalLM

# How far from 1 the given probabilities may sum.
SUM_TOLERANCE = 1e-6
# The epsilon of the naive loss in seed 003's code, -log(softmax(z) + 1e-10).
NAIVE_EPSILON = 1e-10
# The longest text explain_text scores: its float64 steps hold a few [tokens, V] tensors.
MAX_TEXT_TOKENS = 256
# Two float64 computations of one number by different formulas agree to about this, relatively.
_FLOAT64_TOLERANCE = 1e-9
# Losses are printed to four decimals, as seed 004 prints them; PyTorch's float32 loss must agree
# with the float64 six steps to within half a unit of the last printed digit.
PRINTED_TOLERANCE = 5e-5
# crossent's numbers may be off the float64 truth by PyTorch's own error at the logits' dtype
# plus this many machine epsilons, relative (Apple cut-cross-entropy's rule, as tests/oracles.py).
_MARGIN_EPS = {torch.float64: 64, torch.float32: 16, torch.float16: 4, torch.bfloat16: 4}


@dataclass(frozen=True)
class Check:
    """One number computed two ways: by crossent and by an independent route.

    Attributes:
        what: the independent route, e.g. ``"torch.nn.functional.cross_entropy"``.
        value: what that route gives.
        expected: what crossent gives (the number the explanation reports).
        tolerance: the largest difference accepted.
    """

    what: str
    value: float
    expected: float
    tolerance: float

    @property
    def difference(self) -> float:
        """``|value - expected|``; 0 when both are the same infinity."""
        if self.value == self.expected:
            return 0.0
        return abs(self.value - self.expected)

    @property
    def agrees(self) -> bool:
        """Whether the two are within the tolerance (NaN never agrees)."""
        return self.difference <= self.tolerance


def _relative(tolerance: float, value: float) -> float:
    return tolerance * max(1.0, abs(value)) if math.isfinite(value) else 0.0


# Toy distributions (seed 000).


@dataclass(frozen=True)
class DistributionExplanation:
    """``H(p, q)`` for a target ``p`` and a prediction ``q`` over a few labels, term by term.

    Attributes:
        labels: the classes, in order.
        q: the predicted distribution, normalised.
        log_q: ``ln q_i``, in nats (``-inf`` where ``q_i`` is 0).
        logits: the logits ``q`` was made from, or None when probabilities were given.
        target: the label of a one-hot target, or None for a distribution.
        p: the target before smoothing (one-hot for a label), normalised.
        label_smoothing: ``eps``; the smoothed target is ``(1 - eps) * p + eps / V`` (PyTorch's).
        smoothed_p: the target the loss uses (``p`` itself when ``eps`` is 0).
        terms: ``-smoothed_p_i * ln q_i`` per label, in nats (0 where ``smoothed_p_i`` is 0).
        nats: ``H(smoothed_p, q)``, the sum of the terms.
        bits: the same in bits.
        perplexity: ``e ** nats``.
        entropy_nats: ``H(smoothed_p)``, 0 for a one-hot target.
        kl_nats: ``KL(smoothed_p || q) = nats - entropy_nats``.
        checks: every number above against independent computations.
    """

    labels: tuple[str, ...]
    q: tuple[float, ...]
    log_q: tuple[float, ...]
    logits: tuple[float, ...] | None
    target: str | None
    p: tuple[float, ...]
    label_smoothing: float
    smoothed_p: tuple[float, ...]
    terms: tuple[float, ...]
    nats: float
    bits: float
    perplexity: float
    entropy_nats: float
    kl_nats: float
    checks: tuple[Check, ...]

    @property
    def soft(self) -> bool:
        """Whether the loss's target is a distribution rather than one label."""
        return self.target is None or self.label_smoothing > 0

    def to_dict(self) -> dict[str, Any]:
        """The numbers under stable keys (``crossent explain --json``)."""
        return {
            "mode": "distributions",
            "labels": list(self.labels),
            "q": list(self.q),
            "log_q": list(self.log_q),
            "logits": None if self.logits is None else list(self.logits),
            "target": self.target,
            "p": list(self.p),
            "label_smoothing": self.label_smoothing,
            "smoothed_p": list(self.smoothed_p),
            "terms": list(self.terms),
            "nats": self.nats,
            "bits": self.bits,
            "perplexity": self.perplexity,
            "entropy_nats": self.entropy_nats,
            "kl_nats": self.kl_nats,
            "checks": [_check_dict(check) for check in self.checks],
        }


def _check_dict(check: Check) -> dict[str, Any]:
    return {**asdict(check), "difference": check.difference, "agrees": check.agrees}


def _finite(values: Sequence[float], name: str, labels: Sequence[str]) -> None:
    for label, value in zip(labels, values, strict=True):
        if not math.isfinite(value):
            raise ValueError(f"{name}({label!r}) is {value}; it must be a finite number")


def _distribution(values: Sequence[float], name: str, labels: Sequence[str]) -> tuple[float, ...]:
    """Validated probabilities, normalised to remove the rounding their sum may carry."""
    _finite(values, name, labels)
    for label, value in zip(labels, values, strict=True):
        if value < 0:
            raise ValueError(f"{name}({label!r}) is {value}; probabilities must be non-negative")
    total = math.fsum(values)
    if abs(total - 1.0) > SUM_TOLERANCE:
        raise ValueError(
            f"the probabilities {name} sum to {total:.10g}, not 1 (within {SUM_TOLERANCE:g})"
        )
    return tuple(value / total for value in values)


def _log_softmax(logits: Sequence[float]) -> list[float]:
    """``ln softmax(z)`` in float64 with Python's math: ``z_i - max - ln sum_j e^(z_j - max)``."""
    top = max(logits)
    log_normaliser = top + math.log(math.fsum(math.exp(z - top) for z in logits))
    return [z - log_normaliser for z in logits]


def _log(value: float) -> float:
    return math.log(value) if value > 0 else -math.inf


def _term(p: float, log_q: float) -> float:
    """``-p ln q``, with ``0 ln 0 = 0``: a class the target gives no mass costs nothing."""
    return 0.0 if p == 0 else -p * log_q


def explain_distributions(
    q: Sequence[float] | None = None,
    *,
    logits: Sequence[float] | None = None,
    labels: Sequence[str] | None = None,
    target: str | None = None,
    p: Sequence[float] | None = None,
    label_smoothing: float = 0.0,
) -> DistributionExplanation:
    """Cross-entropy of a prediction against a target, term by term (seed 000's example).

    The loss is computed by :func:`crossent.cross_entropy` on the logits ``ln q`` (or the given
    logits), with a class-index target for a label and a probability target for ``p``, and
    checked against the sum of the terms in plain float64 ``math``, against
    ``torch.nn.functional.cross_entropy`` and against :func:`crossent.reference.cross_entropy`.
    ``H(p)`` is ``crossent.cross_entropy`` of ``p`` against itself, ``KL(p || q)`` is
    :func:`crossent.kl_divergence`; both are checked against the formula, and their sum against
    ``H(p, q)``.

    Args:
        q: the predicted probabilities, non-negative and summing to 1 within 1e-6; or None with
            ``logits``.
        logits: raw scores instead of ``q``; ``q = softmax(logits)``.
        labels: one name per class (default ``"0"``, ``"1"``, ...), all different.
        target: the label of the right answer (a one-hot ``p``); or None with ``p``.
        p: a target distribution instead of ``target``, validated like ``q``.
        label_smoothing: ``eps`` in [0, 1]; the target becomes ``(1 - eps) * p + eps / V``.

    Returns:
        The :class:`DistributionExplanation`, in nats and bits.

    Raises:
        ValueError: a probability that is negative or not finite, probabilities not summing to 1
            within 1e-6, a non-finite logit, lengths that disagree, a repeated label, a target
            that is not a label, both or neither of ``q``/``logits`` or ``target``/``p``, or
            ``label_smoothing`` outside [0, 1].

    Example:
        >>> cat = explain_distributions([0.2, 0.7, 0.1], labels=["dog", "cat", "fish"],
        ...                             target="cat")
        >>> round(cat.nats, 6), round(cat.bits, 6), round(cat.perplexity, 6)
        (0.356675, 0.514573, 1.428571)
    """
    if (q is None) == (logits is None):
        raise ValueError("give the prediction as probabilities q or as logits, exactly one")
    if (target is None) == (p is None):
        raise ValueError("give the target as one label or as a distribution p, exactly one")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label smoothing must be in [0, 1], got {label_smoothing}")
    given = q if q is not None else logits
    assert given is not None
    size = len(given)
    if size == 0:
        raise ValueError("no classes: give at least one probability or logit")
    names = tuple(labels) if labels is not None else tuple(str(index) for index in range(size))
    if len(names) != size:
        what = "probabilities" if q is not None else "logits"
        raise ValueError(f"{len(names)} labels for {size} {what}; give one label per class")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"label {repeated[0]!r} appears more than once; labels must differ")

    if q is not None:
        q_values = _distribution(q, "q", names)
        log_q = [_log(value) for value in q_values]
        given_logits = None
    else:
        assert logits is not None
        _finite(logits, "z", names)
        given_logits = tuple(float(value) for value in logits)
        log_q = _log_softmax(given_logits)
        q_values = tuple(math.exp(value) for value in log_q)

    if target is not None:
        if target not in names:
            raise ValueError(f"target {target!r} is not one of the labels: {', '.join(names)}")
        index = names.index(target)
        p_values = tuple(1.0 if i == index else 0.0 for i in range(size))
    else:
        assert p is not None
        if len(p) != size:
            raise ValueError(f"p has {len(p)} probabilities for {size} classes")
        index = None
        p_values = _distribution(p, "p", names)
    eps = float(label_smoothing)
    smoothed = tuple((1 - eps) * value + eps / size for value in p_values)

    terms = tuple(
        _term(weight, log_value) for weight, log_value in zip(smoothed, log_q, strict=True)
    )
    by_formula = math.fsum(terms)
    entropy_by_formula = math.fsum(_term(weight, _log(weight)) for weight in smoothed)
    kl_by_formula = math.fsum(
        _term(weight, log_value - _log(weight))
        for weight, log_value in zip(smoothed, log_q, strict=True)
    )

    # crossent's numbers, from the logits it would see in a model: ln q (or the given logits).
    row = torch.tensor([given_logits if given_logits is not None else log_q], dtype=torch.float64)
    soft_target = torch.tensor([p_values], dtype=torch.float64)
    class_target = torch.tensor([index]) if index is not None else None
    loss_target = class_target if class_target is not None else soft_target
    nats = float(cross_entropy(row, loss_target, label_smoothing=eps))
    log_smoothed = torch.tensor([[_log(weight) for weight in smoothed]], dtype=torch.float64)
    smoothed_target = torch.tensor([smoothed], dtype=torch.float64)
    entropy = float(cross_entropy(log_smoothed, smoothed_target))
    kl = float(kl_divergence(row, log_smoothed))

    checks = [
        Check(
            "the sum of the terms (Python math)",
            by_formula,
            nats,
            _relative(_FLOAT64_TOLERANCE, nats),
        ),
        Check(
            "crossent.reference.cross_entropy (float64)",
            float(reference.cross_entropy(row, loss_target, label_smoothing=eps)),
            nats,
            _relative(_FLOAT64_TOLERANCE, nats),
        ),
    ]
    # PyTorch multiplies 0 by ln 0 = -inf for probability targets, giving NaN: no check there.
    if class_target is not None or all(value > 0 for value in q_values):
        checks.append(
            Check(
                "torch.nn.functional.cross_entropy",
                float(F.cross_entropy(row, loss_target, label_smoothing=eps)),
                nats,
                _relative(_FLOAT64_TOLERANCE, nats),
            )
        )
    checks += [
        Check(
            "H(p) by its formula (Python math)",
            entropy_by_formula,
            entropy,
            _relative(_FLOAT64_TOLERANCE, entropy),
        ),
        Check(
            "KL(p || q) by its formula (Python math)",
            kl_by_formula,
            kl,
            _relative(_FLOAT64_TOLERANCE, kl),
        ),
        Check("H(p) + KL(p || q)", entropy + kl, nats, _relative(_FLOAT64_TOLERANCE, nats)),
    ]
    return DistributionExplanation(
        labels=names,
        q=q_values,
        log_q=tuple(log_q),
        logits=given_logits,
        target=target,
        p=p_values,
        label_smoothing=eps,
        smoothed_p=smoothed,
        terms=terms,
        nats=nats,
        bits=nats_to_bits(nats),
        perplexity=perplexity(nats),
        entropy_nats=entropy,
        kl_nats=kl,
        checks=tuple(checks),
    )


# A model reading a text (seed 004's six steps).


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
            "tokens": [
                {
                    "position": token.position,
                    "token_id": token.token_id,
                    "text": token.text,
                    "probability": token.probability,
                    "log_probability": token.log_probability,
                    "nats": token.nats,
                    "rank": token.rank,
                    "top": [
                        {"token_id": top_id, "text": top_text, "probability": top_prob}
                        for top_id, top_text, top_prob in zip(
                            token.top_ids, token.top_texts, token.top_probs, strict=True
                        )
                    ],
                }
                for token in self.tokens
            ],
            "mean_log_probability": self.mean_log_probability,
            "nats": self.nats,
            "bits": self.bits,
            "perplexity": self.perplexity,
            "checks": [_check_dict(check) for check in self.checks],
        }


def check_text(text: str) -> None:
    """Refuse a text :func:`explain_text` cannot score before any model is loaded.

    Raises:
        ValueError: the text is empty.
    """
    if not text:
        raise ValueError("the text is empty; give at least one character to score")


def explain_text(
    model: CausalLM, text: str, *, prefix: Prefix | None = None, top_k: int = 5
) -> TextExplanation:
    """Seed 004's six steps on a real model and text, checked against crossent's own losses.

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
    a few machine epsilons (relative), and its ranks must equal those counted from the logits.

    Args:
        model: any :class:`crossent.models.CausalLM`.
        text: the text, at most :data:`MAX_TEXT_TOKENS` tokens (``crossent eval`` takes longer
            ones).
        prefix: ``"bos"``, ``"eos"`` or ``"none"``; None picks BOS, else EOS.
        top_k: how many alternatives to list per position.

    Returns:
        The :class:`TextExplanation`, in nats.

    Raises:
        ValueError: an empty text, a text too long, one token without a prefix (nothing to
            predict it from), or a model without the prefix token asked for.
    """
    check_text(text)
    if not 1 <= top_k <= model.vocab_size:
        raise ValueError(f"top_k {top_k} is outside [1, {model.vocab_size}] (the vocabulary)")
    used_prefix, prefix_id = prefix_token(model, prefix)
    tokenizer = model.tokenizer
    sequence = ([prefix_id] if prefix_id is not None else []) + tokenizer.encode(text)
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

    inputs = torch.tensor([sequence[:-1]], device=model.device)  # (1, T)
    targets = torch.tensor([sequence[1:]], device=model.device)  # (1, T)
    with torch.no_grad():
        hidden = model.hidden_states(inputs)  # (1, T, d)
        logits = F.linear(hidden, model.head_weight, model.head_bias)  # (1, T, V)
        steps = reference.six_steps(logits, targets)
        crossent_loss = float(cross_entropy(logits, targets))
        torch_loss = float(F.cross_entropy(logits.flatten(0, 1), targets.flatten()))
        torch_tokens = F.cross_entropy(logits[0], targets[0], reduction="none").tolist()  # T
        torch_softmax = torch.softmax(logits[0], dim=-1)  # (T, V), in the logits' dtype
        ranks = (logits > logits.gather(-1, targets.unsqueeze(-1))).sum(-1) + 1  # (1, T)
    evaluation = evaluate(
        model,
        [Document("text", text)],
        prefix=used_prefix,
        per_token=True,
        top_k=top_k,
        batch_size=1,
    )
    scores = evaluation.tokens
    target_ids = sequence[1:]
    if [score.token_id for score in scores] != target_ids:
        raise RuntimeError("crossent.evaluate scored other tokens than the six steps")

    probabilities = steps.target_probas[0].tolist()
    log_probabilities = steps.log_probas[0].tolist()
    nats = float(steps.neg_avg_log_probas)
    probas = steps.probas[0]  # (T, V)
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
            scores, probabilities, log_probabilities, strict=True
        )
    )
    # PyTorch's own float32 errors against the float64 steps set the budget for crossent's.
    margin = _MARGIN_EPS[logits.dtype] * torch.finfo(logits.dtype).eps
    exact_tokens = [token.nats for token in tokens]
    torch_token_error = max(
        abs(value - exact) for value, exact in zip(torch_tokens, exact_tokens, strict=True)
    )
    token_error = max(
        abs(score.nats - exact) for score, exact in zip(scores, exact_tokens, strict=True)
    )
    top_ids = torch.tensor([score.top_ids for score in scores], device=probas.device)  # (T, k)
    exact_top = probas.gather(-1, top_ids).cpu()  # (T, k)
    top_probs = torch.tensor([score.top_probs for score in scores], dtype=torch.float64)
    top_error = float((top_probs - exact_top).abs().max())
    torch_top_error = float((torch_softmax.gather(-1, top_ids).cpu() - exact_top).abs().max())
    rank_mismatches = sum(
        int(ours != score.rank) for ours, score in zip(ranks[0].tolist(), scores, strict=True)
    )
    scale = margin * max(1.0, abs(nats))
    checks = (
        Check(
            "torch.nn.functional.cross_entropy",
            torch_loss,
            nats,
            # and the rounding of a loss returned in the logits' dtype: nothing in float32
            PRINTED_TOLERANCE + torch.finfo(logits.dtype).eps * max(1.0, abs(nats)),
        ),
        Check("crossent.cross_entropy", crossent_loss, nats, abs(torch_loss - nats) + scale),
        Check(
            "crossent.evaluate, nats per token",
            evaluation.totals.nats_per_token,
            nats,
            abs(torch_loss - nats) + scale,
        ),
        Check(
            "crossent.evaluate per token, largest |difference|",
            token_error,
            0.0,
            torch_token_error + margin * max(1.0, *exact_tokens),
        ),
        Check(
            f"crossent.evaluate top-{top_k} probabilities, largest |difference|",
            top_error,
            0.0,
            torch_top_error + margin,
        ),
        Check("crossent.evaluate ranks that differ from the logits' count", rank_mismatches, 0, 0),
    )
    return TextExplanation(
        model=model.name,
        text=text,
        prefix=used_prefix,
        input_ids=tuple(sequence[:-1]),
        input_texts=tuple(tokenizer.decode([token]) for token in sequence[:-1]),
        logits_shape=tuple(logits.shape),
        logits_dtype=str(logits.dtype).removeprefix("torch."),
        probability_sum_error=float((probas.sum(-1) - 1).abs().max()),
        tokens=tokens,
        mean_log_probability=float(steps.avg_log_probas),
        nats=nats,
        bits=nats_to_bits(nats),
        perplexity=perplexity(nats),
        checks=checks,
    )


# Numerical stability (seed 003's epsilon).


@dataclass(frozen=True)
class StabilityCase:
    """One row of logits, the target's index and the dtype the losses compute in."""

    name: str
    logits: tuple[float, ...]
    target: int
    dtype: Literal["float32", "float64"] = "float32"


DEFAULT_STABILITY_CASES = (
    StabilityCase("ordinary logits", (2.0, 1.0, 0.1), 0),
    StabilityCase("confident and right", (1000.0, 0.0, -1000.0), 0),
    StabilityCase("confident and wrong", (1000.0, 0.0, -1000.0), 2),
    StabilityCase("confident and wrong, float64", (1000.0, 0.0, -1000.0), 2, "float64"),
    StabilityCase("logits of size 1e4", (1e4, 0.0, -1e4), 1),
    StabilityCase("p = 2e-9, nothing overflows", (0.0, -20.0), 1, "float64"),
)


@dataclass(frozen=True)
class StabilityRow:
    """One case computed three ways, loss and gradient.

    The gradient is that of the loss with respect to the target's own logit, which is
    ``p_target - 1``: about -1 when the model is confidently wrong, the signal that corrects it.

    Attributes:
        case: the logits, target and dtype.
        naive_nats: ``-log(softmax(z)[target] + 1e-10)``, seed 003's code, in ``case.dtype``.
        naive_without_epsilon_nats: ``-log(softmax(z)[target])``, what the epsilon was added for.
        log_space_nats: :func:`crossent.cross_entropy`, ``logsumexp(z) - z[target]``.
        torch_nats: ``torch.nn.functional.cross_entropy``.
        exact_nats: the float64 value from Python's ``math`` on the same (dtype-rounded) logits.
        naive_gradient: the naive loss's gradient on the target's logit (autograd).
        log_space_gradient: :func:`crossent.cross_entropy`'s (autograd).
        torch_gradient: ``torch.nn.functional.cross_entropy``'s (autograd).
        exact_gradient: ``p_target - 1`` in float64 from Python's ``math``.
    """

    case: StabilityCase
    naive_nats: float
    naive_without_epsilon_nats: float
    log_space_nats: float
    torch_nats: float
    exact_nats: float
    naive_gradient: float
    log_space_gradient: float
    torch_gradient: float
    exact_gradient: float


@dataclass(frozen=True)
class StabilityExplanation:
    """The naive and the log-space loss beside the exact value, case by case.

    Attributes:
        rows: one per case.
        checks: for every case, crossent's loss and gradient against the exact values, each
            allowed PyTorch's own error at that dtype plus 16 (float32) or 64 (float64) machine
            epsilons, relative.
    """

    rows: tuple[StabilityRow, ...]
    checks: tuple[Check, ...]

    def to_dict(self) -> dict[str, Any]:
        """The numbers under stable keys (``crossent explain --stability --json``)."""
        rows = []
        for row in self.rows:
            record = asdict(row)
            case = record.pop("case")
            rows.append({**case, "logits": list(row.case.logits), **record})
        return {
            "mode": "stability",
            "epsilon": NAIVE_EPSILON,
            "rows": rows,
            "checks": [_check_dict(check) for check in self.checks],
        }


def _losses_and_gradients(case: StabilityCase) -> tuple[list[float], list[float]]:
    """The naive, unguarded, crossent and PyTorch losses and their target-logit gradients."""
    dtype = torch.float32 if case.dtype == "float32" else torch.float64
    target = torch.tensor([case.target])

    def naive(logits: Tensor) -> Tensor:
        return -torch.log(torch.softmax(logits, -1)[0, case.target] + NAIVE_EPSILON)

    def unguarded(logits: Tensor) -> Tensor:
        return -torch.log(torch.softmax(logits, -1)[0, case.target])

    def ours(logits: Tensor) -> Tensor:
        return cross_entropy(logits, target)

    def pytorch(logits: Tensor) -> Tensor:
        return F.cross_entropy(logits, target)

    losses, gradients = [], []
    for loss_of in (naive, unguarded, ours, pytorch):
        logits = torch.tensor([case.logits], dtype=dtype, requires_grad=True)  # (1, V)
        loss = loss_of(logits)
        (gradient,) = torch.autograd.grad(loss, logits)
        # + 0.0 turns -0.0 (from -log 1) into 0.0
        losses.append(float(loss.detach()) + 0.0)
        gradients.append(float(gradient[0, case.target]) + 0.0)
    return losses, gradients


def explain_stability(
    cases: Sequence[StabilityCase] = DEFAULT_STABILITY_CASES,
) -> StabilityExplanation:
    """Seed 003's ``-log(softmax(z) + 1e-10)`` against the log-space loss, with exact values.

    The naive recipe rounds a tiny probability to 0 and then the epsilon caps the loss at
    ``-ln 1e-10 = 23.03`` nats, however wrong the model is, and its gradient vanishes with the
    probability; even where nothing underflows the epsilon biases the loss. The log-space loss
    ``logsumexp(z) - z[target]`` never forms the probability and is exact.

    Args:
        cases: the rows of logits to compute; by default :data:`DEFAULT_STABILITY_CASES`.

    Returns:
        The :class:`StabilityExplanation`; losses in nats.

    Raises:
        ValueError: a case with no logits, a non-finite logit, or a target outside the row.
    """
    if not cases:
        raise ValueError("no cases to compute")
    rows, checks = [], []
    for case in cases:
        if not case.logits:
            raise ValueError(f"case {case.name!r} has no logits")
        if not 0 <= case.target < len(case.logits):
            raise ValueError(
                f"case {case.name!r}: target {case.target} is outside [0, {len(case.logits)})"
            )
        dtype = torch.float32 if case.dtype == "float32" else torch.float64
        _finite(case.logits, f"{case.name}: z", [str(i) for i in range(len(case.logits))])
        rounded = torch.tensor(case.logits, dtype=dtype).tolist()  # what the dtype holds
        if not all(math.isfinite(value) for value in rounded):
            raise ValueError(f"case {case.name!r}: a logit overflows {case.dtype}")
        log_softmax = _log_softmax(rounded)
        exact_nats = 0.0 - log_softmax[case.target]
        exact_gradient = math.exp(log_softmax[case.target]) - 1.0
        (naive, unguarded, ours, torch_loss), gradients = _losses_and_gradients(case)
        naive_gradient, _, our_gradient, torch_gradient = gradients
        rows.append(
            StabilityRow(
                case=case,
                naive_nats=naive,
                naive_without_epsilon_nats=unguarded,
                log_space_nats=ours,
                torch_nats=torch_loss,
                exact_nats=exact_nats,
                naive_gradient=naive_gradient,
                log_space_gradient=our_gradient,
                torch_gradient=torch_gradient,
                exact_gradient=exact_gradient,
            )
        )
        margin = _MARGIN_EPS[dtype] * torch.finfo(dtype).eps
        checks += [
            Check(
                f"{case.name}: crossent.cross_entropy, nats",
                ours,
                exact_nats,
                abs(torch_loss - exact_nats) + margin * max(1.0, abs(exact_nats)),
            ),
            Check(
                f"{case.name}: crossent.cross_entropy, gradient",
                our_gradient,
                exact_gradient,
                abs(torch_gradient - exact_gradient) + margin,
            ),
        ]
    return StabilityExplanation(tuple(rows), tuple(checks))


# The curves of seed 003's figures.


@dataclass(frozen=True)
class LossCurves:
    """The binary cross-entropy against the predicted probability of class 1, in nats.

    Attributes:
        probability: the predicted probabilities ``p`` of class 1, increasing in (0, 1).
        loss_if_1: the loss when the true label is 1, ``-ln p`` (also the multi-class loss
            against the true class's probability ``p``).
        loss_if_0: the loss when the true label is 0, ``-ln(1 - p)``.
        checks: both curves, computed by :func:`crossent.binary_cross_entropy` on the logits
            ``ln(p / (1 - p))``, against Python's ``math``.
    """

    probability: tuple[float, ...]
    loss_if_1: tuple[float, ...]
    loss_if_0: tuple[float, ...]
    checks: tuple[Check, ...]


def loss_curves(points: int = 499, smallest: float = 1e-3) -> LossCurves:
    """The curves of seed 003's two figures, from ``p = smallest`` to ``1 - smallest``.

    The probabilities are ``1/(points+1), ..., points/(points+1)``, and below the first of them
    (and, mirrored, above the last) 20 per decade down to ``smallest``, so that the curve reaches
    every prediction a plot marks on it.

    Args:
        points: how many evenly spaced probabilities to evaluate, at least 1.
        smallest: the smallest probability, in [1e-12, 0.5]; predictions below it lie above the
            curve's end.

    Returns:
        The :class:`LossCurves`.
    """
    if points < 1:
        raise ValueError(f"points must be positive, got {points}")
    if not 1e-12 <= smallest <= 0.5:
        raise ValueError(f"smallest must be in [1e-12, 0.5], got {smallest}")
    even = [i / (points + 1) for i in range(1, points + 1)]
    decades = math.log10(even[0] / smallest)
    tail = [even[0] * 10 ** (-k / 20) for k in range(1, math.ceil(20 * decades) + 1)]
    tail = [max(value, smallest) for value in tail]
    probability = sorted({*even, *tail, *(1 - value for value in tail)})
    logits = torch.logit(torch.tensor(probability, dtype=torch.float64))
    curves = []
    for label in (1.0, 0.0):
        labels = torch.full_like(logits, label)
        curves.append(binary_cross_entropy(logits, labels, reduction="none").tolist())
    loss_if_1, loss_if_0 = curves
    error_1 = max(
        abs(loss + math.log(p)) / max(1.0, loss)
        for loss, p in zip(loss_if_1, probability, strict=True)
    )
    error_0 = max(
        abs(loss + math.log1p(-p)) / max(1.0, loss)
        for loss, p in zip(loss_if_0, probability, strict=True)
    )
    tolerance = 1e-12
    checks = (
        Check("-ln p (Python math), largest relative difference", error_1, 0.0, tolerance),
        Check("-ln(1 - p) (Python math), largest relative difference", error_0, 0.0, tolerance),
    )
    return LossCurves(tuple(probability), tuple(loss_if_1), tuple(loss_if_0), checks)


def loss_curves_for(
    explanation: DistributionExplanation | TextExplanation | StabilityExplanation,
) -> LossCurves:
    """:func:`loss_curves` reaching down to the smallest probability the explanation marks.

    A distribution marks ``q`` of each label the target gives mass, a text each token's
    probability; the curve goes down to half the smallest of them (within [1e-12, 1e-3]).
    """
    if isinstance(explanation, DistributionExplanation):
        marked = [q for p, q in zip(explanation.p, explanation.q, strict=True) if p > 0]
    elif isinstance(explanation, TextExplanation):
        marked = [token.probability for token in explanation.tokens]
    else:
        marked = []
    positive = [value / 2 for value in marked if value > 0]
    return loss_curves(smallest=min(1e-3, max(1e-12, min(positive))) if positive else 1e-3)
