"""How ``crossent explain`` shows its numbers: terminal text, plots and one HTML page.

Presentation only: every number comes from :mod:`crossent.explain`. The three explanations
(:class:`~crossent.explain.DistributionExplanation`, :class:`~crossent.explain.TextExplanation`,
:class:`~crossent.explain.StabilityExplanation`) each have a terminal text
(:func:`format_explanation`), a set of figures (:func:`figures`, written as PNG files by
:func:`write_plots` and drawn inline in the page) and a page (:func:`render_explanation_page`).

Digits: losses on a toy distribution to six decimals (they can be checked by hand); a model's
losses to four decimals, as seed 004 prints them, which is the precision its checks hold to;
probabilities to four significant digits. Token texts are shown as JSON strings (``" effort"``),
so leading spaces and line breaks are visible.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

from crossent.files import write_bytes_atomically
from crossent.metrics import LN2, nats_to_bits
from crossent.report.figures import inline_svg, new_figure, png_bytes
from crossent.report.html import BASE_STYLE, cell, page
from crossent.report.table import format_table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from crossent.explain import (
        Check,
        DistributionExplanation,
        LossCurves,
        StabilityExplanation,
        TextExplanation,
    )

    Explanation = DistributionExplanation | TextExplanation | StabilityExplanation

_P_COLOUR = "#2f6db5"
_Q_COLOUR = "#ec663d"
_CURVE_COLOUR = "#1c1c1e"
_ZERO_COLOUR = "#d1393b"
# Positions whose token texts label the per-position plot's axis, at most.
_MAX_TICK_LABELS = 48

_STYLE = (
    BASE_STYLE + "figure{margin:.6rem 0}"
    "figure svg{display:block;width:100%;max-width:52rem;height:auto}"
    "figcaption{color:#555;font-size:.9rem}"
    "code{background:#f4f4f4;padding:0 .2rem}"
    "table.tokens,table.positions,table.stability{display:block;overflow-x:auto}"
    "td.text{text-align:left;white-space:pre}"
    "tr.sum td{font-weight:600;border-top:1px solid #999}"
    "ol.steps li{margin:.5rem 0}"
    ".agrees{color:#1a7f37}.differs{color:#b42318;font-weight:600}"
)


def _quoted(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _probability(value: float) -> str:
    return f"{value:.4g}"


def _fixed(value: float, digits: int) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else str(value)


def _checks_rows(checks: Sequence[Check], digits: int) -> list[list[str]]:
    return [
        [
            check.what,
            _fixed(check.value, digits) if check.expected != 0 else f"{check.value:.3g}",
            _fixed(check.expected, digits) if check.expected != 0 else "0",
            f"{check.difference:.2g}",
            f"{check.tolerance:.2g}",
            "yes" if check.agrees else "NO",
        ]
        for check in checks
    ]


_CHECK_HEADERS = ["computed by", "value", "expected", "|difference|", "tolerance", "agrees"]


# Terminal text.


def format_explanation(explanation: Explanation) -> str:
    """The explanation as the terminal text of ``crossent explain``."""
    from crossent.explain import DistributionExplanation, TextExplanation

    if isinstance(explanation, DistributionExplanation):
        return _format_distributions(explanation)
    if isinstance(explanation, TextExplanation):
        return _format_text(explanation)
    return _format_stability(explanation)


def _format_distributions(e: DistributionExplanation) -> str:
    target_header = "p (smoothed)" if e.label_smoothing > 0 else "p (target)"
    rows = [
        [label, f"{p:.6g}", f"{q:.6g}", _fixed(log_q, 6), _fixed(term, 6)]
        for label, p, q, log_q, term in zip(
            e.labels, e.smoothed_p, e.q, e.log_q, e.terms, strict=True
        )
    ]
    rows.append(["sum", "", "", "", _fixed(e.nats, 6)])
    lines = [
        "Cross-entropy H(p, q) = -sum_i p_i ln q_i: p is the target, q the prediction.",
        "",
        format_table(["label", target_header, "q (predicted)", "ln q", "-p ln q, nats"], rows),
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
    lines += [
        f"H(p, q) = {_fixed(e.nats, 6)} nats = {_fixed(e.bits, 6)} bits; "
        f"perplexity e^H = {_fixed(e.perplexity, 6)}",
    ]
    if e.soft:
        lines += [
            f"H(p)       = {_fixed(e.entropy_nats, 6)} nats: the target's own uncertainty, "
            "the least any prediction can score",
            f"KL(p || q) = {_fixed(e.kl_nats, 6)} nats: what predicting q instead of p costs",
            f"H(p) + KL(p || q) = {_fixed(e.entropy_nats + e.kl_nats, 6)} nats = H(p, q)",
        ]
    lines += ["", "Checks:", format_table(_CHECK_HEADERS, _checks_rows(e.checks, 6))]
    return "\n".join(lines)


def _values(values: Sequence[float], spec: str, show: int = 8) -> str:
    shown = [format(value, spec) for value in values[:show]]
    if len(values) > show:
        shown.append(f"... ({len(values)} values)")
    return "  ".join(shown)


def _format_text(e: TextExplanation) -> str:
    batch, positions, vocabulary = e.logits_shape
    inputs = " ".join(_quoted(text) for text in e.input_texts)
    targets = " ".join(_quoted(token.text) for token in e.tokens)
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
                    _quoted(token.text),
                    _probability(token.probability),
                    f"{token.nats:.4f}",
                    f"{nats_to_bits(token.nats):.3f}",
                    str(token.rank),
                    ", ".join(
                        f"{_quoted(text)} {prob:.3f}"
                        for text, prob in zip(token.top_texts, token.top_probs, strict=True)
                    ),
                ]
                for token in e.tokens
            ],
        ),
        "",
        "Checks (the six steps run in float64 on the model's logits and are the truth):",
        format_table(_CHECK_HEADERS, _checks_rows(e.checks, 4)),
    ]
    return "\n".join(lines)


def _logits_text(logits: Sequence[float]) -> str:
    return "[" + ", ".join(f"{value:g}" for value in logits) + "]"


_STABILITY_HEADERS = [
    "case", "dtype", "logits z", "t", "naive", "no epsilon", "log-space", "PyTorch", "exact",
]  # fmt: skip


_STABILITY_HEADERS = [
    "case", "dtype", "logits z", "t", "naive", "no epsilon", "log-space", "PyTorch", "exact",
]  # fmt: skip


def _format_stability(e: StabilityExplanation) -> str:
    from crossent.explain import NAIVE_EPSILON

    losses = [
        [
            row.case.name,
            row.case.dtype,
            _logits_text(row.case.logits),
            str(row.case.target),
            _fixed(row.naive_nats, 4),
            _fixed(row.naive_without_epsilon_nats, 4),
            _fixed(row.log_space_nats, 4),
            _fixed(row.torch_nats, 4),
            _fixed(row.exact_nats, 4),
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
            f"The naive loss -ln(softmax(z)[t] + {NAIVE_EPSILON:g}) (seed 003's code) against "
            "the log-space loss logsumexp(z) - z[t] (crossent, PyTorch), in nats:",
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
            format_table(_CHECK_HEADERS, _checks_rows(e.checks, 4)),
        ]
    )


# Figures.


def _to_bits(nats: ArrayLike) -> NDArray[np.float64]:
    return np.asarray(nats, dtype=np.float64) / LN2


def _to_nats(bits: ArrayLike) -> NDArray[np.float64]:
    return np.asarray(bits, dtype=np.float64) * LN2


def loss_curve_figure(
    curves: LossCurves, points: Sequence[tuple[float, float, str]] = ()
) -> Figure:
    """``-ln p`` against ``p``, the probability given to the true class, in nats and bits.

    Args:
        curves: from :func:`crossent.explain.loss_curves`.
        points: ``(p, nats, label)`` to mark on the curve; labelled when there are at most 12.
    """
    figure = new_figure(7.0, 4.2)
    axes = figure.add_subplot()
    axes.plot(curves.probability, curves.loss_if_1, color=_CURVE_COLOUR, label="$-\\ln p$")
    axes.axvline(1.0, color=_ZERO_COLOUR, linestyle="--", alpha=0.6, label="p = 1: loss 0")
    if points:
        axes.plot(
            [p for p, _, _ in points],
            [nats for _, nats, _ in points],
            linestyle="none",
            marker="o",
            color=_Q_COLOUR,
            label="this prediction" if len(points) == 1 else "these predictions",
        )
        if len(points) <= 12:
            for p, nats, label in points:
                axes.annotate(
                    _tick_text(label), (p, nats), textcoords="offset points", xytext=(6, 4)
                )
    axes.set_xlim(0, 1.02)
    axes.set_ylim(0, max([curves.loss_if_1[0], *(nats * 1.08 for _, nats, _ in points)]))
    axes.set_xlabel("p, the probability the model gives the true class")
    axes.set_ylabel("loss, nats")
    axes.secondary_yaxis("right", functions=(_to_bits, _to_nats)).set_ylabel("bits")
    axes.set_title("Cross-entropy against the probability of the true class")
    axes.grid(alpha=0.3)
    axes.legend()
    return figure


def binary_curves_figure(curves: LossCurves) -> Figure:
    """Binary cross-entropy against the predicted probability of class 1, for each true label."""
    figure = new_figure(7.0, 4.2)
    axes = figure.add_subplot()
    axes.plot(
        curves.probability, curves.loss_if_1, color=_P_COLOUR, label="true label 1: $-\\ln p$"
    )
    axes.plot(
        curves.probability,
        curves.loss_if_0,
        color=_Q_COLOUR,
        linestyle="-.",
        label="true label 0: $-\\ln(1 - p)$",
    )
    axes.set_xlabel("p, the predicted probability of class 1")
    axes.set_ylabel("loss, nats")
    axes.set_title("Binary cross-entropy for both true labels")
    axes.set_ylim(0, 7)  # -ln 0.001 = 6.9: the curves' ends, whatever range they were given
    axes.grid(alpha=0.3)
    axes.legend(loc="upper center")
    return figure


def distributions_figure(e: DistributionExplanation) -> Figure:
    """The target ``p`` and the prediction ``q`` side by side, one pair of bars per label."""
    figure = new_figure(max(5.0, min(12.0, 1.0 + 0.8 * len(e.labels))), 3.6)
    axes = figure.add_subplot()
    places = range(len(e.labels))
    width = 0.38
    target = "p, smoothed target" if e.label_smoothing > 0 else "p, target"
    axes.bar([x - width / 2 for x in places], e.smoothed_p, width, color=_P_COLOUR, label=target)
    axes.bar([x + width / 2 for x in places], e.q, width, color=_Q_COLOUR, label="q, prediction")
    axes.set_xticks(list(places), list(e.labels))
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("probability")
    axes.set_title(f"H(p, q) = {_fixed(e.nats, 4)} nats = {_fixed(e.bits, 4)} bits")
    axes.grid(axis="y", alpha=0.3)
    axes.legend()
    return figure


def _tick_text(text: str) -> str:
    return text.replace("\n", "\\n").replace("\t", "\\t").replace("$", "\\$")


def per_position_figure(e: TextExplanation) -> Figure:
    """Each position's loss ``-ln p(next token)`` as a bar, and their mean, the cross-entropy."""
    count = len(e.tokens)
    figure = new_figure(max(6.0, min(14.0, 1.5 + 0.45 * count)), 4.4)
    axes = figure.add_subplot()
    places = list(range(count))
    axes.bar(places, [token.nats for token in e.tokens], color=_P_COLOUR, label="-ln p(next token)")
    axes.axhline(
        e.nats, color=_ZERO_COLOUR, linestyle="--", label=f"mean = cross-entropy, {e.nats:.4f}"
    )
    every = max(1, math.ceil(count / _MAX_TICK_LABELS))
    axes.set_xticks(
        places[::every],
        [_tick_text(token.text) for token in e.tokens][::every],
        rotation=60,
        ha="right",
    )
    axes.set_xlabel("next token")
    axes.set_ylabel("loss, nats")
    axes.set_title(f"{e.model}: the loss at each position")
    axes.grid(axis="y", alpha=0.3)
    axes.legend()
    return figure


