"""What a user of ``crossent eval``, ``compare``, ``explain`` and ``bench`` reads and meets at the
start: help that shows every default, and bad input refused in one line naming the flag.

The help tests build the parser in this process (``crossent CMD --help`` importing no torch is
checked in test_architecture.py); the input tests run ``python -m crossent`` as a user does.
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crossent.cli import build_parser
from crossent.cli.arguments import MODEL_HELP, WINDOW_CAP
from crossent.evaluation import DEFAULT_WINDOW_CAP
from crossent.models import HFCausalLM
from crossent.models.gguf import embedded_gguf, file_type_of
from report.parsing import ParsedPage

COMMANDS = ("eval", "compare", "explain", "bench")
# Options whose default is decided later (from the model, the machine, the terminal): their help
# must say what it is, since argparse's default is None.
IMPLICIT_DEFAULTS = {
    "eval": {"--model", "--data", "--max-chars", "--window", "--stride", "--prefix", "--device",
             "--progress"},
    "compare": {"--data", "--max-chars", "--window", "--stride", "--prefix", "--device",
                "--progress"},
    "explain": {"--model", "--prefix", "--device", "--temperature"},
    "bench": {"--tokens", "--impl"},
}  # fmt: skip


def _subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    (commands,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub: argparse.ArgumentParser = commands.choices[command]
    return sub


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_has_help_and_shows_its_default(command: str) -> None:
    parser = _subparser(command)
    text = " ".join(parser.format_help().split())  # the help as one line, unwrapped
    for action in parser._actions:
        if not action.option_strings:
            continue
        flag = max(action.option_strings, key=len)
        assert action.help, f"{command} {flag} has no help line"
        default = action.default
        if default not in (None, False, argparse.SUPPRESS):
            assert f"(default: {default})" in text, f"{command} {flag} hides its default"
        elif flag in IMPLICIT_DEFAULTS[command]:
            help_text = " ".join(parser._get_formatter()._expand_help(action).split())
            assert "default" in help_text, f"{command} {flag} does not say its default"


def test_model_help_names_every_kind_of_model_and_the_default_quantisation() -> None:
    for kind in ("smollm2-135m", "RUN/best", "RUN/last", "config.json", ".gguf", "Hub"):
        assert kind in MODEL_HELP
    assert "transformers' cache" in MODEL_HELP
    # --help cannot read the GGUF file (that needs numpy); what it says must be the file's type.
    file_type = file_type_of(embedded_gguf()).file_type
    assert f"4-bit {file_type} GGUF" in MODEL_HELP
    eval_help = " ".join(_subparser("eval").format_help().split())
    assert "(default: smollm2-135m)" in eval_help
    compare_help = " ".join(_subparser("compare").format_help().split())
    assert "default: smollm2-135m" not in compare_help  # compare requires --model twice


def test_the_window_cap_in_the_help_is_the_library_s() -> None:
    assert WINDOW_CAP == DEFAULT_WINDOW_CAP
    assert f"at most {DEFAULT_WINDOW_CAP}" in " ".join(_subparser("eval").format_help().split())


def _crossent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crossent", *args], capture_output=True, text=True, check=False
    )


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """A text and a link to it, a file that is not UTF-8, JSON Lines, a folder of empty files, a
    training run."""
    (tmp_path / "notes.txt").write_text("Some notes.\n", encoding="utf-8")
    (tmp_path / "bad.txt").write_bytes(b"ok\xff")
    (tmp_path / "lines.jsonl").write_text('{"text": "hi"}\n', encoding="utf-8")
    (tmp_path / "cut.txt.gz").write_bytes(gzip.compress(b"Some notes.\n" * 100)[:-12])
    pq.write_table(pa.table({"body": ["hi"]}), tmp_path / "rows.parquet")
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "one.txt").write_text("One.", encoding="utf-8")
    (tmp_path / "empties").mkdir()
    (tmp_path / "empties" / "a.txt").write_bytes(b"")
    (tmp_path / "empties" / "b.txt").write_bytes(b"")
    (tmp_path / "link.json").symlink_to(tmp_path / "notes.txt")
    for checkpoint in ("best", "last"):  # the layout crossent.training.checkpoints writes
        (tmp_path / "run" / checkpoint).mkdir(parents=True)
        (tmp_path / "run" / checkpoint / "crossent_gpt.json").write_text("{}")
    return tmp_path


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (("--data", "{tmp}/notes.txt", "--field", "text"),
         "{tmp}/notes.txt is not JSON Lines, Parquet or a datasets folder, so it has no field "
         "'text' (--field NAME applies only to .jsonl and .parquet files, datasets folders and "
         "stdin)"),
        (("--data", "{tmp}/texts", "--field", "text"),
         "no input is JSON Lines, Parquet or a datasets folder, so field 'text' names nothing "
         "(--field NAME applies only to .jsonl and .parquet files, datasets folders and stdin)"),
        (("--data", "{tmp}/lines.jsonl"),
         "{tmp}/lines.jsonl is JSON Lines: name the field that holds each line's text "
         "(--field NAME)"),
        (("--data", "{tmp}/bad.txt"),
         "{tmp}/bad.txt is not valid UTF-8: byte 0xff at offset 2 (--errors replace substitutes "
         "U+FFFD)"),
        (("--data", "{tmp}/cut.txt.gz"),
         "{tmp}/cut.txt.gz is not a valid gzip file: compressed file ended before the "
         "end-of-stream marker was reached"),
        (("--data", "{tmp}/rows.parquet", "--field", "text"),
         "{tmp}/rows.parquet has no column 'text' (its columns: body) (--field NAME)"),
        (("--data", "{tmp}/empties"),
         "directory {tmp}/empties has no text to read: every file in it is empty (a.txt, b.txt)"),
        (("--data", "{tmp}/notes.txt", "--json", "{tmp}/notes.txt/out.json"),
         "output {tmp}/notes.txt/out.json: {tmp}/notes.txt is a file, not a folder"),
        (("--data", "{tmp}/notes.txt", "--json", "{tmp}/link.json"),
         "output {tmp}/link.json is also input {tmp}/notes.txt; it would be overwritten"),
        (("--data", "{tmp}/texts", "--report", "{tmp}/texts/report.html"),
         "output {tmp}/texts/report.html is inside input {tmp}/texts, which is read as text; "
         "write it elsewhere"),
        (("--data", "{tmp}/notes.txt", "--model", "{tmp}/run"),
         "'{tmp}/run' is a training run folder, not a model: load its checkpoint {tmp}/run/best "
         "or {tmp}/run/last"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_naming_the_flag(
    inputs: Path, args: tuple[str, ...], complaint: str
) -> None:
    done = _crossent("eval", *(arg.format(tmp=inputs) for arg in args))
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [f"crossent: error: {complaint.format(tmp=inputs)}"]
    assert "errors=" not in done.stderr
    assert "field=" not in done.stderr
    assert (inputs / "notes.txt").read_text(encoding="utf-8") == "Some notes.\n"  # never written


def test_explain_creates_the_folders_of_its_outputs(tmp_path: Path) -> None:
    json_file, page = tmp_path / "a" / "b" / "toy.json", tmp_path / "c" / "toy.html"
    done = _crossent("explain", "--json", str(json_file), "--html", str(page))
    assert done.returncode == 0, done.stderr
    assert json.loads(json_file.read_text(encoding="utf-8"))
    assert page.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert "seed 000" not in done.stdout
    assert "three animals" in done.stdout


def test_eval_describes_the_model_names_its_document_and_creates_folders(
    smollm2: HFCausalLM, tmp_path: Path
) -> None:
    """One real run: the header says what the default model is, the lone document's row is
    named by it, an empty file beside it is skipped in one line, and the outputs' folders are
    made."""
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "a.txt").write_text("The cat sat on the mat.\n", encoding="utf-8")
    (texts / "empty.txt").write_bytes(b"")
    out = tmp_path / "out" / "deeper"
    done = _crossent(
        "eval", "--data", str(texts), "--window", "32", "--json", str(out / "r.json"),
        "--report", str(out / "r.html"), "--per-token", str(out / "t.csv"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [f"crossent: skipping empty file {texts / 'empty.txt'}"]
    lines = done.stdout.splitlines()
    assert lines[0] == f"model smollm2-135m: {smollm2.description}"
    assert "Q4_1 GGUF (4-bit" in lines[0]
    rows = [line for line in lines if line.startswith(str(texts))]
    assert len(rows) == 1
    assert rows[0].startswith(str(texts / "a.txt"))
    assert not any(line.startswith("total") for line in lines)
    assert json.loads((out / "r.json").read_text(encoding="utf-8"))["documents"]
    assert (out / "t.csv").is_file()
    page = ParsedPage((out / "r.html").read_text(encoding="utf-8"))
    assert ["weights", smollm2.description] in page.rows["summary"]
