"""Reading texts: files, directories, JSON Lines, stdin, the default text, and bad input."""

from __future__ import annotations

import io
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from crossent.data import Document, FileDocument, Text, read_documents
from crossent.data.sources import first_characters


def in_memory(documents: list[Text]) -> list[Document]:
    """``documents``, each checked to be held in memory (small enough not to be streamed)."""
    assert all(isinstance(document, Document) for document in documents)
    return [document for document in documents if isinstance(document, Document)]


def streamed(documents: list[Text]) -> list[FileDocument]:
    """``documents``, each checked to be streamed from its file."""
    assert all(isinstance(document, FileDocument) for document in documents)
    return [document for document in documents if isinstance(document, FileDocument)]


def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


def test_text_file_is_one_document_read_exactly(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    text = "héllo\r\nwörld \u2028 ☃\n"  # CRLF and a BOM-free non-ASCII text stay as stored
    path.write_bytes(text.encode())
    assert read_documents([str(path)]) == [Document(str(path), text)]


def test_byte_order_mark_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfhi")
    assert in_memory(read_documents([str(path)]))[0].text == "\ufeffhi"


def test_paths_keep_their_order(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("bee")
    (tmp_path / "a.txt").write_text("ay")
    paths = [str(tmp_path / "b.txt"), str(tmp_path / "a.txt")]
    assert [d.text for d in in_memory(read_documents(paths))] == ["bee", "ay"]


def test_directory_is_its_visible_files_sorted(tmp_path: Path) -> None:
    for name, text in [("b.txt", "two"), ("a.md", "one"), ("c", "three"), (".hidden", "x")]:
        (tmp_path / name).write_text(text)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deeper.txt").write_text("not read")
    documents = in_memory(read_documents([str(tmp_path)]))
    assert [(Path(d.name).name, d.text) for d in documents] == [
        ("a.md", "one"),
        ("b.txt", "two"),
        ("c", "three"),
    ]


def test_directory_jsonl_files_use_the_field(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("plain")
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "line"}) + "\n")
    documents = in_memory(read_documents([str(tmp_path)], field="text"))
    assert [d.text for d in documents] == ["plain", "line"]


