"""The page of ``crossent explain``: one self-contained HTML page with the explanation's steps,
tables, figures (inline SVG) and checks."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
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
from crossent.report.explain.plots import figures
from crossent.report.explain.temperature import temperature_html
from crossent.report.figures import inline_svg
from crossent.report.page import BASE_STYLE, cell, isolated, page

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from crossent.explain import Check, Explanation, LossCurves, StabilityExplanation

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


_CAPTIONS = {
    "distributions": "The target p and the prediction q.",
    "per_position": "The loss at each position; the dashed line is their mean, the cross-entropy.",
    "loss_curve": "The loss -ln p against the probability p given to the true class: 0 when "
    "p = 1, growing without bound as p goes to 0 (right axis: bits); p is on a log scale when "
    "a marked probability is below 0.01.",
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
    head = "".join(f"<th>{escape(header)}</th>" for header in CHECK_HEADERS)
    rows = []
    for check, texts in zip(checks, check_rows(checks, digits), strict=True):
        verdict = "agrees" if check.agrees else "differs"
        cells = "".join(cell(text) for text in texts[:-1])
        rows.append(f'<tr>{cells}<td class="{verdict}">{escape(texts[-1])}</td></tr>')
    return (
        f'<table class="checks"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _distributions_body(e: DistributionExplanation, drawn: dict[str, Figure]) -> list[str]:
    logits = e.logits if e.logits is not None else (None,) * len(e.labels)
    rows = "".join(
        f"<tr>{cell(label)}"
        + ("" if logit is None else cell(f"{logit:.6g}", metric="logit"))
        + f"{cell(f'{p:.6g}', metric='p')}{cell(f'{q:.6g}', metric='q')}"
        f"{cell(fixed(log_q, 6), metric='log_q')}{cell(fixed(term, 6), metric='term')}</tr>"
        for label, logit, p, q, log_q, term in zip(
            e.labels, logits, e.smoothed_p, e.q, e.log_q, e.terms, strict=True
        )
    )
    empty = "<td></td>" * (4 if e.logits is not None else 3)
    total = f'<tr class="sum"><td>H(p, q)</td>{empty}{cell(fixed(e.nats, 6), metric="nats")}</tr>'
    logit_header = "<th>z, logit</th>" if e.logits is not None else ""
    target = "p, smoothed target" if e.label_smoothing > 0 else "p, target"
    parts = [
        "<h1>Cross-entropy of a prediction</h1>",
        f'<p class="headline"><b>{fixed(e.nats, 6)}</b> nats = {fixed(e.bits, 6)} bits; '
        f"perplexity {fixed(e.perplexity, 6)}</p>",
        "<h2>Term by term</h2>",
        "<p>H(p, q) = &minus;&sum;<sub>i</sub> p<sub>i</sub> ln q<sub>i</sub>: the expected "
        "surprise, under the target p, of the prediction q.</p>",
        f'<table class="terms"><thead><tr><th>label</th>{logit_header}<th>{target}</th>'
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
    parts += _logit_step_html(e)
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
            f"<tr><th>{escape(name)}</th>{cell(fixed(value, 6), metric=key)}</tr>"
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
    return parts + _temperature_body(e, 6)


def _logit_step_html(e: DistributionExplanation) -> list[str]:
    """With logits, the loss as crossent computes it, ``logsumexp(z) - z[target]``."""
    if e.logsumexp is None or e.target_logit is None:
        return []
    soft = "&sum;<sub>i</sub> p<sub>i</sub> z<sub>i</sub>"
    what = soft if e.soft or e.target is None else f"z[{escape(e.target)}]"
    return [
        "<p>q = softmax(z), so ln q = z &minus; logsumexp(z), and the loss is what crossent and "
        f"PyTorch compute: H(p, q) = logsumexp(z) &minus; {what} = "
        f"<span data-metric='logsumexp'>{fixed(e.logsumexp, 6)}</span> &minus; "
        f"<span data-metric='target_logit'>{fixed(e.target_logit, 6)}</span> = "
        f"{fixed(e.logsumexp - e.target_logit, 6)} nats.</p>"
    ]


def _text_body(e: TextExplanation, drawn: dict[str, Figure]) -> list[str]:
    batch, positions, vocabulary = e.logits_shape
    token_rows = "".join(
        f"<tr>{cell(str(token.position))}<td class='text'>{escape(quoted(source))}</td>"
        f"<td class='text'>{escape(quoted(token.text))}</td>"
        f"{cell(probability(token.probability), metric='probability')}"
        f"{cell(f'{token.log_probability:.4f}', metric='log_probability')}</tr>"
        for source, token in zip(e.input_texts, e.tokens, strict=True)
    )
    position_rows = "".join(
        f"<tr>{cell(str(token.position))}<td class='text'>{escape(quoted(token.text))}</td>"
        f"{cell(probability(token.probability), metric='probability')}"
        f"{cell(f'{token.nats:.4f}', metric='nats')}"
        f"{cell(f'{nats_to_bits(token.nats):.3f}', metric='bits')}"
        f"{cell(str(token.rank), metric='rank')}"
        + "".join(
            f"<td class='text'>{escape(quoted(text))} {prob:.3f}</td>"
            for text, prob in zip(token.top_texts, token.top_probs, strict=True)
        )
        + "</tr>"
        for token in e.tokens
    )
    top_headers = "".join(f"<th>#{rank}</th>" for rank in range(1, len(e.tokens[0].top_ids) + 1))
    return [
        f"<h1>Cross-entropy of {isolated(e.model)} on a text</h1>",
        f'<p class="headline"><b>{e.nats:.4f}</b> nats per token = {e.bits:.4f} bits; '
        f"perplexity {e.perplexity:.2f}</p>",
        f"<p>The text: <code>{isolated(e.text)}</code>. The model reads {positions} tokens, "
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
        *_temperature_body(e, 4),
    ]


def _temperature_body(e: DistributionExplanation | TextExplanation, digits: int) -> list[str]:
    """The temperature scan's table and its checks; nothing without a scan."""
    if e.temperatures is None:
        return []
    return [
        *temperature_html(e),
        "<h3>Temperature checks</h3>",
        _checks_table(e.temperatures.checks, digits),
    ]


