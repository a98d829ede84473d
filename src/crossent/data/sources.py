"""Where texts come from: files, directories, JSON Lines, Parquet, ``datasets`` folders,
compressed files, stdin, or the text inside CPython.

Policy, in one place:

* **A document is a whole text.** A text file is one document (named by its path); a directory
  is each regular, non-hidden file directly in it, sorted by name (subdirectories are not
  entered); a ``.jsonl`` file read with ``field`` is one document per line (named
  ``path:line``, lines numbered from 1, or by the line's ``name_field`` when one is given;
  blank lines skipped; without ``field`` it is an error,
  not raw JSON to score); ``-`` reads standard input, as JSON Lines when ``field`` is given and
  as one text otherwise. ``field`` applies to ``.jsonl``, ``.parquet`` files, ``datasets``
  folders and stdin only: naming another
  file with it is an error (the user meant it as JSON Lines, or gave ``field`` by mistake), as
  is a ``field`` that no input uses; in a directory, its other files are read as texts.
* **Compressed files** (``.gz``, ``.zst``; :mod:`crossent.data.compression`) are read as the
  file their name has without that extension: ``a.jsonl.gz`` as JSON Lines, ``a.txt.zst`` (or
  any other name) as a text. ``field`` applies to them as to the uncompressed file.
* **Parquet files and ``datasets`` folders** (``.parquet``; a folder ``save_to_disk`` wrote)
  are one document per row of the column ``field`` (:mod:`crossent.data.tables`), named
  ``path:row`` (rows from 1) or by ``name_field``; they need ``field`` as JSON Lines does.
* **Read lazily.** :class:`Corpus` checks every path when it is made (each exists, is of a
  kind it can read with the options given, a Parquet or ``datasets`` column exists and holds
  text) and reads the documents only as it is iterated, one at a time, and again each time
  it is iterated: JSON Lines a line at a time, Parquet and ``datasets`` a batch of rows at a
  time, compressed texts decompressed as they are scored. So a corpus larger than memory can
  be evaluated; an error inside a file (invalid JSON on line 90,000) is found when that line
  is read. :func:`read_documents` is the same walk, gathered into a list.
* **An empty file inside a directory is skipped**, with a :class:`SkippedFileWarning` (the
  command line prints it as one line on stderr): a directory gathered from elsewhere often holds
  one, and it has nothing to score. A directory left with nothing to read is an error, and so is
  an empty file named on its own, which the user meant to score.
* **UTF-8, exactly as stored.** Bytes are decoded as UTF-8 with nothing translated: no newline
  conversion and no byte-order mark stripped, so a text's characters are the file's. Invalid
  bytes are an error naming the file and byte offset, unless ``errors="replace"`` (then each
  invalid sequence becomes U+FFFD, which is three bytes when encoded again: a bits-per-byte
  figure computed from the decoded text counts those).
* **Whitespace, NUL and control characters are text.** A file of only spaces and newlines, or
  one holding NUL bytes, is decoded and scored like any other (its tokens are whatever the
  tokenizer makes of it); only a file of zero bytes is empty. A file of one line, however long,
  is tokenized in pieces like any other (:mod:`crossent.data.tokens`), so memory stays bounded.
* **No paths means the default text**: the Python documentation that ships inside CPython
  (``pydoc_data.topics``), so the main job needs nothing from the network. It is read as *one*
  document, the topics joined in sorted order by blank lines: the topics are sections of one
  manual, and as one long text they are scored with the full context the windows allow, rather
  than as 79 short texts that each restart from the prefix token. The text differs between
  Python versions, so its name carries the version.
* **A text file larger than ``stream_bytes`` (8 MiB) is streamed**: it becomes a
  :class:`FileDocument`, which is decoded a few MiB at a time while it is scored, so a text
  larger than memory can be evaluated. Its invalid bytes are found when that part is read.
* **Bytes are counted as stored**: ``num_bytes`` is the file's size (or the UTF-8 length of the
  line, for JSON Lines, as :func:`crossent.data.counts.count_bytes` counts a text), so U+FFFD
  substitutions do not change a bits-per-byte figure.
* **Bad input is a ValueError of one line** naming the problem: a missing or unreadable path,
  an empty text (zero characters), a directory with no files to read, invalid JSON, a line
  without ``field``. Where an option of :func:`read_documents` is the way out, the error is an
  :class:`InputError`, which names it as the keyword argument (``errors='replace'``) and, in
  :attr:`InputError.command_line`, as the flag the command line takes (``--errors replace``).
"""

