"""Where texts come from: files, directories, JSON Lines, stdin, or the text inside CPython.

Policy, in one place:

* **A document is a whole text.** A text file is one document (named by its path); a directory
  is each regular, non-hidden file directly in it, sorted by name (subdirectories are not
  entered); a ``.jsonl`` file read with ``field`` is one document per line (named
  ``path:line``, lines numbered from 1, blank lines skipped; without ``field`` it is an error,
  not raw JSON to score); ``-`` reads standard input, as JSON Lines when ``field`` is given and
  as one text otherwise. ``field`` does not apply to other files.
* **UTF-8, exactly as stored.** Bytes are decoded as UTF-8 with nothing translated: no newline
  conversion and no byte-order mark stripped, so a text's characters are the file's. Invalid
  bytes are an error naming the file and byte offset, unless ``errors="replace"`` (then each
  invalid sequence becomes U+FFFD, which is three bytes when encoded again: a bits-per-byte
  figure computed from the decoded text counts those).
* **No paths means the default text**: the Python documentation that ships inside CPython
  (``pydoc_data.topics``), so the main job needs nothing from the network. It is read as *one*
  document, the topics joined in sorted order by blank lines: the topics are sections of one
  manual, and as one long text they are scored with the full context the windows allow, rather
  than as 79 short texts that each restart from the prefix token. The text differs between
  Python versions, so its name carries the version.
* **Bad input is a ValueError of one line** naming the problem: a missing or unreadable path,
  an empty text (zero characters), a directory with no files to read, invalid JSON, a line
  without ``field``.
"""

from __future__ import annotations

import json
import os
import platform
import stat
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

STDIN = "-"


@dataclass(frozen=True)
class Document:
    """One text to score as a whole.

    Attributes:
        name: where it came from: a path, ``path:line`` for JSON Lines, ``<stdin>`` or
            ``<stdin>:line``, or the default text's name.
        text: the decoded text, never empty.
    """

    name: str
    text: str


def read_documents(
    paths: Sequence[str],
    *,
    field: str | None = None,
    errors: Literal["strict", "replace"] = "strict",
) -> list[Document]:
    """Read the documents at ``paths`` (files, directories, ``-``), or the default text.

    Args:
        paths: text files, ``.jsonl`` files, directories, or ``-`` for stdin; empty for the
            Python documentation shipped inside CPython.
        field: the key that holds the text in each line of a ``.jsonl`` file (or of stdin).
        errors: ``"strict"`` rejects invalid UTF-8; ``"replace"`` substitutes U+FFFD.

    Returns:
        The documents, in the order of ``paths`` (a directory's files sorted by name).

    Raises:
        ValueError: with one line naming the problem (see the module docstring).

    >>> [document.name for document in read_documents([])]  # doctest: +ELLIPSIS
    ['pydoc_data.topics (Python 3...)']
    """
    if errors not in ("strict", "replace"):
        raise ValueError(f"errors must be 'strict' or 'replace', got {errors!r}")
    if not paths:
        return [_default_document()]
    documents: list[Document] = []
    for path in paths:
        if path == STDIN:
            text = _decode(sys.stdin.buffer.read(), "<stdin>", errors)
            documents.extend(_parse(text, "<stdin>", field))
        elif os.path.isdir(path):
            documents.extend(_read_directory(path, field, errors))
        else:
            documents.extend(_read_file(path, field, errors))
    return documents


def _default_document() -> Document:
    try:
        from pydoc_data.topics import topics
    except ImportError:
        raise ValueError(
            "this Python was installed without pydoc_data (the default text): name a text to read"
        ) from None
    name = f"pydoc_data.topics (Python {platform.python_version()})"
    return Document(name=name, text="\n\n".join(topics[key] for key in sorted(topics)))


def _read_directory(path: str, field: str | None, errors: str) -> list[Document]:
    try:
        entries = sorted(os.scandir(path), key=lambda entry: entry.name)
    except OSError as error:
        raise ValueError(f"cannot read directory {path}: {error.strerror}") from None
    files = [
        entry.path
        for entry in entries
        if not entry.name.startswith(".") and entry.is_file(follow_symlinks=True)
    ]
    if not files:
        raise ValueError(f"directory {path} has no files to read (hidden files are skipped)")
    return [document for file in files for document in _read_file(file, field, errors)]


def _read_file(path: str, field: str | None, errors: str) -> list[Document]:
    jsonl = path.endswith(".jsonl")
    if jsonl and field is None:
        raise ValueError(f"{path} is JSON Lines: name the field that holds the text")
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            raise ValueError(f"{path} is not a regular file")
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file or directory") from None
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror}") from None
    return _parse(_decode(data, path, errors), path, field if jsonl else None)


def _decode(data: bytes, name: str, errors: str) -> str:
    try:
        return data.decode("utf-8", errors=errors)
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{name} is not valid UTF-8: byte 0x{data[error.start]:02x} at offset {error.start} "
            "(errors='replace' substitutes U+FFFD)"
        ) from None


def _parse(text: str, name: str, field: str | None) -> list[Document]:
    """One document for a plain text (``field`` None), one per line for JSON Lines."""
    if field is None:
        if not text:
            raise ValueError(f"{name} is empty")
        return [Document(name=name, text=text)]
    documents = []
    # Only "\n" ends a JSON line: str.splitlines would also split at U+2028 and U+0085, which
    # JSON writers may leave unescaped inside strings.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{name}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{where} is not valid JSON: {error.msg}") from None
        if not isinstance(record, dict):
            raise ValueError(f"{where} is a JSON {type(record).__name__}, not an object")
        if field not in record:
            keys = ", ".join(sorted(record)) or "none"
            raise ValueError(f"{where} has no field {field!r} (its keys: {keys})")
        value = record[field]
        if not isinstance(value, str):
            raise ValueError(f"{where}: field {field!r} is a {type(value).__name__}, not text")
        if not value:
            raise ValueError(f"{where}: field {field!r} is empty")
        documents.append(Document(name=where, text=value))
    if not documents:
        raise ValueError(f"{name} is empty (no JSON lines)")
    return documents