def _stability_body(e: StabilityExplanation, drawn: dict[str, Figure]) -> list[str]:
    rows = "".join(
        "<tr>"
        + cell(row.case.name)
        + cell(row.case.dtype)
        + f"<td class='text'>{escape(logits_text(row.case.logits))}</td>"
        + cell(str(row.case.target))
        + cell(fixed(row.naive_nats, 4), metric="naive_nats")
        + cell(fixed(row.naive_without_epsilon_nats, 4), metric="naive_without_epsilon_nats")
        + cell(fixed(row.log_space_nats, 4), metric="log_space_nats")
        + cell(fixed(row.torch_nats, 4), metric="torch_nats")
        + cell(fixed(row.exact_nats, 4), metric="exact_nats")
        + cell(f"{row.naive_gradient:.4g}", metric="naive_gradient")
        + cell(f"{row.log_space_gradient:.4g}", metric="log_space_gradient")
        + cell(f"{row.torch_gradient:.4g}", metric="torch_gradient")
        + cell(f"{row.exact_gradient:.4g}", metric="exact_gradient")
        + "</tr>"
        for row in e.rows
    )
    return [
        "<h1>Cross-entropy at the edge of floating point</h1>",
        f"<p>The naive loss <code>&minus;ln(softmax(z)[t] + {NAIVE_EPSILON:g})</code> (as it is "
        "often written) against the log-space loss <code>logsumexp(z) &minus; z[t]</code> that "
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
    script (see :func:`crossent.report.page.page`). Numbers carry ``data-metric`` attributes
    named as the keys of the explanation's ``to_dict``.

    Args:
        explanation: what :mod:`crossent.explain` computed.
        curves: from :func:`crossent.explain.loss_curves`.
        title: the page title; default ``"crossent explain"``.

    Returns:
        The page; write it with :func:`crossent.files.write_text_atomically`.
    """
    drawn = figures(explanation, curves)
    if isinstance(explanation, DistributionExplanation):
        parts = _distributions_body(explanation, drawn)
    elif isinstance(explanation, TextExplanation):
        parts = _text_body(explanation, drawn)
    else:
        parts = _stability_body(explanation, drawn)
    return page(title or "crossent explain", "\n".join(parts), style=_STYLE)
