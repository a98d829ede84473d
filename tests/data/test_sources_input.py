"""read_documents' input policy: empty files in a folder, ``field`` on plain files, and errors
that name the way out as a keyword argument for Python and as a flag for the command line."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

from crossent.data import Document, read_documents
from crossent.data.sources import InputError, SkippedFileWarning


def test_an_empty_file_in_a_folder_is_skipped_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("alpha", encoding="utf-8")
    (tmp_path / "b.txt").write_bytes(b"")
    (tmp_path / "c.txt").write_text("gamma", encoding="utf-8")
    with pytest.warns(SkippedFileWarning) as caught:
        documents = read_documents([str(tmp_path)])
    assert documents == [
        Document(str(tmp_path / "a.txt"), "alpha"),
        Document(str(tmp_path / "c.txt"), "gamma"),
    ]
    assert [str(warning.message) for warning in caught] == [
        f"skipping empty file {tmp_path / 'b.txt'}"
    ]


def test_a_folder_of_empty_files_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_bytes(b"")
    (tmp_path / "a.txt").write_bytes(b"")
    message = f"directory {tmp_path} has no text to read: every file in it is empty (a.txt, b.txt)"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and nothing is said to be skipped before the error
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            read_documents([str(tmp_path)])


def test_an_empty_file_named_on_its_own_is_still_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.txt is empty"):
        read_documents([str(tmp_path / "empty.txt")])


def test_field_on_a_plain_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("plain", encoding="utf-8")
    with pytest.raises(InputError) as raised:
        read_documents([str(path)], field="text")
    problem = f"{path} is not JSON Lines, Parquet or a datasets folder, so it has no field 'text'"
    only = "applies only to .jsonl and .parquet files, datasets folders and stdin"
    assert str(raised.value) == f"{problem} (field {only})"
    assert raised.value.command_line == (f"{problem} (--field NAME {only})")


def test_field_that_no_input_uses_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("plain", encoding="utf-8")
    nothing = "no input is JSON Lines, Parquet or a datasets folder, so field 'text' names nothing"
    with pytest.raises(InputError, match=nothing):
        read_documents([str(tmp_path)], field="text")


def test_the_ways_out_name_the_keyword_and_the_flag(tmp_path: Path) -> None:
    bad, lines = tmp_path / "bad.txt", tmp_path / "lines.jsonl"
    bad.write_bytes(b"ok\xff")
    lines.write_text('{"text": "hi"}\n', encoding="utf-8")
    with pytest.raises(InputError) as raised:
        read_documents([str(bad)])
    assert str(raised.value).endswith("(errors='replace' substitutes U+FFFD)")
    assert raised.value.command_line.endswith("(--errors replace substitutes U+FFFD)")
    with pytest.raises(InputError) as raised:
        read_documents([str(lines)])
    assert str(raised.value).endswith("(field=NAME)")
    assert raised.value.command_line.endswith("(--field NAME)")
    # a streamed file's invalid bytes are found while it is read, and say the same
    (document,) = read_documents([str(bad)], stream_bytes=1)
    with pytest.raises(InputError) as raised:
        list(document.parts())
    assert raised.value.command_line.endswith("(--errors replace substitutes U+FFFD)")
