"""Plain-text tables for the terminal."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from crossent.metrics import NLLResult
from crossent.report.numbers import format_metrics

if TYPE_CHECKING:  # importing evaluate imports transformers, which the benchmark does not need
    from crossent.bench import BenchRow
    from crossent.comparison import ComparisonResult
    from crossent.evaluation import EvaluationResult


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns under a rule, trailing spaces stripped.

    Example:
        >>> print(format_table(["a", "bb"], [["1", "2"]]))
        a  bb
        -  --
        1  2
    """
    widths = [
        max([len(header), *(len(row[i]) for row in rows)]) for i, header in enumerate(headers)
    ]
    lines = [headers, ["-" * width for width in widths], *rows]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _metrics_row(name: str, metrics: NLLResult) -> list[str]:
    return [name, *format_metrics(metrics).values()]


def format_evaluation(result: EvaluationResult, *, model_description: str | None = None) -> str:
    """The model and the windows, then the table: one row per document, named by it, and a
    ``total`` row when there are several (a lone document's row is its total).

    Args:
        result: what :func:`crossent.evaluation.evaluate` returned.
        model_description: what the model's weights are
            (:attr:`crossent.models.CausalLM.description`), shown after its name, so that a
            quantised model's numbers are not taken for the published model's.
    """
    headers = [
        "document", "tokens", "nats/token", "bits/token", "perplexity", "bytes",
        "bits/byte", "byte ppl", "words", "word ppl", "top-1",
    ]  # fmt: skip
    rows = [_metrics_row(doc.name, doc.result()) for doc in result.documents]
    if len(result.documents) > 1:
        rows.append(_metrics_row("total", result.totals))
    model = f"model {result.model}" + (f": {model_description}" if model_description else "")
    windows = (
        f"convention {result.convention}, window {result.window}, stride {result.stride}, "
        f"prefix {result.prefix}"
    )
    return f"{model}\n{windows}\n{format_table(headers, rows)}"


def format_comparison(comparison: ComparisonResult) -> str:
    """Both models side by side, bits per byte first; then, with a shared tokenizer, the
    per-token ``KL(A || B)`` summary and the tokens whose loss changed most, all in nats (see
    :mod:`crossent.comparison`)."""
    from crossent.comparison import KL_FORMULA, KL_NAME, TOKEN_UNIT  # loaded with the result

    headers = [
        "model", "bits/byte", "byte ppl", "word ppl", "tokens", "nats/token", "perplexity",
        "top-1",
    ]  # fmt: skip
    rows = []
    keys = [
        "bits_per_byte", "byte_perplexity", "word_perplexity", "tokens", "nats_per_token",
        "perplexity", "accuracy",
    ]  # fmt: skip
    for label, result in (("A", comparison.a), ("B", comparison.b)):
        cells = format_metrics(result.totals)
        rows.append([f"{label}: {result.model}", *(cells[key] for key in keys)])
    parts = [format_table(headers, rows)]
    kl = comparison.kl
    if kl is None:
        parts.append("The tokenizers differ: no per-token comparison (bits per byte still is).")
        return "\n\n".join(parts)
    percentiles = ", ".join(f"{name} {value:.4g}" for name, value in kl.percentiles.items())
    parts.append(
        f"{KL_FORMULA} per token, {TOKEN_UNIT} (A the reference), over {kl.tokens} tokens:\n"
        f"mean {kl.mean:.6g}; {percentiles}\ntop-1 agreement: {100 * kl.top1_agreement:.2f}%"
    )
    names = [document.name for document in comparison.a.documents]
    largest = [
        [
            names[diff.document],
            str(diff.position),
            repr(diff.text),
            f"{diff.nats_a:.4f}",
            f"{diff.nats_b:.4f}",
            f"{diff.nats_b - diff.nats_a:+.4f}",
            f"{diff.kl:.4f}",
        ]
        for diff in comparison.largest
    ]
    headers = [
        "document", "position", "token", f"{TOKEN_UNIT} A", f"{TOKEN_UNIT} B",
        f"B - A, {TOKEN_UNIT}", f"{KL_NAME}, {TOKEN_UNIT}",
    ]  # fmt: skip
    parts.append(f"largest changes in loss -ln p, {TOKEN_UNIT}:\n" + format_table(headers, largest))
    return "\n\n".join(parts)


def format_bench(rows: Sequence[BenchRow]) -> str:
    """A plain-text table, then a warning when some times spread widely, then a legend.

    Each row shows the repeat count and the minimum, median and maximum of the timed runs;
    ``x torch`` divides the median time (and the peak memory) by the naive PyTorch loss's on the
    same case. When an implementation's slowest run took more than
    :data:`crossent.bench.SPREAD_WARNING` times its fastest, one line under the table says so.
    The legend names every implementation shown and says what it is.
    """
    from crossent.bench import SPREAD_WARNING  # loaded with the rows

    headers = [
        "case", "impl", "runs", "min s", "median s", "max s", "x torch", "peak MiB", "x torch",
        "loss", "|err|",
    ]  # fmt: skip
    baseline = {row.case: row for row in rows if row.implementation == "torch"}
    lines = []
    for row in rows:
        reference = baseline.get(row.case)
        lines.append(
            [
                row.case.label,
                row.implementation,
                str(row.repeats),
                f"{min(row.times):.3f}",
                f"{row.seconds:.3f}",
                f"{max(row.times):.3f}",
                f"{row.seconds / reference.seconds:.2f}" if reference else "-",
                f"{row.peak_mib:.0f}",
                f"{row.peak_mib / reference.peak_mib:.3f}"
                if reference and reference.peak_mib > 0
                else "-",
                "-" if row.loss != row.loss else f"{row.loss:.6f}",
                "-" if row.error != row.error else f"{row.error:.1e}",
            ]
        )
    parts = [format_table(headers, lines)]
    spread = [row for row in rows if row.spread > SPREAD_WARNING]
    if spread:
        named = ", ".join(f"{row.implementation} {row.spread:.1f}x" for row in spread)
        parts.append(
            f"warning: the slowest run took more than {SPREAD_WARNING:g}x the fastest ({named}), "
            "from a busy machine or runs too short to time: compare medians with care, or rerun "
            "with more --repeats"
        )
    names = list(dict.fromkeys(row.implementation for row in rows))
    width = max(len(name) for name in names) if names else 0
    descriptions = {row.implementation: row.description for row in rows}
    legend = [f"  {name.ljust(width)}  {descriptions[name]}" for name in names]
    parts.append("\n".join(["implementations:", *legend]))
    return "\n\n".join(parts)
