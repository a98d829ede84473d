"""Where texts come from: files, directories, JSON Lines, stdin, or the text inside CPython.

Policy, in one place:

* **A document is a whole text.** A text file is one document (named by its path); a directory
  is each regular, non-hidden file directly in it, sorted by name (subdirectories are not
  entered); a ``.jsonl`` file read with ``field`` is one document per line (named
  ``path:line``, lines numbered from 1, or by the line's ``name_field`` when one is given;
  blank lines skipped; without ``field`` it is an error,
  not raw JSON to score); ``-`` reads standard input, as JSON Lines when ``field`` is given and
  as one text otherwise. ``field`` applies to ``.jsonl`` files and stdin only: naming another
  file with it is an error (the user meant it as JSON Lines, or gave ``field`` by mistake), as
  is a ``field`` that no input uses; in a directory, its other files are read as texts.
* **An empty file inside a directory is skipped**, with a :class:`SkippedFileWarning` (the
  command line prints it as one line on stderr): a directory gathered from elsewhere often holds
  one, and it has nothing to score. A directory left with nothing to read is an error, and so is
  an empty file named on its own, which the user meant to score.
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
* **A text file larger than ``stream_bytes`` (64 MiB) is streamed**: it becomes a
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

import codecs
import json
import os
import platform
import stat
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from crossent.data.counts import count_bytes

STDIN = "-"
# Text files larger than this are read in parts while they are scored, not loaded whole.
STREAM_BYTES = 64 << 20
# How much of a streamed file is read at a time.
_READ_BYTES = 4 << 20
# The way out of invalid UTF-8, as a keyword argument and as a flag.
_REPLACE = ("errors='replace' substitutes U+FFFD", "--errors replace substitutes U+FFFD")
# What field is for, as a keyword argument and as a flag.
_FIELD_ONLY = (
    "field applies only to .jsonl files and stdin",
    "--field NAME applies only to .jsonl files and stdin",
)


class InputError(ValueError):
    """Bad input that an option of :func:`read_documents` is the way out of.

    ``str(error)`` is ``problem (remedy)`` with the option as a keyword argument, for a caller
    in Python; :attr:`command_line` is the same line with the option as ``crossent``'s flag.

    Args:
        problem: what is wrong, e.g. ``"a.txt is not valid UTF-8: byte 0xff at offset 2"``.
        remedy: the way out, naming the keyword argument (``errors='replace' ...``).
        flag_remedy: the same, naming the flag (``--errors replace ...``).
    """

    def __init__(self, problem: str, remedy: str, flag_remedy: str) -> None:
        super().__init__(f"{problem} ({remedy})")
        self.command_line = f"{problem} ({flag_remedy})"


class SkippedFileWarning(UserWarning):
    """A file of a directory that :func:`read_documents` left out, and why (it is empty)."""


@dataclass(frozen=True)
class Document:
    """One text to score as a whole.

    Attributes:
        name: where it came from: a path, ``path:line`` for JSON Lines, ``<stdin>`` or
            ``<stdin>:line``, or the default text's name.
        text: the decoded text, never empty.
        stored_bytes: its size as stored, when that differs from its UTF-8 length (invalid
            bytes replaced by U+FFFD); None means the UTF-8 length.
    """

    name: str
    text: str
    stored_bytes: int | None = field(default=None, compare=False)

    @property
    def num_bytes(self) -> int:
        """The text's size in bytes as stored (its UTF-8 length unless given)."""
        return self.stored_bytes if self.stored_bytes is not None else count_bytes(self.text)

    def parts(self) -> Iterator[str]:
        """The text, as one part (see :meth:`FileDocument.parts`)."""
        yield self.text


@dataclass(frozen=True)
class FileDocument:
    """A text file scored as one document but read a part at a time, never whole.

    Attributes:
        name: the path, as given.
        num_bytes: the file's size.
        errors: ``"strict"`` or ``"replace"``, as for :func:`read_documents`.
    """

    name: str
    num_bytes: int
    errors: str = "strict"

    def parts(self, read_bytes: int = _READ_BYTES) -> Iterator[str]:
        """The decoded text in consecutive parts of about ``read_bytes`` bytes each.

        Parts end wherever the reads end (never inside a character); they are not tokenized
        separately as they come, see :func:`crossent.data.tokens.tokenize_parts`.

        Raises:
            ValueError: the file cannot be read, or holds invalid UTF-8 with ``errors="strict"``
                (naming the byte offset in the file).
        """
        decoder = codecs.getincrementaldecoder("utf-8")(errors=self.errors)
        offset = 0
        try:
            with open(self.name, "rb") as file:
                while data := file.read(read_bytes):
                    pending = len(decoder.getstate()[0])
                    try:
                        yield decoder.decode(data)
                    except UnicodeDecodeError as error:
                        where = offset - pending + error.start
                        raise InputError(
                            f"{self.name} is not valid UTF-8: at byte offset {where}", *_REPLACE
                        ) from None
                    offset += len(data)
                yield decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise InputError(
                f"{self.name} is not valid UTF-8: it ends inside a character", *_REPLACE
            ) from None
        except OSError as error:
            raise ValueError(f"cannot read {self.name}: {error.strerror}") from None