from __future__ import annotations

import io
import json
import os
import platform
import stat
import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import IO, Literal

from crossent.data.compression import compression_of, inner_name, open_binary
from crossent.data.documents import (
    REPLACE,
    CompressedDocument,
    Document,
    FileDocument,
    InputError,
    SkippedFileWarning,
    Text,
    first_characters,
)
from crossent.data.tables import (
    check_parquet,
    dataset_documents,
    is_saved_dataset,
    open_dataset,
    parquet_documents,
)

__all__ = [
    "STDIN",
    "STREAM_BYTES",
    "CompressedDocument",
    "Corpus",
    "Document",
    "FileDocument",
    "InputError",
    "SkippedFileWarning",
    "Text",
    "default_text_name",
    "first_characters",
    "read_documents",
]

STDIN = "-"
# Text files larger than this are read in parts while they are scored, not loaded whole: held
# whole, a text costs its bytes and up to four times as many for its characters, so at 64 MiB
# peak memory grew by a quarter of a GiB between 4.7 MB and 47 MB (docs/benchmarks.md).
STREAM_BYTES = 8 << 20
# What field is for, as a keyword argument and as a flag.
_FIELD_ONLY = (
    "field applies only to .jsonl and .parquet files, datasets folders and stdin",
    "--field NAME applies only to .jsonl and .parquet files, datasets folders and stdin",
)
# The kinds of input that hold their texts in a field.
_FIELDED = ("jsonl", "parquet", "dataset")


def read_documents(
    paths: Sequence[str],
    *,
    field: str | None = None,
    errors: Literal["strict", "replace"] = "strict",
    stream_bytes: int = STREAM_BYTES,
    name_field: str | None = None,
) -> list[Text]:
    """Read the documents at ``paths`` (files, directories, ``-``), or the default text.

    The documents of :class:`Corpus` (same arguments), gathered into a list: for a corpus
    too large for that, iterate a :class:`Corpus`.

    Args:
        paths: text files, ``.jsonl`` and ``.parquet`` files (each maybe ``.gz`` or ``.zst``
            compressed, but Parquet), ``datasets`` folders, directories, or ``-`` for stdin;
            empty for the Python documentation shipped inside CPython.
        field: the key (column) that holds the text in each line (row).
        errors: ``"strict"`` rejects invalid UTF-8; ``"replace"`` substitutes U+FFFD.
        stream_bytes: text files larger than this are returned as :class:`FileDocument`
            (compressed: :class:`CompressedDocument`) and read in parts when scored.
        name_field: the key (column) that names each line's (row's) document.

    Returns:
        The documents, in the order of ``paths`` (a directory's files sorted by name).

    Raises:
        ValueError: with one line naming the problem (see the module docstring); an
            :class:`InputError` where ``field`` or ``errors`` is the way out.

    Warns:
        SkippedFileWarning: for each empty file of a directory, which is left out.

    >>> [document.name for document in read_documents([])]  # doctest: +ELLIPSIS
    ['pydoc_data.topics (Python 3...)']
    """
    return list(
        Corpus(paths, field=field, errors=errors, stream_bytes=stream_bytes, name_field=name_field)
    )