def test_jsonl_is_one_document_per_line(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    lines = [{"text": "first", "id": 1}, {"text": "sec\u2028ond\n"}]
    path.write_text(
        json.dumps(lines[0]) + "\n\n" + json.dumps(lines[1], ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    assert read_documents([str(path)], field="text") == [
        Document(f"{path}:1", "first"),
        Document(f"{path}:3", "sec\u2028ond\n"),
    ]


def test_stdin_is_one_text(monkeypatch: pytest.MonkeyPatch) -> None:
    _stdin(monkeypatch, "from stdin ☃\n".encode())
    assert read_documents(["-"]) == [Document("<stdin>", "from stdin ☃\n")]


def test_stdin_with_field_is_json_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    _stdin(monkeypatch, b'{"t": "a"}\n{"t": "b"}\n')
    assert read_documents(["-"], field="t") == [
        Document("<stdin>:1", "a"),
        Document("<stdin>:2", "b"),
    ]


def test_default_is_the_python_documentation() -> None:
    from pydoc_data.topics import topics

    documents = in_memory(read_documents([]))
    assert len(documents) == 1
    (document,) = documents
    assert document.name.startswith("pydoc_data.topics (Python ")
    assert len(document.text.encode()) > 100_000
    # every topic is in it, in sorted order (some topics also occur inside others)
    end = 0
    for key in sorted(topics):
        end = document.text.index(topics[key], end) + len(topics[key])
    assert end == len(document.text)


def test_default_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pydoc_data.topics", None)
    with pytest.raises(ValueError, match="without pydoc_data"):
        read_documents([])


def test_invalid_utf8_names_file_and_offset(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("café".encode("latin-1"))
    message = f"{path} is not valid UTF-8: byte 0xe9 at offset 3"
    with pytest.raises(ValueError, match=re.escape(message)):
        read_documents([str(path)])


def test_invalid_utf8_replaced_on_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"caf\xe9!")
    assert in_memory(read_documents([str(path)], errors="replace"))[0].text == "caf\ufffd!"
    _stdin(monkeypatch, b"\xff")
    message = "<stdin> is not valid UTF-8: byte 0xff at offset 0"
    with pytest.raises(ValueError, match=re.escape(message)):
        read_documents(["-"])


@pytest.mark.parametrize(
    ("lines", "field", "message"),
    [
        (
            ['{"text": "a"}', '{"body": "b", "id": 2}'],
            "text",
            ":2 has no field 'text' (its keys: body, id)",
        ),
        (["{}"], "text", ":1 has no field 'text' (its keys: none)"),
        (['{"text": "a"}', "{not json"], "text", ":2 is not valid JSON"),
        (['["text"]'], "text", ":1 is a JSON list, not an object"),
        (['{"text": 3}'], "text", ":1: field 'text' is a int, not text"),
        (['{"text": ""}'], "text", ":1: field 'text' is empty"),
        (["", "  "], "text", " is empty (no JSON lines)"),
    ],
)
def test_bad_jsonl(tmp_path: Path, lines: list[str], field: str, message: str) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="^" + re.escape(f"{path}{message}")):
        read_documents([str(path)], field=field)


def test_jsonl_without_field(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "a"}\n')
    with pytest.raises(ValueError, match=re.escape(f"{path} is JSON Lines: name the field")):
        read_documents([str(path)])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root / "missing.txt", "{path}: no such file or directory"),
        (lambda root: root / "empty.txt", "{path} is empty"),
        (lambda root: root / "empty_dir", "directory {path} has no files to read"),
        (lambda root: root / "only_hidden", "directory {path} has no files to read"),
        (lambda root: root / "empty.txt" / "child", "cannot read {path}: Not a directory"),
        (lambda root: Path("/dev/null"), "{path} is not a regular file"),
    ],
)
def test_bad_paths(tmp_path: Path, make: Callable[[Path], Path], message: str) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "only_hidden").mkdir()
    (tmp_path / "only_hidden" / ".secret").write_text("x")
    path = make(tmp_path)
    with pytest.raises(ValueError, match="^" + re.escape(message.format(path=path))):
        read_documents([str(path)])


def test_empty_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    _stdin(monkeypatch, b"")
    with pytest.raises(ValueError, match=r"^<stdin> is empty$"):
        read_documents(["-"])


def test_unknown_errors_policy() -> None:
    with pytest.raises(ValueError, match="errors must be 'strict' or 'replace', got 'ignore'"):
        read_documents([], errors="ignore")  # type: ignore[arg-type]


def test_a_large_file_is_streamed_in_parts(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    text = "snow ☃ and 😀 " * 50  # multi-byte characters fall across read boundaries
    path.write_bytes(text.encode())
    (document,) = read_documents([str(path)], stream_bytes=100)
    assert isinstance(document, FileDocument)
    assert document.num_bytes == len(text.encode())
    parts = list(document.parts(read_bytes=7))
    assert len(parts) > 10
    assert "".join(parts) == text
    assert read_documents([str(path)])[0] == Document(str(path), text)  # small enough: whole


def test_invalid_bytes_in_a_streamed_file_name_their_offset(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"a" * 50 + "é".encode() + b"\xff" + b"z" * 50)
    (document,) = streamed(read_documents([str(path)], stream_bytes=10))
    with pytest.raises(ValueError, match=r"bad.txt is not valid UTF-8: at byte offset 52 "):
        "".join(document.parts(read_bytes=16))
    (replaced,) = streamed(read_documents([str(path)], errors="replace", stream_bytes=10))
    assert "".join(replaced.parts(read_bytes=16)) == "a" * 50 + "é\ufffd" + "z" * 50
    assert replaced.num_bytes == 103  # bytes as stored, not as re-encoded


def test_bytes_are_counted_as_stored_when_invalid_bytes_are_replaced(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"ab\xffcd")
    (document,) = in_memory(read_documents([str(path)], errors="replace"))
    assert document.text == "ab\ufffdcd"
    assert document.num_bytes == 5


def test_first_characters_of_a_streamed_file(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_text("0123456789" * 100, encoding="utf-8")
    (document,) = read_documents([str(path)], stream_bytes=10)
    assert first_characters(document, 25) == Document(str(path), "0123456789" * 2 + "01234")
