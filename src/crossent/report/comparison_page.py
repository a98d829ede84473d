"""The HTML page comparing two models, A and B, on the same texts.

The page is self-contained (:mod:`crossent.report.page`); each model's part is the evaluation
page's (:mod:`crossent.report.evaluation_page`), and the token-by-token part, when the two models
share a tokenizer, colours each token by its change in loss, in nats
(:func:`crossent.report.surprisal.difference_class`). Every number of the token-by-token part
is in nats and the divergence is ``KL(A || B)``, as in the terminal and the JSON
(:mod:`crossent.comparison`); each model's own part keeps the evaluation page's surprisal in
bits.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from crossent.comparison import KL_FORMULA, KL_NAME, TOKEN_UNIT
from crossent.report.heatmap import (
    NO_TOKENS_NOTE,
    Payload,
    escape_text,
    group_by_document,
    heatmap,
    heatmap_page,
    json_number,
    score_heatmaps,
)
from crossent.report.histogram import histogram_bin_count, histogram_svg
from crossent.report.numbers import with_error
from crossent.report.page import bidi_attribute, cell, isolated, name_title, short_name
from crossent.report.result_tables import documents_table, headline, summary_table
from crossent.report.surprisal import difference_class, difference_legend, surprisal_legend

if TYPE_CHECKING:
    from crossent.comparison import ComparisonResult, KLSummary, ModelsComparison
    from crossent.evaluation import EvaluationResult

# A heatmap set's index of each token, by (document, position), for each model's set ("a", "b").
_Positions = dict[str, dict[tuple[int, int], int]]


def render_comparison_report(comparison: ComparisonResult, *, title: str | None = None) -> str:
    """One self-contained HTML page comparing two models on the same texts (A and B).

    The page holds both models' bits per byte as the headline (it divides by the text's bytes, so
    it is comparable across tokenizers), their summaries side by side, and for each model its
    per-document table, surprisal histogram (both on the same bins) and heatmaps, as in
    :func:`crossent.report.evaluation_page.render_evaluation_report`. When the two models share a
    tokenizer it also holds the summary of the per-token ``KL(A || B)`` (mean, percentiles,
    top-1 agreement), the table of the tokens whose loss changed most, and a heatmap of each
    token's change in loss (B's minus A's, in nats, binned at -5, -3, -1.5, -0.5, 0.5, 1.5, 3 and
    5 nats on a diverging scale: blue where B is more confident); its tooltip shows both models'
    probability, loss, rank and top-1 token, the change and the KL divergence, all in nats.

    Args:
        comparison: what :func:`crossent.comparison.compare` returned.
        title: the page title; default ``"<model A> vs <model B>"``.

    Returns:
        The page.
    """
    a, b = comparison.a, comparison.b
    title = title if title is not None else f"{a.model} vs {b.model}"
    payload = Payload()
    named = [("A", a), ("B", b)]
    parts = [
        f"<h1>{escape(title)}</h1>",
        f"<p>A is <code>{isolated(a.model)}</code>, B is <code>{isolated(b.model)}</code>; "
        f"{_windows(named)} Token by token, A is the reference: {escape(KL_FORMULA)}, and every "
        f"per-token number is in {TOKEN_UNIT}.</p>",
        *_weights(named),
        headline(named),
        _difference(comparison),
        "<h2>Summary</h2>",
        summary_table(named),
    ]
    positions: _Positions = {}
    model_parts = []
    bins = histogram_bin_count([a, b])
    for (name, result), key in zip(named, ("a", "b"), strict=True):
        model_parts += [f"<h2>Model {name}: {isolated(result.model)}</h2>", documents_table(result)]
        if result.tokens:
            heatmaps, positions[key] = score_heatmaps(result, key, payload)
            model_parts += [
                "<h3>Surprisal per token</h3>",
                histogram_svg(result.tokens, bins),
                surprisal_legend(),
                heatmaps,
            ]
        else:
            model_parts.append(NO_TOKENS_NOTE)
    if comparison.shared_tokenizer:
        parts += _token_comparison(comparison, positions, payload)
    else:
        parts.append(
            '<p class="note">The two models tokenize the texts differently, so their tokens '
            "cannot be compared one by one: no KL divergence and no per-token differences. Bits "
            "per byte remains comparable.</p>",
        )
        parts += _aligned_parts(comparison)
    parts += model_parts
    return heatmap_page(title, "\n".join(parts), payload if payload.sets else None)


def _aligned_parts(comparison: ComparisonResult) -> list[str]:
    """Across tokenizers: the text cut where both tokenizations cut it, coloured by B's minus
    A's nats (:mod:`crossent.comparison.aligned`), and the stretches that differ most."""
    if not comparison.segments:
        return []
    rows = "".join(
        "<tr>"
        + cell(short_name(comparison.a.documents[segment.document].name))
        + cell(str(segment.start))
        + f"<td><code>{escape(_visible(short_name(segment.text)))}</code></td>"
        + cell(f"{segment.nats_a:.4f}")
        + cell(f"{segment.nats_b:.4f}")
        + cell(f"{segment.nats_b - segment.nats_a:+.4f}")
        + "</tr>"
        for segment in comparison.largest_segments
    )
    headers = ["document", "byte", "text", "nats A", "nats B", "B \u2212 A, nats"]
    head = "".join(f"<th>{escape(header)}</th>" for header in headers)
    parts = [
        "<h2>Where they differ, on the same characters</h2>",
        '<p class="note">Each stretch below is text that both tokenizations cut at the same bytes, '
        "so each model scores it with whole tokens; its colour is B\u2019s minus A\u2019s nats "
        "(blue where B is more confident), and hovering shows both.</p>",
        f'<table class="largest-segments"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>'
        "</table>",
        difference_legend(),
    ]
    spans: dict[int, list[str]] = {}
    for segment in comparison.segments:
        title = f"A {segment.nats_a:.3f} nats, B {segment.nats_b:.3f} nats"
        spans.setdefault(segment.document, []).append(
            f'<span class="{difference_class(segment.nats_a, segment.nats_b)}" '
            f'title="{escape(title)}"{bidi_attribute(segment.text)}>'
            f"{escape_text(segment.text)}</span>"
        )
    for index, document in enumerate(comparison.a.documents):
        parts.append(
            f"<h3{name_title(document.name)}>{escape(short_name(document.name))}</h3>"
            f'<div class="aligned">{"".join(spans.get(index, []))}</div>'
        )
    return parts