class Corpus:
    """The documents at ``paths``, checked now and read lazily each time they are iterated.

    Arguments as :func:`read_documents`'s, and ``max_chars``: cut each document to its first
    ``max_chars`` characters (:func:`first_characters`), None for whole documents.

    Raises:
        ValueError: a path that is missing or of a kind the options cannot read (the module
            docstring); problems inside a file are raised while iterating.
    """

    def __init__(
        self,
        paths: Sequence[str],
        *,
        field: str | None = None,
        errors: Literal["strict", "replace"] = "strict",
        stream_bytes: int = STREAM_BYTES,
        name_field: str | None = None,
        max_chars: int | None = None,
    ) -> None:
        if errors not in ("strict", "replace"):
            raise ValueError(f"errors must be 'strict' or 'replace', got {errors!r}")
        if name_field is not None and field is None:
            raise InputError(
                f"a document name from field {name_field!r} needs JSON Lines input",
                "name_field applies only with field, to .jsonl files and stdin",
                "--name-field NAME applies only with --field NAME, to .jsonl files and stdin",
            )
        if max_chars is not None and max_chars < 1:
            raise ValueError(f"a document must keep at least 1 character, got {max_chars}")
        self.field, self.errors, self.name_field = field, errors, name_field
        self.stream_bytes, self.max_chars = stream_bytes, max_chars
        self._stdin = b""
        self._sources: list[tuple[str, str]] = []  # (kind, path)
        field_used = not paths
        for path in paths:
            if path == STDIN:
                self._stdin = sys.stdin.buffer.read()
                self._sources.append(("jsonl" if field is not None else "text", STDIN))
                field_used = True
            elif os.path.isdir(path) and not is_saved_dataset(path):
                files = [(_kind(file), file) for file in _directory_files(path)]
                field_used = field_used or any(kind in _FIELDED for kind, _ in files)
                self._sources.extend(self._checked(kind, file) for kind, file in files)
            else:
                kind = _kind(path)
                if field is not None and kind not in _FIELDED:
                    raise InputError(
                        f"{path} is not JSON Lines, Parquet or a datasets folder, so it has no "
                        f"field {field!r}",
                        *_FIELD_ONLY,
                    )
                self._sources.append(self._checked(kind, path))
                field_used = True
        if field is not None and not field_used:
            raise InputError(
                f"no input is JSON Lines, Parquet or a datasets folder, so field {field!r} "
                "names nothing",
                *_FIELD_ONLY,
            )

    @property
    def total_bytes(self) -> int | None:
        """The bytes of all documents, when known without reading them (plain text files
        only, whole); else None. For a progress estimate."""
        if self.max_chars is not None or any(
            kind != "text" or path == STDIN or compression_of(path) for kind, path in self._sources
        ):
            return None
        return sum(os.stat(path).st_size for _, path in self._sources) if self._sources else None

    def __iter__(self) -> Iterator[Text]:
        if not self._sources:
            yield (
                _default_document()
                if self.max_chars is None
                else first_characters(_default_document(), self.max_chars)
            )
            return
        for kind, path in self._sources:
            for document in self._documents(kind, path):
                yield (
                    document
                    if self.max_chars is None
                    else first_characters(document, self.max_chars)
                )

    def _checked(self, kind: str, path: str) -> tuple[str, str]:
        """The source, once it is known to be readable with the options given."""
        if kind in _FIELDED and self.field is None:
            what = {"jsonl": "JSON Lines", "parquet": "Parquet", "dataset": "a datasets folder"}
            raise InputError(
                f"{path} is {what[kind]}: name the field that holds each "
                f"{'line' if kind == 'jsonl' else 'row'}'s text",
                "field=NAME",
                "--field NAME",
            )
        if kind == "parquet" and self.field is not None:
            check_parquet(path, self.field, self.name_field)
        elif kind == "dataset" and self.field is not None:
            open_dataset(path, self.field, self.name_field)
        else:
            try:
                status = os.stat(path)
            except FileNotFoundError:
                raise ValueError(f"{path}: no such file or directory") from None
            except OSError as error:
                raise ValueError(f"cannot read {path}: {error.strerror}") from None
            if not stat.S_ISREG(status.st_mode):
                raise ValueError(f"{path} is not a regular file")
        return kind, path

    def _documents(self, kind: str, path: str) -> Iterator[Text]:
        field, name_field = self.field, self.name_field
        if kind == "parquet" and field is not None:
            yield from parquet_documents(path, field, name_field)
        elif kind == "dataset" and field is not None:
            yield from dataset_documents(path, field, name_field)
        elif path == STDIN:
            if field is None:
                text = _decode(self._stdin, "<stdin>", self.errors)
                yield _text_document(text, "<stdin>", len(self._stdin))
            else:
                yield from _json_lines(io.BytesIO(self._stdin), "<stdin>", self, field)
        elif kind == "jsonl" and field is not None:
            with open_binary(path) as file:
                yield from _json_lines(file, path, self, field)
        else:
            yield _text_file(path, self.errors, self.stream_bytes)


def default_text_name() -> str:
    """The name of the text read when no path is given: CPython's pydoc topics, with the
    version of the Python that holds them (their text changes between versions)."""
    return f"pydoc_data.topics (Python {platform.python_version()})"


def _default_document() -> Document:
    try:
        from pydoc_data.topics import topics
    except ImportError:
        raise ValueError(
            "this Python was installed without pydoc_data (the default text): name a text to read"
        ) from None
    text = "\n\n".join(topics[key] for key in sorted(topics))
    return Document(name=default_text_name(), text=text)


