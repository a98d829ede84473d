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
from crossent.report.page import cell
from crossent.report.result_tables import documents_table, headline, summary_table
from crossent.report.surprisal import difference_class, difference_legend, surprisal_legend

if TYPE_CHECKING:
    from crossent.comparison import ComparisonResult, KLSummary

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
        f"<p>A is <code>{escape(a.model)}</code>, B is <code>{escape(b.model)}</code>; both read "
        f'the texts through windows of <span data-metric="window">{a.window}</span> tokens, '
        f'stride <span data-metric="stride">{a.stride}</span>, prefix '
        f'<span data-metric="prefix">{escape(a.prefix)}</span>. Token by token, A is the '
        f"reference: {escape(KL_FORMULA)}, and every per-token number is in {TOKEN_UNIT}.</p>",
        *(
            f'<p class="note">{label}\'s weights: {escape(result.provenance.description)}</p>'
            for label, result in named
            if result.provenance is not None
        ),
        headline(named),
        "<h2>Summary</h2>",
        summary_table(named),
    ]
    positions: _Positions = {}
    model_parts = []
    bins = histogram_bin_count([a, b])
    for (name, result), key in zip(named, ("a", "b"), strict=True):
        model_parts += [f"<h2>Model {name}: {escape(result.model)}</h2>", documents_table(result)]
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
            "per byte remains comparable.</p>"
        )
    parts += model_parts
    return heatmap_page(title, "\n".join(parts), payload if payload.sets else None)


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
    body = "".join(
        f"<tr><th>{escape(label)}</th>{cell(value, metric=key)}</tr>" for label, key, value in rows
    )
    return f'<table class="kl"><tbody>{body}</tbody></table>'


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
                f'<span class="{difference_class(difference.nats_a, difference.nats_b)}">'
                f"{escape_text(difference.text)}</span>"
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
        + cell(documents[d.document].name)
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
