"""The plot and HTML page of a training run, made from its evaluation records.

The training loop writes one :class:`crossent.training.records.EvalRecord` per evaluation as a
line of ``metrics.jsonl``; this module presents such records, without computing any loss or
choosing anything itself:

* :func:`plot_losses` writes the chapter-5 plot of LLMs-from-scratch as a PNG: training and
  validation loss in nats per token against steps, with tokens seen on a second, top axis, and
  the lowest validation loss marked. The training curve is the training log (every
  ``log_every`` steps) when given, else the evaluations' training losses; a run that minimises
  something other than the cross-entropy (a teacher) also gets its objective, labelled as such.
* :func:`losses_svg` is the same figure as SVG text that a page can hold inline.
* :func:`render_training_report` is one self-contained HTML page (see
  :mod:`crossent.report.page` for what self-contained means) with the curves, a table of the
  records, the run's configuration and an optional summary.
* :func:`write_training_pages` writes both into a finished run's folder (``crossent train``
  calls it once the run ends).

Conventions:

* **The best evaluation**, marked on the figure and the page, is
  :func:`crossent.training.records.best_evaluation`'s. Non-finite losses (a diverged run) are
  drawn as gaps in the curves.
* **Tokens seen** is placed on the top axis through the records' (step, tokens seen) points,
  and (0, 0) when the first record is after step 0, linearly between them and beyond the first
  and last pieces: exact at each evaluation even when the tokens per step vary. Records must
  therefore be in increasing order of both step and tokens seen.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from html import escape
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter
from numpy.typing import ArrayLike, NDArray

from crossent.files import write_bytes_atomically, write_text_atomically
from crossent.metrics import perplexity
from crossent.report.figures import inline_svg, new_figure, png_bytes
from crossent.report.page import BASE_STYLE, cell, page
from crossent.training.records import EvalRecord, TrainRecord, best_evaluation

if TYPE_CHECKING:
    from crossent.training.result import TrainResult

_FIGURE_SIZE_INCHES = (7.5, 4.5)
_TRAIN_COLOUR = "#2f6db5"
_VALIDATION_COLOUR = "#d1393b"
_OBJECTIVE_COLOUR = "#7a7a7a"

_STYLE = (
    BASE_STYLE + "figure.losses{margin:.4rem 0}"
    "figure.losses svg{display:block;width:100%;max-width:54rem;height:auto}"
    "table.records{display:block;overflow-x:auto}"
    "tr.best td{background:#fdf0bd;font-weight:600}"
    "table.settings td{text-align:left;overflow-wrap:anywhere}"
)

# The columns of the records table: (data-metric, header, cell text).
_COLUMNS: tuple[tuple[str, str, Callable[[EvalRecord], str]], ...] = (
    ("step", "step", lambda r: str(r.step)),
    ("tokens_seen", "tokens seen", lambda r: str(r.tokens_seen)),
    ("train_loss", "train loss, nats/token", lambda r: f"{r.train_loss:.4f}"),
    (
        "train_objective",
        "train objective, nats/token",
        lambda r: "" if r.train_objective is None else f"{r.train_objective:.4f}",
    ),
    ("val_loss", "val loss, nats/token", lambda r: f"{r.val_loss:.4f}"),
    ("val_bits_per_byte", "val bits/byte", lambda r: f"{r.val_bits_per_byte:.4f}"),
    ("val_perplexity", "val perplexity", lambda r: f"{perplexity(r.val_loss):.3f}"),
    ("lr", "learning rate", lambda r: f"{r.lr:.3g}"),
    ("elapsed_s", "elapsed, s", lambda r: f"{r.elapsed_s:.1f}"),
)


def write_training_pages(result: TrainResult) -> None:
    """``losses.png`` and ``report.html`` of a run (finished or interrupted), into its folder."""
    out, best, split, config = result.out, result.best, result.split, result.config
    plot_losses(result.records, out / "losses.png", train_log=result.train_log)
    stopped = result.stopped
    if stopped == "interrupted":
        stopped = f"interrupted at step {result.step} (last/ is at step {result.records[-1].step})"
    summary = {
        "stopped": stopped,
        "best step": best.step,
        "best checkpoint": str(out / "best"),
        "parameters": result.parameters,
        "vocabulary": f"{result.vocab_size} tokens",
        "training text": f"{split.train_bytes} bytes, {result.train_tokens} tokens",
        "validation text": f"{split.validation_bytes} bytes, {result.validation_tokens} tokens",
    }
    settings: dict[str, object] = config.to_dict()
    bpe = config.init is None and config.teacher is None and config.tokenizer == "bpe"
    if bpe and result.vocab_size != config.vocab_size:
        settings["vocab_size"] = (
            f"{config.vocab_size} asked for, {result.vocab_size} built (the training text "
            "had no more pairs to merge)"
        )
    page = render_training_report(
        result.records, settings, summary=summary, train_log=result.train_log
    )
    write_text_atomically(out / "report.html", page)


def plot_losses(
    records: Sequence[EvalRecord],
    path: str | os.PathLike[str],
    *,
    train_log: Sequence[TrainRecord] = (),
) -> None:
    """Write the loss curves of ``records`` (and ``train_log``) to ``path`` as a PNG, atomically.

    Training and validation loss (nats per token) against steps on the bottom axis and tokens
    seen on the top one, the lowest validation loss marked (see the module docstring).

    Raises:
        ValueError: if ``records`` is empty or not in increasing order of step and tokens seen.
    """
    write_bytes_atomically(path, png_bytes(_figure(records, train_log)))


def losses_svg(records: Sequence[EvalRecord], train_log: Sequence[TrainRecord] = ()) -> str:
    """The figure of :func:`plot_losses` as an ``<svg>`` element to put inside an HTML page.

    The element has no style sheet or ``style`` attributes (matplotlib's are turned into SVG
    presentation attributes), so a Content-Security-Policy that allows no inline style shows it
    as drawn. Text is drawn as paths, so it looks the same without any font installed. The two
    curves are the groups with ids ``train-loss`` and ``validation-loss`` (and ``train-objective``
    when the run records one), the marker of the best evaluation ``best-validation``.

    Raises:
        ValueError: as :func:`plot_losses`.
    """
    label = "Training and validation loss, nats per token, against steps and tokens seen"
    return inline_svg(_figure(records, train_log), label)


def render_training_report(
    records: Sequence[EvalRecord],
    config: Mapping[str, object],
    *,
    summary: Mapping[str, object] | None = None,
    title: str | None = None,
    train_log: Sequence[TrainRecord] = (),
) -> str:
    """One self-contained HTML page showing a training run.

    The page holds the best evaluation's validation bits per byte as its headline, the
    ``summary`` if given, the loss curves of :func:`losses_svg`, a table with one row per record
    (step, tokens seen, training and validation loss in nats per token, validation bits per
    byte, validation perplexity ``e ** val_loss``, learning rate, elapsed seconds) in which the
    best evaluation's row has the class ``best``, and ``config`` as a table of keys and values.
    Without records the page says so and has neither curves nor records table.

    Args:
        records: the run's evaluations, in order of step.
        config: the run's configuration; a string value is shown as it is, any other value as
            JSON (anything JSON cannot hold, such as a path, as its ``str``).
        summary: facts about the run shown at the top, such as where the best checkpoint is or
            why the run stopped; values are shown as in ``config``.
        title: the page title; default ``"Training run"``.
        train_log: the training loss every ``log_every`` steps, drawn as the training curve.

    Returns:
        The page; write it with :func:`crossent.files.write_text_atomically`.

    Raises:
        ValueError: if ``records`` is not in increasing order of step and tokens seen.
    """
    title = title if title is not None else "Training run"
    parts = [f"<h1>{escape(title)}</h1>"]
    best = best_evaluation(records)
    if not records:
        parts.append('<p class="note">No evaluation was recorded.</p>')
    elif best is None:
        parts.append('<p class="note">No evaluation has a finite validation loss.</p>')
    else:
        record = records[best]
        parts.append(
            f'<p class="headline"><b>{record.val_bits_per_byte:.4f}</b> bits per byte on the '
            f"validation text at step {record.step}, the lowest validation loss "
            f"({record.val_loss:.4f} nats per token)</p>"
        )
    if summary:
        parts += ["<h2>Summary</h2>", _settings_table(summary, "summary")]
    if records:
        parts += [
            "<h2>Loss</h2>",
            f'<figure class="losses">{losses_svg(records, train_log)}</figure>',
            "<h2>Evaluations</h2>",
            _records_table(records, best),
        ]
    parts += ["<h2>Configuration</h2>", _settings_table(config, "config")]
    return page(title, "\n".join(parts), style=_STYLE)


def _token_axis_points(records: Sequence[EvalRecord]) -> list[tuple[int, int]]:
    """The (step, tokens seen) points of ``records``, from (0, 0) when they start after step 0."""
    if not records:
        raise ValueError("there are no evaluation records to plot")
    points = [(record.step, record.tokens_seen) for record in records]
    if points[0][0] > 0:
        points.insert(0, (0, 0))
    for (step, tokens), (next_step, next_tokens) in itertools.pairwise(points):
        if not (next_step > step and next_tokens > tokens):
            raise ValueError(
                "evaluation records must be in increasing order of step and tokens seen: step "
                f"{next_step} ({next_tokens} tokens seen) follows step {step} ({tokens})"
            )
    return points


def _piecewise_linear(
    xs: NDArray[np.float64], ys: NDArray[np.float64]
) -> Callable[[ArrayLike], NDArray[np.float64]]:
    """The function through the points (xs, ys), extended beyond them by its end pieces."""

    def through(values: ArrayLike) -> NDArray[np.float64]:
        at = np.asarray(values, dtype=np.float64)
        below = ys[0] + (at - xs[0]) * (ys[1] - ys[0]) / (xs[1] - xs[0])
        above = ys[-1] + (at - xs[-1]) * (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
        inside = np.interp(at, xs, ys)
        return np.where(at < xs[0], below, np.where(at > xs[-1], above, inside))

    return through


def _figure(records: Sequence[EvalRecord], train_log: Sequence[TrainRecord] = ()) -> Figure:
    points = np.array(_token_axis_points(records), dtype=np.float64)
    figure = new_figure(*_FIGURE_SIZE_INCHES)
    axes = figure.add_subplot()
    steps = [record.step for record in records]
    logged: Sequence[TrainRecord | EvalRecord] = train_log or records
    (train,) = axes.plot(
        [r.step for r in logged],
        [r.train_loss for r in logged],
        color=_TRAIN_COLOUR,
        label="training loss (cross-entropy)",
    )
    train.set_gid("train-loss")
    if any(r.train_objective is not None for r in logged):
        (objective,) = axes.plot(
            [r.step for r in logged],
            [math.nan if r.train_objective is None else r.train_objective for r in logged],
            color=_OBJECTIVE_COLOUR,
            linestyle=":",
            label="training objective (the loss minimised)",
        )
        objective.set_gid("train-objective")
    (validation,) = axes.plot(
        steps,
        [r.val_loss for r in records],
        color=_VALIDATION_COLOUR,
        linestyle="-.",
        label="validation loss",
    )
    validation.set_gid("validation-loss")
    best = best_evaluation(records)
    if best is not None:
        record = records[best]
        (marker,) = axes.plot(
            [record.step],
            [record.val_loss],
            linestyle="none",
            marker="o",
            markersize=9,
            markerfacecolor="none",
            markeredgecolor=_VALIDATION_COLOUR,
            markeredgewidth=1.5,
            label=f"lowest validation loss, {record.val_loss:.4f} at step {record.step}",
        )
        marker.set_gid("best-validation")
    axes.set_xlabel("step")
    axes.set_ylabel("loss, nats per token")
    axes.grid(alpha=0.3)
    axes.legend()
    if len(points) > 1:  # one evaluation at step 0 has seen no tokens: no scale to show
        top = axes.secondary_xaxis(
            "top",
            functions=(
                _piecewise_linear(points[:, 0], points[:, 1]),
                _piecewise_linear(points[:, 1], points[:, 0]),
            ),
        )
        top.xaxis.set_major_formatter(EngFormatter())
        top.set_xlabel("tokens seen")
    return figure


def _shown(value: object) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _settings_table(settings: Mapping[str, object], kind: str) -> str:
    rows = "".join(
        f"<tr><th>{escape(str(key))}</th><td>{escape(_shown(value))}</td></tr>"
        for key, value in settings.items()
    )
    return f'<table class="settings {kind}"><tbody>{rows}</tbody></table>'


def _records_table(records: Sequence[EvalRecord], best: int | None) -> str:
    objective = any(record.train_objective is not None for record in records)
    columns = [column for column in _COLUMNS if objective or column[0] != "train_objective"]
    head = "".join(f"<th>{escape(header)}</th>" for _, header, _ in columns)
    rows = []
    for index, record in enumerate(records):
        marked = ' class="best" title="lowest validation loss"' if index == best else ""
        cells = "".join(cell(show(record), metric=key) for key, _, show in columns)
        rows.append(f"<tr{marked}>{cells}</tr>")
    return (
        f'<table class="records"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