def _kind(path: str) -> str:
    """What a path holds: ``"dataset"``, ``"jsonl"``, ``"parquet"`` or ``"text"``."""
    if os.path.isdir(path) and is_saved_dataset(path):
        return "dataset"
    if inner_name(path).endswith(".jsonl"):
        return "jsonl"
    return "parquet" if path.endswith(".parquet") else "text"


def _directory_files(path: str) -> list[str]:
    """The files of directory ``path`` to read, sorted by name; its empty files left out with a
    :class:`SkippedFileWarning` each, unless nothing else is left (then it is an error)."""
    try:
        entries = sorted(os.scandir(path), key=lambda entry: entry.name)
        files = [
            (entry.path, entry.stat().st_size)
            for entry in entries
            if not entry.name.startswith(".") and entry.is_file(follow_symlinks=True)
        ]
    except OSError as error:
        raise ValueError(f"cannot read directory {path}: {error.strerror}") from None
    if not files:
        raise ValueError(f"directory {path} has no files to read (hidden files are skipped)")
    empty = [file for file, size in files if size == 0]
    if len(empty) == len(files):
        names = ", ".join(os.path.basename(file) for file in empty)
        raise ValueError(
            f"directory {path} has no text to read: every file in it is empty ({names})"
        )
    for file in empty:
        warnings.warn(f"skipping empty file {file}", SkippedFileWarning, stacklevel=3)
    return [file for file, size in files if size > 0]


def _text_file(path: str, errors: str, stream_bytes: int) -> Text:
    """A text file as one document: in memory, or streamed when larger than ``stream_bytes``."""
    if compression_of(path) is not None:
        with open_binary(path) as file:
            size = 0
            while data := file.read(1 << 20):
                size += len(data)
        if size > stream_bytes:
            return CompressedDocument(path, size, errors)
        with open_binary(path) as file:
            data = file.read()
        return _text_document(_decode(data, path, errors), path, len(data))
    size = os.stat(path).st_size
    if size > stream_bytes:
        return FileDocument(path, size, errors)
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror}") from None
    return _text_document(_decode(data, path, errors), path, len(data))


def _text_document(text: str, name: str, stored_bytes: int) -> Document:
    if not text:
        raise ValueError(f"{name} is empty")
    return Document(name=name, text=text, stored_bytes=stored_bytes)


def _decode(data: bytes, name: str, errors: str, offset: int = 0) -> str:
    """``data`` as UTF-8; invalid bytes named by their offset, ``data`` starting at ``offset``."""
    try:
        return data.decode("utf-8", errors=errors)
    except UnicodeDecodeError as error:
        where = offset + error.start
        raise InputError(
            f"{name} is not valid UTF-8: byte 0x{data[error.start]:02x} at offset {where}",
            *REPLACE,
        ) from None


def _json_lines(file: IO[bytes], name: str, corpus: Corpus, field: str) -> Iterator[Document]:
    """One document per line of a JSON Lines file, read a line at a time."""
    offset = 0
    found = False
    # Binary lines end only at "\n": str.splitlines would also split at U+2028 and U+0085,
    # which JSON writers may leave unescaped inside strings.
    for number, raw in enumerate(file, start=1):
        line = _decode(raw, name, corpus.errors, offset)
        offset += len(raw)
        if not line.strip():
            continue
        found = True
        yield _json_document(line, f"{name}:{number}", field, corpus.name_field)
    if not found:
        raise ValueError(f"{name} is empty (no JSON lines)")


def _json_document(line: str, where: str, field: str, name_field: str | None) -> Document:
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
    return Document(name=_line_name(record, where, name_field), text=value)


def _line_name(record: dict[str, object], where: str, name_field: str | None) -> str:
    """A JSON line's name: ``path:line``, or its ``name_field`` (a string or a number)."""
    if name_field is None:
        return where
    if name_field not in record:
        keys = ", ".join(sorted(record)) or "none"
        raise InputError(
            f"{where} has no field {name_field!r} to name it by (its keys: {keys})",
            f"name_field={name_field!r}",
            f"--name-field {name_field}",
        )
    value = record[name_field]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InputError(
            f"{where}: field {name_field!r} is a {type(value).__name__}, not a string or a number",
            f"name_field={name_field!r}",
            f"--name-field {name_field}",
        )
    return str(value)