def _windows(named: list[tuple[str, EvaluationResult]]) -> str:
    """How the models read the texts: one sentence when they read them alike."""
    first = named[0][1]
    if len({(r.window, r.stride, r.prefix) for _, r in named}) == 1:
        return (
            f"{'both' if len(named) == 2 else 'all'} read the texts through windows of "
            f'<span data-metric="window">{first.window}</span> tokens, stride '
            f'<span data-metric="stride">{first.stride}</span>, prefix '
            f'<span data-metric="prefix">{escape(first.prefix)}</span>.'
        )
    each = "; ".join(
        f'{escape(label)} through windows of <span data-metric="window" data-model="{label}">'
        f"{result.window}</span> tokens, stride {result.stride}, prefix {escape(result.prefix)}"
        for label, result in named
    )
    return f"each reads the texts in its own window: {each}."


def _weights(named: list[tuple[str, EvaluationResult]]) -> list[str]:
    return [
        f'<p class="note">{label}\'s weights: {escape(result.provenance.description)}</p>'
        for label, result in named
        if result.provenance is not None
    ]


def _difference(comparison: ComparisonResult) -> str:
    """The paired difference of bits per byte in a sentence."""
    if comparison.difference is None:
        text = "Too little text to pair the two models' bits per byte (fewer than two units)."
        return f'<p class="difference">{escape(text)}</p>'
    difference = comparison.difference
    return (
        f'<p class="difference" data-metric="difference" '
        f'data-distinguishable="{str(difference.distinguishable).lower()}">'
        f"{escape(difference.sentence())}</p>"
    )


def render_models_report(comparison: ModelsComparison, *, title: str | None = None) -> str:
    """One self-contained HTML page comparing several models on the same texts.

    The page holds every model's bits per byte, a table ranked by it with each model's 95%
    interval (over tokens, and over documents where there are several), each model against
    the first (the reference) in a sentence, the models' summaries side by side, llama.cpp's
    per-token statistics for every pair sharing a tokenizer, and each model's per-document
    table, surprisal histogram (all on the same bins) and heatmaps.

    Args:
        comparison: what :func:`crossent.comparison.compare_models` returned.
        title: the page title; default the models' names joined by "vs".

    Returns:
        The page.
    """
    results = comparison.results
    title = title if title is not None else " vs ".join(result.model for result in results)
    named = [(_label(index), result) for index, result in enumerate(results)]
    payload = Payload()
    parts = [
        f"<h1>{escape(title)}</h1>",
        f"<p>A, <code>{isolated(results[0].model)}</code>, is the reference; {_windows(named)}</p>",
        *_weights(named),
        headline(named),
        "<h2>Ranked by bits per byte</h2>",
        _ranking_table(comparison),
        *(_difference(pair) for pair in comparison.pairs),
        "<h2>Summary</h2>",
        summary_table(named),
    ]
    for (label, result), pair in zip(named[1:], comparison.pairs, strict=True):
        if pair.kl is not None:
            parts += [
                f"<h2>A against {escape(label)} ({isolated(result.model)}), token by token</h2>",
                _kl_table(pair.kl),
            ]
    bins = histogram_bin_count(results)
    for index, (label, result) in enumerate(named):
        parts += [f"<h2>Model {label}: {isolated(result.model)}</h2>", documents_table(result)]
        if result.tokens:
            heatmaps, _ = score_heatmaps(result, f"m{index}", payload)
            parts += [histogram_svg(result.tokens, bins), surprisal_legend(), heatmaps]
        else:
            parts.append(NO_TOKENS_NOTE)
    return heatmap_page(title, "\n".join(parts), payload if payload.sets else None)


