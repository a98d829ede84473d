"""Plain-text tables for the terminal."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from crossent.metrics import NLLResult
from crossent.report.numbers import format_metrics_with_errors

if TYPE_CHECKING:  # importing evaluate imports transformers, which the benchmark does not need
    from crossent.bench import BenchRow
    from crossent.comparison import ComparisonResult, KLSummary, ModelsComparison
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
    return [name, *format_metrics_with_errors(metrics).values()]


def format_evaluation(result: EvaluationResult, *, model_description: str | None = None) -> str:
    """The model and the windows, then the table: one row per document, named by it, and a
    ``total`` row when there are several (a lone document's row is its total). Nats and bits
    per token, perplexity and bits per byte carry ``± one standard error`` per token
    (:mod:`crossent.uncertainty`); :func:`format_uncertainty` says the rest.

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


def format_uncertainty(result: EvaluationResult) -> list[str]:
    """What the ± of the table are, and with several documents the bootstrap over them.

    Example line: ``over documents (bootstrap, 1000 resamples, seed 0): 0.8822 ± 0.0120
    bits/byte, 95% interval 0.8601 to 0.9068``.
    """
    lines = ["\u00b1: one standard error over tokens (delta method for perplexity, bits/byte)"]
    boot = result.bootstrap
    if boot is not None:
        shown = [(boot.bits_per_byte, "bits/byte", 4), (boot.nats_per_token, "nats/token", 4)]
        shown.append((boot.perplexity, "perplexity", 3))
        parts = [
            f"{estimate.value:.{digits}f} \u00b1 {estimate.standard_error:.{digits}f} {unit} "
            f"({100 * estimate.level:g}% interval {estimate.low:.{digits}f} to "
            f"{estimate.high:.{digits}f})"
            for estimate, unit, digits in shown
            if estimate is not None
        ]
        lines.append(
            f"over documents (bootstrap of {boot.documents} documents, {boot.resamples} "
            f"resamples, seed {boot.seed}): " + "; ".join(parts)
        )
    return lines


def format_comparison(comparison: ComparisonResult) -> str:
    """Both models side by side, bits per byte first (± one standard error per token), the
    paired difference in a sentence; then, with a shared tokenizer, llama.cpp's per-token
    statistics (``KL(A || B)``, top-1 agreement, Δp, the perplexity ratio) and the tokens whose
    loss changed most, all in nats (see :mod:`crossent.comparison`)."""
    from crossent.comparison import KL_NAME, TOKEN_UNIT  # loaded with the result

    named = [("A", comparison.a), ("B", comparison.b)]
    parts = [_models_table(named), _difference_line(comparison)]
    kl = comparison.kl
    if kl is None:
        parts.append("The tokenizers differ: no per-token comparison (bits per byte still is).")
        if comparison.largest_segments:
            parts.append(_segments_table(comparison))
        return "\n\n".join(parts)
    parts.append(format_kl(kl))
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


def _segments_table(comparison: ComparisonResult) -> str:
    """The stretches of text both models score whole whose loss differs most, in nats."""
    names = [document.name for document in comparison.a.documents]
    rows = [
        [
            names[segment.document],
            str(segment.start),
            repr(segment.text),
            f"{segment.nats_a:.4f}",
            f"{segment.nats_b:.4f}",
            f"{segment.nats_b - segment.nats_a:+.4f}",
        ]
        for segment in comparison.largest_segments
    ]
    headers = ["document", "byte", "text", "nats A", "nats B", "B - A, nats"]
    return (
        "where they differ most, on text both tokenizations cut at the same bytes (nats):\n"
        + format_table(headers, rows)
    )


def _models_table(named: Sequence[tuple[str, EvaluationResult]]) -> str:
    headers = [
        "model", "bits/byte", "byte ppl", "word ppl", "tokens", "nats/token", "perplexity",
        "top-1",
    ]  # fmt: skip
    keys = [
        "bits_per_byte", "byte_perplexity", "word_perplexity", "tokens", "nats_per_token",
        "perplexity", "accuracy",
    ]  # fmt: skip
    rows = []
    for label, result in named:
        cells = format_metrics_with_errors(result.totals)
        rows.append([f"{label}: {result.model}", *(cells[key] for key in keys)])
    return format_table(headers, rows) + "\n\u00b1: one standard error over tokens"


def _difference_line(comparison: ComparisonResult) -> str:
    if comparison.difference is None:
        return "Too little text to pair the two models' bits per byte (fewer than two units)."
    return comparison.difference.sentence()


def format_kl(kl: KLSummary) -> str:
    """llama.cpp's ``--kl-divergence`` statistics, in nats and percent; ± is one standard
    error."""
    from crossent.comparison import KL_FORMULA, TOKEN_UNIT  # loaded with the result

    percentiles = ", ".join(f"{name} {value:.4g}" for name, value in kl.percentiles.items())
    lines = [
        f"{KL_FORMULA} per token, {TOKEN_UNIT} (A the reference), over {kl.tokens} tokens:",
        f"mean {kl.mean:.6g}"
        + ("" if kl.mean_se is None else f" \u00b1 {kl.mean_se:.2g}")
        + f"; {percentiles}",
        f"top-1 agreement: {100 * kl.top1_agreement:.2f}%"
        + ("" if kl.top1_agreement_se is None else f" \u00b1 {100 * kl.top1_agreement_se:.2f}%"),
    ]
    if kl.delta_p is not None:
        delta = kl.delta_p
        shown = ", ".join(f"{key} {100 * value:+.3f}%" for key, value in delta.percentiles.items())
        lines.append(
            f"\u0394p = p_B(token) - p_A(token): mean "
            f"{_pm(100 * delta.mean, _times(delta.mean_se), '+.3f')}%, "
            f"RMS {_pm(100 * delta.rms, _times(delta.rms_se), '.3f')}%; {shown}"
        )
    if kl.perplexity is not None:
        ppl = kl.perplexity
        correlation = (
            "" if ppl.correlation is None else f", correlation {100 * ppl.correlation:.2f}%"
        )
        lines.append(
            f"ln(PPL(B)/PPL(A)) = {_pm(ppl.ln_ratio, ppl.ln_ratio_se, '+.6f')}; PPL(B)/PPL(A) = "
            f"{_pm(ppl.ratio, ppl.ratio_se, '.6f')}; "
            f"PPL(A) {_pm(ppl.perplexity_a, ppl.perplexity_a_se, '.4f')}, "
            f"PPL(B) {_pm(ppl.perplexity_b, ppl.perplexity_b_se, '.4f')}{correlation}"
        )
    return "\n".join(lines)


def _times(value: float | None) -> float | None:
    return None if value is None else 100 * value


def _pm(value: float, error: float | None, spec: str) -> str:
    return f"{value:{spec}}" + ("" if error is None else f" \u00b1 {abs(error):{spec.lstrip('+')}}")


def format_models_comparison(comparison: ModelsComparison) -> str:
    """Several models: a table ranked by bits per byte with each one's 95% interval (per token,
    and over documents where there are several), each model against the reference in a
    sentence, and llama.cpp's per-token statistics for each pair sharing a tokenizer."""
    from crossent.uncertainty import z_value  # loaded with the result

    z = z_value()
    reference = comparison.results[0]
    rows = []
    for rank, index in enumerate(comparison.ranking(), start=1):
        result = comparison.results[index]
        totals = result.totals
        value, error = totals.bits_per_byte, totals.bits_per_byte_se
        interval = (
            "-"
            if value is None or error is None
            else (f"{value - z * error:.4f} to {value + z * error:.4f}")
        )
        boot = None if result.bootstrap is None else result.bootstrap.bits_per_byte
        rows.append([
            str(rank),
            result.model + (" (reference)" if index == 0 else ""),
            format_metrics_with_errors(totals)["bits_per_byte"],
            interval,
            "-" if boot is None
            else f"{boot.standard_error:.4f} ({boot.low:.4f} to {boot.high:.4f})",
            str(result.window),
            f"{totals.nats_per_token:.4f}",
        ])  # fmt: skip
    headers = [
        "rank", "model", "bits/byte", "95% interval", "\u00b1 over documents (95%)", "window",
        "nats/token",
    ]  # fmt: skip
    parts = [
        format_table(headers, rows) + "\n\u00b1: one standard error (over tokens, and by a "
        "bootstrap over documents)",
        f"against the reference, {reference.model}:\n"
        + "\n".join(_difference_line(pair) for pair in comparison.pairs),
    ]
    for pair in comparison.pairs:
        if pair.kl is not None:
            parts.append(
                f"{reference.model} (A) against {pair.b.model} (B):\n" + format_kl(pair.kl)
            )
    return "\n\n".join(parts)


def format_bench(rows: Sequence[BenchRow]) -> str:
    """A plain-text table, then a warning when some times spread widely, then a legend.

    Each row shows the repeat count and the minimum, median and maximum of the timed runs;
    ``x torch`` divides the median time (and the peak memory) by the naive PyTorch loss's on the
    same case, ``x floor`` the median time by the floor's (the three matrix products alone).
    When an implementation's slowest run took more than :data:`crossent.bench.SPREAD_WARNING`
    times its fastest, one line under the table says so.
    The legend names every implementation shown and says what it is.
    """
    from crossent.bench import SPREAD_WARNING  # loaded with the rows

    headers = [
        "case", "impl", "runs", "min s", "median s", "max s", "x torch", "x floor", "peak MiB",
        "x torch", "loss", "|err|",
    ]  # fmt: skip
    baseline = {row.case: row for row in rows if row.implementation == "torch"}
    floor = {row.case: row for row in rows if row.implementation == "floor"}
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
                f"{row.seconds / floor[row.case].seconds:.2f}" if row.case in floor else "-",
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
