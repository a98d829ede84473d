"""The rows of an evaluation's tables, on the terminal and in the page: a lone document's row is
named by it (its numbers are the totals), several documents get a ``total`` row too; and the
model's description is shown beside its name."""

from __future__ import annotations

from dataclasses import replace

from crossent.report.evaluation_page import render_evaluation_report
from crossent.report.numbers import format_metrics
from crossent.report.table import format_evaluation
from report.parsing import ParsedPage
from report.results import DOCUMENTS, NATS_A, example_evaluation

DESCRIPTION = "SmolLM2-135M-Instruct, Q4_1 GGUF (4-bit, 5.74 bits per weight) dequantised"


def _single() -> tuple[str, list[float]]:
    """The first document of results.py alone, and its tokens' nats."""
    name = next(iter(DOCUMENTS))
    return name, NATS_A[: len(DOCUMENTS[name])]


def test_a_lone_document_s_row_is_named_by_it_on_the_terminal() -> None:
    name, nats = _single()
    full = example_evaluation("m", NATS_A, with_tokens=False)
    result = replace(full, documents=full.documents[:1], totals=full.documents[0].result())
    lines = format_evaluation(result, model_description=DESCRIPTION).splitlines()
    assert lines[0] == f"model m: {DESCRIPTION}"
    assert lines[1] == "convention lm-eval, window 64, stride 32, prefix bos"
    rows = lines[4:]
    assert len(rows) == 1
    assert rows[0].startswith(name)
    assert "total" not in "\n".join(lines)
    assert f"{sum(nats) / len(nats):.4f}" in rows[0]


def test_several_documents_get_their_rows_and_a_total() -> None:
    result = example_evaluation("m", NATS_A, with_tokens=False)
    lines = format_evaluation(result).splitlines()
    assert lines[0] == "model m"
    rows = lines[4:]
    assert [row.split("  ")[0] for row in rows] == [*DOCUMENTS, "total"]
    assert format_metrics(result.totals)["nats_per_token"] in rows[-1]


def test_the_page_names_a_lone_document_and_describes_the_model() -> None:
    full = example_evaluation("m", NATS_A, with_tokens=False)
    single = replace(full, documents=full.documents[:1], totals=full.documents[0].result())
    page = ParsedPage(render_evaluation_report(single, model_description=DESCRIPTION))
    assert [row[0] for row in page.rows["documents"]] == ["document", next(iter(DOCUMENTS))]
    assert ["weights", DESCRIPTION] in page.rows["summary"]
    several = ParsedPage(render_evaluation_report(full))
    assert [row[0] for row in several.rows["documents"]] == ["document", *DOCUMENTS, "total"]
    assert not any(row[0] == "weights" for row in several.rows["summary"])