def figures(explanation: Explanation, curves: LossCurves) -> dict[str, Figure]:
    """The explanation's figures by file name (without ``.png``), in the order a page shows them.

    Every explanation has ``loss_curve`` and ``binary_curves``; a distribution also has
    ``distributions`` (first), a text ``per_position`` (first). The loss curve marks the true
    class of a one-hot target, each label with target mass for a distribution, and every token
    of a text.
    """
    from crossent.explain import DistributionExplanation, TextExplanation

    drawn: dict[str, Figure] = {}
    points: list[tuple[float, float, str]] = []
    if isinstance(explanation, DistributionExplanation):
        drawn["distributions"] = distributions_figure(explanation)
        points = [
            (q, -log_q, label)
            for label, p, q, log_q in zip(
                explanation.labels, explanation.p, explanation.q, explanation.log_q, strict=True
            )
            if p > 0 and q > 0
        ]
    elif isinstance(explanation, TextExplanation):
        drawn["per_position"] = per_position_figure(explanation)
        points = [(token.probability, token.nats, token.text) for token in explanation.tokens]
    drawn["loss_curve"] = loss_curve_figure(curves, points)
    drawn["binary_curves"] = binary_curves_figure(curves)
    return drawn


def write_plots(
    explanation: Explanation, curves: LossCurves, folder: str | os.PathLike[str]
) -> list[Path]:
    """Write :func:`figures` as PNG files into ``folder`` (created if missing), atomically.

    Returns:
        The paths written.
    """
    directory = Path(folder)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, figure in figures(explanation, curves).items():
        path = directory / f"{name}.png"
        write_bytes_atomically(path, png_bytes(figure))
        written.append(path)
    return written