Text = Document | FileDocument


def read_documents(
    paths: Sequence[str],
    *,
    field: str | None = None,
    errors: Literal["strict", "replace"] = "strict",
    stream_bytes: int = STREAM_BYTES,
    name_field: str | None = None,
) -> list[Text]:
    """Read the documents at ``paths`` (files, directories, ``-``), or the default text.

    Args:
        paths: text files, ``.jsonl`` files, directories, or ``-`` for stdin; empty for the
            Python documentation shipped inside CPython.
        field: the key that holds the text in each line of a ``.jsonl`` file (or of stdin).
        errors: ``"strict"`` rejects invalid UTF-8; ``"replace"`` substitutes U+FFFD.
        stream_bytes: plain text files larger than this are returned as
            :class:`FileDocument` and read in parts when scored.

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
    if errors not in ("strict", "replace"):
        raise ValueError(f"errors must be 'strict' or 'replace', got {errors!r}")
    if name_field is not None and field is None:
        raise InputError(
            f"a document name from field {name_field!r} needs JSON Lines input",
            "name_field applies only with field, to .jsonl files and stdin",
            "--name-field NAME applies only with --field NAME, to .jsonl files and stdin",
        )
    if not paths:
        return [_default_document()]
    documents: list[Text] = []
    field_used = False
    for path in paths:
        if path == STDIN:
            data = sys.stdin.buffer.read()
            text = _decode(data, "<stdin>", errors)
            documents.extend(_parse(text, "<stdin>", field, len(data), name_field))
            field_used = True
        elif os.path.isdir(path):
            files = _directory_files(path)
            field_used = field_used or any(_is_json_lines(file) for file in files)
            for file in files:
                documents.extend(_read_file(file, field, errors, stream_bytes, name_field))
        else:
            if field is not None and not _is_json_lines(path):
                raise InputError(
                    f"{path} is not JSON Lines (a .jsonl file), so it has no field {field!r}",
                    *_FIELD_ONLY,
                )
            documents.extend(_read_file(path, field, errors, stream_bytes, name_field))
            field_used = True
    if field is not None and not field_used:
        raise InputError(f"no input is JSON Lines, so field {field!r} names nothing", *_FIELD_ONLY)
    return documents


def first_characters(document: Text, count: int) -> Document:
    """The document cut to its first ``count`` characters (all of it when shorter).

    A cut document's bytes are the UTF-8 bytes of the characters kept.
    """
    if count < 1:
        raise ValueError(f"a document must keep at least 1 character, got {count}")
    if isinstance(document, Document) and len(document.text) <= count:
        return document
    text = ""
    for part in document.parts():
        text += part
        if len(text) >= count:
            break
    return Document(document.name, text[:count])


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


def _is_json_lines(path: str) -> bool:
    return path.endswith(".jsonl")


def _read_file(
    path: str, field: str | None, errors: str, stream_bytes: int, name_field: str | None = None
) -> list[Text]:
    jsonl = _is_json_lines(path)
    if jsonl and field is None:
        raise InputError(
            f"{path} is JSON Lines: name the field that holds each line's text",
            "field=NAME",
            "--field NAME",
        )
    try:
        status = os.stat(path)
        if not stat.S_ISREG(status.st_mode):
            raise ValueError(f"{path} is not a regular file")
        if not jsonl and status.st_size > stream_bytes:
            return [FileDocument(path, status.st_size, errors)]
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file or directory") from None
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror}") from None
    text = _decode(data, path, errors)
    return _parse(text, path, field if jsonl else None, len(data), name_field)


def _decode(data: bytes, name: str, errors: str) -> str:
    try:
        return data.decode("utf-8", errors=errors)
    except UnicodeDecodeError as error:
        raise InputError(
            f"{name} is not valid UTF-8: byte 0x{data[error.start]:02x} at offset {error.start}",
            *_REPLACE,
        ) from None


def _parse(
    text: str, name: str, field: str | None, stored_bytes: int, name_field: str | None = None
) -> list[Text]:
    """One document for a plain text (``field`` None), one per line for JSON Lines."""
    if field is None:
        if not text:
            raise ValueError(f"{name} is empty")
        return [Document(name=name, text=text, stored_bytes=stored_bytes)]
    documents: list[Text] = []
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
        documents.append(Document(name=_line_name(record, where, name_field), text=value))
    if not documents:
        raise ValueError(f"{name} is empty (no JSON lines)")
    return documents


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
