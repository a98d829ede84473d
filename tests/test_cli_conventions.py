"""``crossent eval --convention``: the options refused before a model loads, and the outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

TEXT = (
    "The tide came in slowly over the flats, and the birds rose in one grey cloud. "
    "Nobody on the pier said a word; the fishermen coiled their lines and waited. "
) * 5


def _crossent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crossent", *args], capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--convention", "llama.cpp", "--stride", "8"], "--stride 8 does not apply to"),
        (["--convention", "llama.cpp", "--window", "2"], "--window 2 is too small for"),
        (["--convention", "hf-stride", "--window", "1"], "--window 1 is too small for"),
        (["--convention", "wikitext"], "argument --convention: invalid choice: 'wikitext'"),
    ],
)  # fmt: skip
def test_options_a_convention_cannot_use_are_named(args: list[str], message: str) -> None:
    done = _crossent("eval", *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_llama_cpp_is_named_in_every_output(tmp_path: Path) -> None:
    text = tmp_path / "tide.txt"
    text.write_text(TEXT, encoding="utf-8")
    out, report = tmp_path / "r.json", tmp_path / "r.html"
    done = _crossent(
        "eval", "--data", str(text), "--convention", "llama.cpp", "--window", "64",
        "--json", str(out), "--report", str(report), "--by-position",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1] == "convention llama.cpp, window 64, stride 64, prefix none"
    record = json.loads(out.read_text(encoding="utf-8"))
    block = record["convention"]
    # llama.cpp scores chunk positions 33-63: contexts of 33 to 63 tokens, two buckets
    buckets = [(row["first"], row["last"], row["tokens"]) for row in record["by_position"]]
    chunks = block["windows"]
    assert buckets == [(32, 63, 31 * chunks)]
    assert "loss by position in the window" in done.stdout
    assert block["name"] == "llama.cpp"
    assert block["scored_chunk_positions"] == [33, 63]
    ppl, plus_minus = block["perplexity"], block["perplexity_uncertainty"]
    assert f"PPL = {ppl:.4f} +/- {plus_minus:.5f}" in done.stdout
    assert f"{block['tokens_scored']} tokens scored, {block['tokens_unscored']} left" in done.stdout
    page = report.read_text(encoding="utf-8")
    assert '<td data-metric="convention.name">llama.cpp</td>' in page
    assert f'<td data-metric="convention.tokens_scored">{block["tokens_scored"]}</td>' in page
    assert '<svg class="positions"' in page
    assert '<td data-metric="context">32-63</td>' in page