# The page.

_CAPTIONS = {
    "distributions": "The target p and the prediction q.",
    "per_position": "The loss at each position; the dashed line is their mean, the cross-entropy.",
    "loss_curve": "The loss -ln p against the probability p given to the true class: 0 when "
    "p = 1, growing without bound as p goes to 0 (right axis: bits).",
    "binary_curves": "Binary cross-entropy: -ln p when the true label is 1, -ln(1 - p) when it "
    "is 0. A confident wrong prediction costs far more than a hesitant one.",
}


def _figure_html(name: str, figure: Figure) -> str:
    svg = inline_svg(figure, escape(_CAPTIONS[name]), id_prefix=name.replace("_", "-"))
    return (
        f'<figure class="{name.replace("_", "-")}">{svg}'
        f"<figcaption>{escape(_CAPTIONS[name])}</figcaption></figure>"
    )


def _checks_table(checks: Sequence[Check], digits: int) -> str:
    head = "".join(f"<th>{escape(header)}</th>" for header in _CHECK_HEADERS)
    rows = []
    for check, texts in zip(checks, _checks_rows(checks, digits), strict=True):
        verdict = "agrees" if check.agrees else "differs"
        cells = "".join(cell(text) for text in texts[:-1])
        rows.append(f'<tr>{cells}<td class="{verdict}">{escape(texts[-1])}</td></tr>')
    return (
        f'<table class="checks"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _distributions_body(e: DistributionExplanation, drawn: dict[str, Figure]) -> list[str]:
    rows = "".join(
        f"<tr>{cell(label)}{cell(f'{p:.6g}', metric='p')}{cell(f'{q:.6g}', metric='q')}"
        f"{cell(_fixed(log_q, 6), metric='log_q')}{cell(_fixed(term, 6), metric='term')}</tr>"
        for label, p, q, log_q, term in zip(
            e.labels, e.smoothed_p, e.q, e.log_q, e.terms, strict=True
        )
    )
    total = (
        '<tr class="sum"><td>H(p, q)</td><td></td><td></td><td></td>'
        f"{cell(_fixed(e.nats, 6), metric='nats')}</tr>"
    )
    target = "p, smoothed target" if e.label_smoothing > 0 else "p, target"
    parts = [
        "<h1>Cross-entropy of a prediction</h1>",
        f'<p class="headline"><b>{_fixed(e.nats, 6)}</b> nats = {_fixed(e.bits, 6)} bits; '
        f"perplexity {_fixed(e.perplexity, 6)}</p>",
        "<h2>Term by term</h2>",
        "<p>H(p, q) = &minus;&sum;<sub>i</sub> p<sub>i</sub> ln q<sub>i</sub>: the expected "
        "surprise, under the target p, of the prediction q.</p>",
        f'<table class="terms"><thead><tr><th>label</th><th>{target}</th>'
        "<th>q, prediction</th><th>ln q</th><th>&minus;p ln q, nats</th></tr></thead>"
        f"<tbody>{rows}{total}</tbody></table>",
    ]
    if e.label_smoothing > 0:
        eps = f"{e.label_smoothing:g}"
        parts.append(
            f"<p>Label smoothing {eps} (PyTorch's formula): the target is (1 &minus; {eps}) p "
            f"+ {eps} / {len(e.labels)}, so no label's probability may fall to 0 for free.</p>"
        )
    elif e.target is not None:
        parts.append(
            f"<p>The target is one-hot on <code>{escape(e.target)}</code>: every other term is "
            f"0, so H(p, q) = &minus;ln q({escape(e.target)}).</p>"
        )
    summary = [
        ("H(p, q)", "nats", e.nats),
        ("H(p, q) in bits", "bits", e.bits),
        ("perplexity e^H(p, q)", "perplexity", e.perplexity),
    ]
    if e.soft:
        summary += [
            ("H(p), the target's own entropy", "entropy_nats", e.entropy_nats),
            ("KL(p || q)", "kl_nats", e.kl_nats),
            ("H(p) + KL(p || q)", "entropy_plus_kl", e.entropy_nats + e.kl_nats),
        ]
    parts += [
        '<table class="summary"><tbody>'
        + "".join(
            f"<tr><th>{escape(name)}</th>{cell(_fixed(value, 6), metric=key)}</tr>"
            for name, key, value in summary
        )
        + "</tbody></table>",
    ]
    if e.soft:
        parts.append(
            "<p>H(p, q) = H(p) + KL(p || q): the target's own uncertainty, which no prediction "
            "can remove, plus what predicting q instead of p costs.</p>"
        )
    parts += [_figure_html(name, figure) for name, figure in drawn.items()]
    parts += ["<h2>Checks</h2>", _checks_table(e.checks, 6)]
    return parts


def _text_body(e: TextExplanation, drawn: dict[str, Figure]) -> list[str]:
    batch, positions, vocabulary = e.logits_shape
    token_rows = "".join(
        f"<tr>{cell(str(token.position))}<td class='text'>{escape(_quoted(source))}</td>"
        f"<td class='text'>{escape(_quoted(token.text))}</td>"
        f"{cell(_probability(token.probability), metric='probability')}"
        f"{cell(f'{token.log_probability:.4f}', metric='log_probability')}</tr>"
        for source, token in zip(e.input_texts, e.tokens, strict=True)
    )
    position_rows = "".join(
        f"<tr>{cell(str(token.position))}<td class='text'>{escape(_quoted(token.text))}</td>"
        f"{cell(_probability(token.probability), metric='probability')}"
        f"{cell(f'{token.nats:.4f}', metric='nats')}"
        f"{cell(f'{nats_to_bits(token.nats):.3f}', metric='bits')}"
        f"{cell(str(token.rank), metric='rank')}"
        + "".join(
            f"<td class='text'>{escape(_quoted(text))} {prob:.3f}</td>"
            for text, prob in zip(token.top_texts, token.top_probs, strict=True)
        )
        + "</tr>"
        for token in e.tokens
    )
    top_headers = "".join(f"<th>#{rank}</th>" for rank in range(1, len(e.tokens[0].top_ids) + 1))
    return [
        f"<h1>Cross-entropy of {escape(e.model)} on a text</h1>",
        f'<p class="headline"><b>{e.nats:.4f}</b> nats per token = {e.bits:.4f} bits; '
        f"perplexity {e.perplexity:.2f}</p>",
        f"<p>The text: <code>{escape(e.text)}</code>. The model reads {positions} tokens, "
        f"the first being the {escape(e.prefix.upper())} prefix (never scored), and at each "
        "position predicts the next one, as <code>crossent eval</code> does.</p>",
        "<h2>The six steps</h2>",
        '<ol class="steps">'
        f"<li><code>logits = model(inputs)</code>: shape <span data-metric='logits_shape'>"
        f"({batch}, {positions}, {vocabulary})</span>, one text, {positions} positions, "
        f"{vocabulary} scores each ({escape(e.logits_dtype)}).</li>"
        "<li><code>probas = softmax(logits, dim=-1)</code>: each row is a distribution over "
        f"the vocabulary (rows sum to 1 within {e.probability_sum_error:.1e}).</li>"
        "<li><code>target_probas = probas[..., targets]</code>: the probability of each true "
        "next token (below).</li>"
        "<li><code>log_probas = ln(target_probas)</code> (below).</li>"
        "<li><code>avg_log_probas = mean(log_probas)</code> = "
        f"<span data-metric='mean_log_probability'>{e.mean_log_probability:.4f}</span></li>"
        "<li><code>neg_avg_log_probas = &minus;avg_log_probas</code> = "
        f"<b data-metric='nats'>{e.nats:.4f}</b> nats per token: the cross-entropy. In bits: "
        f"<span data-metric='bits'>{e.bits:.4f}</span>; perplexity e<sup>{e.nats:.4f}</sup> = "
        f"<span data-metric='perplexity'>{e.perplexity:.2f}</span>.</li></ol>",
        '<table class="tokens"><thead><tr><th>position</th><th>input</th><th>next token</th>'
        "<th>step 3: p</th><th>step 4: ln p</th></tr></thead>"
        f"<tbody>{token_rows}</tbody></table>",
        "<h2>Every position</h2>",
        '<table class="positions"><thead><tr><th>position</th><th>next token</th><th>p</th>'
        f"<th>nats</th><th>bits</th><th>rank</th>{top_headers}</tr></thead>"
        f"<tbody>{position_rows}</tbody></table>",
        *(_figure_html(name, figure) for name, figure in drawn.items()),
        "<h2>Checks</h2>",
        "<p>The six steps run in float64 on the model's logits and are the truth; the other "
        "routes compute the same numbers in the model's precision.</p>",
        _checks_table(e.checks, 4),
    ]


def _stability_body(e: StabilityExplanation, drawn: dict[str, Figure]) -> list[str]:
    from crossent.explain import NAIVE_EPSILON

    rows = "".join(
        "<tr>"
        + cell(row.case.name)
        + cell(row.case.dtype)
        + f"<td class='text'>{escape(_logits_text(row.case.logits))}</td>"
        + cell(str(row.case.target))
        + cell(_fixed(row.naive_nats, 4), metric="naive_nats")
        + cell(_fixed(row.naive_without_epsilon_nats, 4), metric="naive_without_epsilon_nats")
        + cell(_fixed(row.log_space_nats, 4), metric="log_space_nats")
        + cell(_fixed(row.torch_nats, 4), metric="torch_nats")
        + cell(_fixed(row.exact_nats, 4), metric="exact_nats")
        + cell(f"{row.naive_gradient:.4g}", metric="naive_gradient")
        + cell(f"{row.log_space_gradient:.4g}", metric="log_space_gradient")
        + cell(f"{row.torch_gradient:.4g}", metric="torch_gradient")
        + cell(f"{row.exact_gradient:.4g}", metric="exact_gradient")
        + "</tr>"
        for row in e.rows
    )
    return [
        "<h1>Cross-entropy at the edge of floating point</h1>",
        f"<p>The naive loss <code>&minus;ln(softmax(z)[t] + {NAIVE_EPSILON:g})</code> (seed "
        "003's code) against the log-space loss <code>logsumexp(z) &minus; z[t]</code> that "
        "crossent and PyTorch compute, beside the exact value (float64, Python's math). "
        "Losses in nats; gradients on the target's logit, exactly p[t] &minus; 1.</p>",
        '<table class="stability"><thead><tr><th>case</th><th>dtype</th><th>logits z</th>'
        "<th>t</th><th>naive</th><th>no epsilon</th><th>log-space</th><th>PyTorch</th>"
        "<th>exact</th><th>naive gradient</th><th>log-space gradient</th>"
        "<th>PyTorch gradient</th><th>exact gradient</th></tr>"
        f"</thead><tbody>{rows}</tbody></table>",
        "<p>Once softmax rounds p[t] to 0 the naive loss is capped at &minus;ln 10<sup>-10</sup> "
        "= 23.0259 nats however wrong the model is, and its gradient vanishes: a confidently "
        "wrong model gets no signal to change. Even where nothing underflows, the epsilon "
        "biases loss and gradient.</p>",
        *(_figure_html(name, figure) for name, figure in drawn.items()),
        "<h2>Checks</h2>",
        _checks_table(e.checks, 4),
    ]


def render_explanation_page(
    explanation: Explanation, curves: LossCurves, *, title: str | None = None
) -> str:
    """One self-contained HTML page: the explanation's steps, tables, figures and checks.

    The figures are :func:`figures` drawn as inline SVG; the page loads nothing and runs no
    script (see :func:`crossent.report.html.page`). Numbers carry ``data-metric`` attributes
    named as the keys of the explanation's ``to_dict``.

    Args:
        explanation: what :mod:`crossent.explain` computed.
        curves: from :func:`crossent.explain.loss_curves`.
        title: the page title; default ``"crossent explain"``.

    Returns:
        The page; write it with :func:`crossent.files.write_text_atomically`.
    """
    from crossent.explain import DistributionExplanation, TextExplanation

    drawn = figures(explanation, curves)
    if isinstance(explanation, DistributionExplanation):
        parts = _distributions_body(explanation, drawn)
    elif isinstance(explanation, TextExplanation):
        parts = _text_body(explanation, drawn)
    else:
        parts = _stability_body(explanation, drawn)
    return page(title or "crossent explain", "\n".join(parts), style=_STYLE)