def _label(index: int) -> str:
    return chr(ord("A") + index) if index < 26 else str(index)


def _ranking_table(comparison: ModelsComparison) -> str:
    """Rank, model, bits per byte ± standard error, its 95% interval, the bootstrap's."""
    from crossent.uncertainty import z_value  # the page needs no numpy until it is made

    z = z_value()
    rows = []
    for rank, index in enumerate(comparison.ranking(), start=1):
        result = comparison.results[index]
        value, error = result.totals.bits_per_byte, result.totals.bits_per_byte_se
        interval = "-"
        if value is not None and error is not None:
            interval = f"{value - z * error:.4f} to {value + z * error:.4f}"
        boot = None if result.bootstrap is None else result.bootstrap.bits_per_byte
        label = _label(index)
        rows.append(
            "<tr>"
            + cell(str(rank), metric="rank", model=label)
            + cell(f"{label}: {result.model}", model=label)
            + cell(with_error(value, error, 4), metric="bits_per_byte", model=label)
            + cell(interval, metric="interval", model=label)
            + cell(
                "-" if boot is None else f"{boot.low:.4f} to {boot.high:.4f}",
                metric="bootstrap_interval",
                model=label,
            )
            + cell(str(result.window), metric="window", model=label)
            + "</tr>"
        )
    headers = [
        "rank", "model", "bits/byte \u00b1 standard error", "95% interval (over tokens)",
        "95% interval (over documents)", "window",
    ]  # fmt: skip
    head = "".join(f"<th>{escape(header)}</th>" for header in headers)
    return (
        f'<table class="ranking"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _token_comparison(
    comparison: ComparisonResult, positions: _Positions, payload: Payload
) -> list[str]:
    """The KL summary, the largest differences and the difference heatmaps (shared tokenizer)."""
    parts = ["<h2>Token by token</h2>"]
    if comparison.kl is not None:
        parts += [
            f"<h3>{escape(KL_NAME)} per token, {TOKEN_UNIT}</h3>",
            _kl_table(comparison.kl),
        ]
    return [
        *parts,
        f"<h3>Largest changes in loss, {TOKEN_UNIT}</h3>",
        _largest_table(comparison),
        "<h3>Texts, coloured by the change in loss</h3>",
        difference_legend(),
        *_difference_heatmaps(comparison, positions, payload),
    ]


def _kl_table(kl: KLSummary) -> str:
    """The summary of the per-token KL divergence; each value carries data-metric."""
    rows = [("tokens compared", "kl_tokens", str(kl.tokens))]
    rows.append((f"mean {KL_NAME}, {TOKEN_UNIT}", "kl_mean", f"{kl.mean:.4g}"))
    rows += [
        (f"{name} {KL_NAME}, {TOKEN_UNIT}", f"kl_{name}", f"{value:.4g}")
        for name, value in kl.percentiles.items()
    ]
    rows.append(("top-1 agreement", "top1_agreement", f"{kl.top1_agreement:.4f}"))
    rows += _llama_cpp_rows(kl)
    body = "".join(
        f"<tr><th>{escape(label)}</th>{cell(value, metric=key)}</tr>" for label, key, value in rows
    )
    return f'<table class="kl"><tbody>{body}</tbody></table>'


