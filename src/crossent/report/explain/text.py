"""The terminal text of ``crossent explain``: the explanation's tables, steps and checks.

Plain text only, so that the command prints it where matplotlib is not installed; numbers are
written as :mod:`crossent.report.explain.digits` says.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from crossent.explain import NAIVE_EPSILON, DistributionExplanation, TextExplanation
from crossent.metrics import nats_to_bits
from crossent.report.explain.digits import (
    CHECK_HEADERS,
    check_rows,
    fixed,
    logits_text,
    probability,
    quoted,
)
from crossent.report.explain.temperature import temperature_lines
from crossent.report.table import format_table

if TYPE_CHECKING:
    from crossent.explain import Explanation, StabilityExplanation


def format_explanation(explanation: Explanation) -> str:
    """The explanation as the terminal text of ``crossent explain``."""
    if isinstance(explanation, DistributionExplanation):
        return _format_distributions(explanation)
    if isinstance(explanation, TextExplanation):
        return _format_text(explanation)
    return _format_stability(explanation)


def _format_distributions(e: DistributionExplanation) -> str:
    target_header = "p (smoothed)" if e.label_smoothing > 0 else "p (target)"
    headers = ["label", target_header, "q (predicted)", "ln q", "-p ln q, nats"]
    rows = [
        [label, f"{p:.6g}", f"{q:.6g}", fixed(log_q, 6), fixed(term, 6)]
        for label, p, q, log_q, term in zip(
            e.labels, e.smoothed_p, e.q, e.log_q, e.terms, strict=True
        )
    ]
    rows.append(["sum", "", "", "", fixed(e.nats, 6)])
    if e.logits is not None:
        headers.insert(1, "z (logit)")
        for row, logit in zip(rows, [*e.logits, None], strict=True):
            row.insert(1, "" if logit is None else f"{logit:.6g}")
    lines = [
        "Cross-entropy H(p, q) = -sum_i p_i ln q_i: p is the target, q the prediction.",
        *(["q = softmax(z), so ln q = z - logsumexp(z)."] if e.logits is not None else []),
        "",
        format_table(headers, rows),
        "",
    ]
    if e.label_smoothing > 0:
        lines.append(
            f"Label smoothing {e.label_smoothing:g} (PyTorch's formula): the target is "
            f"(1 - {e.label_smoothing:g}) * p + {e.label_smoothing:g} / {len(e.labels)}, "
            f"so every label keeps some mass."
        )
    elif e.target is not None:
        index = e.labels.index(e.target)
        lines.append(
            f"The target is one-hot on {e.target!r}, so only its term is left: "
            f"H(p, q) = -ln q({e.target}) = -ln {e.q[index]:.6g}."
        )
    lines += _logit_step(e)
    lines += [
        f"H(p, q) = {fixed(e.nats, 6)} nats = {fixed(e.bits, 6)} bits; "
        f"perplexity e^H = {fixed(e.perplexity, 6)}",
    ]
    if e.soft:
        lines += [
            f"H(p)       = {fixed(e.entropy_nats, 6)} nats: the target's own uncertainty, "
            "the least any prediction can score",
            f"KL(p || q) = {fixed(e.kl_nats, 6)} nats: what predicting q instead of p costs",
            f"H(p) + KL(p || q) = {fixed(e.entropy_nats + e.kl_nats, 6)} nats = H(p, q)",
        ]
    lines += ["", "Checks:", format_table(CHECK_HEADERS, check_rows(e.checks, 6))]
    lines += temperature_lines(e, 6)
    return "\n".join(lines)


def _logit_step(e: DistributionExplanation) -> list[str]:
    """With logits, the loss as crossent computes it: ``logsumexp(z) - z[target]``."""
    if e.logsumexp is None or e.target_logit is None:
        return []
    what = "sum_i p_i z_i" if e.soft else f"z[{e.target}]"
    return [
        "From the logits, as crossent and PyTorch compute it:",
        f"H(p, q) = logsumexp(z) - {what} = {fixed(e.logsumexp, 6)} - "
        f"{fixed(e.target_logit, 6)} = {fixed(e.logsumexp - e.target_logit, 6)} nats",
    ]


def _values(values: Sequence[float], spec: str, show: int = 8) -> str:
    shown = [format(value, spec) for value in values[:show]]
    if len(values) > show:
        shown.append(f"... ({len(values)} values)")
    return "  ".join(shown)


def _format_text(e: TextExplanation) -> str:
    batch, positions, vocabulary = e.logits_shape
    inputs = " ".join(quoted(text) for text in e.input_texts)
    targets = " ".join(quoted(token.text) for token in e.tokens)
    steps = [
        (
            "logits = model(inputs)",
            f"shape ({batch}, {positions}, {vocabulary}): {positions} positions x {vocabulary} "
            f"scores, {e.logits_dtype}",
        ),
        (
            "probas = softmax(logits)",
            f"each row sums to 1 (largest error {e.probability_sum_error:.1e})",
        ),
        (
            "target_probas = probas[targets]",
            _values([token.probability for token in e.tokens], ".4g"),
        ),
        (
            "log_probas = ln(target_probas)",
            _values([token.log_probability for token in e.tokens], ".4f"),
        ),
        ("avg_log_probas = mean(log_probas)", f"{e.mean_log_probability:.4f}"),
        (
            "neg_avg_log_probas = -avg_log_probas",
            f"{e.nats:.4f}  <- the cross-entropy, nats per token",
        ),
    ]
    lines = [
        f"{e.model} reads {positions} tokens (prefix: {e.prefix}) and predicts each next one.",
        f"inputs:  {inputs}",
        f"targets: {targets}",
        "",
        *(
            f"step {number}  {code.ljust(37)} {value}"
            for number, (code, value) in enumerate(steps, start=1)
        ),
        "",
        f"= {e.bits:.4f} bits per token; perplexity e^{e.nats:.4f} = {e.perplexity:.2f}",
        "",
        "Every position:",
        format_table(
            ["pos", "next token", "p", "nats", "bits", "rank", "most likely instead"],
            [
                [
                    str(token.position),
                    quoted(token.text),
                    probability(token.probability),
                    f"{token.nats:.4f}",
                    f"{nats_to_bits(token.nats):.3f}",
                    str(token.rank),
                    ", ".join(
                        f"{quoted(text)} {prob:.3f}"
                        for text, prob in zip(token.top_texts, token.top_probs, strict=True)
                    ),
                ]
                for token in e.tokens
            ],
        ),
        "",
        "Checks (the six steps run in float64 on the model's logits and are the truth):",
        format_table(CHECK_HEADERS, check_rows(e.checks, 4)),
        *temperature_lines(e, 4),
    ]
    return "\n".join(lines)


_STABILITY_HEADERS = [
    "case", "dtype", "logits z", "t", "naive", "no epsilon", "log-space", "PyTorch", "exact",
]  # fmt: skip


def _format_stability(e: StabilityExplanation) -> str:
    losses = [
        [
            row.case.name,
            row.case.dtype,
            logits_text(row.case.logits),
            str(row.case.target),
            fixed(row.naive_nats, 4),
            fixed(row.naive_without_epsilon_nats, 4),
            fixed(row.log_space_nats, 4),
            fixed(row.torch_nats, 4),
            fixed(row.exact_nats, 4),
        ]
        for row in e.rows
    ]
    gradients = [
        [
            row.case.name,
            f"{row.naive_gradient:.6g}",
            f"{row.log_space_gradient:.6g}",
            f"{row.torch_gradient:.6g}",
            f"{row.exact_gradient:.6g}",
        ]
        for row in e.rows
    ]
    return "\n".join(
        [
            f"The naive loss -ln(softmax(z)[t] + {NAIVE_EPSILON:g}), as it is often written, "
            "against the log-space loss logsumexp(z) - z[t] (crossent, PyTorch), in nats:",
            "",
            format_table(_STABILITY_HEADERS, losses),
            "",
            "Once softmax rounds p to 0 the naive loss is capped at -ln 1e-10 = 23.0259 nats "
            "(and is inf without the epsilon); the exact loss is logsumexp(z) - z[t].",
            "",
            "The gradient on the target's logit, d loss / d z[t] = p[t] - 1:",
            format_table(["case", "naive", "log-space", "PyTorch", "exact"], gradients),
            "",
            "The naive gradient vanishes with p: a confidently wrong model gets no signal.",
            "",
            "Checks:",
            format_table(CHECK_HEADERS, check_rows(e.checks, 4)),
        ]
    )