def _llama_cpp_rows(kl: KLSummary) -> list[tuple[str, str, str]]:
    """The standard errors, Δp and perplexity-ratio rows of llama.cpp's --kl-divergence."""
    rows = []
    if kl.mean_se is not None:
        rows.append((f"\u00b1 mean {KL_NAME} (standard error)", "kl_mean_se", f"{kl.mean_se:.4g}"))
    if kl.top1_agreement_se is not None:
        rows.append(("\u00b1 top-1 agreement", "top1_agreement_se", f"{kl.top1_agreement_se:.4f}"))
    if kl.delta_p is not None:
        delta = kl.delta_p
        rows.append(
            ("mean \u0394p = p_B \u2212 p_A, %", "delta_p_mean", f"{100 * delta.mean:+.3f}")
        )
        rows.append(("RMS \u0394p, %", "delta_p_rms", f"{100 * delta.rms:.3f}"))
        rows += [
            (f"{name} \u0394p, %", f"delta_p_{name}", f"{100 * value:+.3f}")
            for name, value in delta.percentiles.items()
        ]
    if kl.perplexity is not None:
        ppl = kl.perplexity
        rows += [
            ("ln(PPL(B)/PPL(A))", "ln_ppl_ratio", f"{ppl.ln_ratio:+.6f}"),
            ("\u00b1 ln(PPL(B)/PPL(A))", "ln_ppl_ratio_se", f"{ppl.ln_ratio_se:.6f}"),
            ("PPL(B)/PPL(A)", "ppl_ratio", f"{ppl.ratio:.6f}"),
            ("PPL(A), same tokens", "ppl_a", with_error(ppl.perplexity_a, ppl.perplexity_a_se, 4)),
            ("PPL(B), same tokens", "ppl_b", with_error(ppl.perplexity_b, ppl.perplexity_b_se, 4)),
        ]
        if ppl.correlation is not None:
            rows.append(
                ("Cor(ln PPL(A), ln PPL(B)), %", "ppl_correlation", f"{100 * ppl.correlation:.2f}")
            )
    return rows


def _difference_heatmaps(
    comparison: ComparisonResult, positions: _Positions, payload: Payload
) -> list[str]:
    """Each document's text coloured by the change, its tokens added to ``payload.sets["d"]``.

    A difference's entry points at the same token's entries in sets "a" and "b" (null where that
    model's heatmap does not hold it), so its tooltip can show both models' rank and top-1.
    """
    entries = payload.sets.setdefault("d", [])
    sections = []
    for document, indices in zip(
        comparison.a.documents,
        group_by_document(comparison.a, comparison.differences),
        strict=True,
    ):
        first = len(entries)
        spans = []
        for index in indices:
            difference = comparison.differences[index]
            where = (difference.document, difference.position)
            index_a = positions.get("a", {}).get(where)
            index_b = positions.get("b", {}).get(where)
            entries.append(
                f"[{json_number(difference.nats_a, '.4f')},"
                f"{json_number(difference.nats_b, '.4f')},"
                f"{json_number(difference.kl, '.6f')},{'null' if index_a is None else index_a},"
                f"{'null' if index_b is None else index_b}]"
            )
            spans.append(
                f'<span class="{difference_class(difference.nats_a, difference.nats_b)}"'
                f"{bidi_attribute(difference.text)}>{escape_text(difference.text)}</span>"
            )
        sections.append(heatmap(document.name, "d", first, spans))
    return sections


def _largest_table(comparison: ComparisonResult) -> str:
    """The tokens whose loss changed most, with both models' top-1 texts when known."""
    names = {
        token_id: text
        for result in (comparison.a, comparison.b)
        for token in result.tokens
        for token_id, text in zip(token.top_ids, token.top_texts, strict=True)
    }

    def top(token_id: int) -> str:
        text = names.get(token_id)
        return f"#{token_id}" if text is None else _visible(text)

    documents = comparison.a.documents
    rows = [
        "<tr>"
        + cell(short_name(documents[d.document].name))
        + cell(str(d.position))
        + f"<td><code>{escape(_visible(d.text))}</code></td>"
        + cell(f"{d.nats_a:.4f}")
        + cell(f"{d.nats_b:.4f}")
        + cell(f"{d.nats_b - d.nats_a:+.4f}")
        + cell(f"{d.kl:.4f}")
        + f"<td><code>{escape(top(d.top_a))}</code></td>"
        + f"<td><code>{escape(top(d.top_b))}</code></td>"
        + "</tr>"
        for d in comparison.largest
    ]
    headers = [
        "document", "position", "token", f"{TOKEN_UNIT} A", f"{TOKEN_UNIT} B",
        f"B \u2212 A, {TOKEN_UNIT}", f"{KL_NAME}, {TOKEN_UNIT}", "top-1 A", "top-1 B",
    ]  # fmt: skip
    head = "".join(f"<th>{escape(header)}</th>" for header in headers)
    return (
        f'<table class="largest"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _visible(text: str) -> str:
    """A token's text with whitespace made visible, as the tooltips show it."""
    if not text:
        return "\u2205"
    return (
        text.replace(" ", "\u2423")
        .replace("\n", "\u21b5")
        .replace("\t", "\u21e5")
        .replace("\r", "\u240d")
    )
