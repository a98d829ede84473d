"""The kinds of document crossent scores, and the errors and warnings reading them raises.

:mod:`crossent.data.sources` says which inputs become which documents; this module holds what
they are: a :class:`Document` held in memory, a :class:`FileDocument` streamed from a large text
file, a :class:`CompressedDocument` streamed out of a ``.gz`` or ``.zst`` text file.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

from crossent.data.compression import open_binary
from crossent.data.counts import count_bytes

# How much of a streamed file is read at a time.
_READ_BYTES = 4 << 20
# The way out of invalid UTF-8, as a keyword argument and as a flag.
REPLACE = ("errors='replace' substitutes U+FFFD", "--errors replace substitutes U+FFFD")


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
        try:
            with open(self.name, "rb") as file:
                yield from decode_parts(file, self.name, self.errors, read_bytes)
        except OSError as error:
            raise ValueError(f"cannot read {self.name}: {error.strerror}") from None


@dataclass(frozen=True)
class CompressedDocument:
    """A gzip- or zstd-compressed text file scored as one document, decompressed a part at a
    time while it is scored, never whole.

    Attributes:
        name: the path, as given.
        num_bytes: the text's size decompressed (the bytes as stored, once decompressed).
        errors: ``"strict"`` or ``"replace"``, as for :func:`crossent.data.read_documents`.
    """

    name: str
    num_bytes: int
    errors: str = "strict"

    def parts(self, read_bytes: int = _READ_BYTES) -> Iterator[str]:
        """The decoded text in consecutive parts (as :meth:`FileDocument.parts`).

        Raises:
            ValueError: the file cannot be read or decompressed, or holds invalid UTF-8 with
                ``errors="strict"`` (naming the byte offset in the decompressed text).
        """
        with open_binary(self.name) as file:
            yield from decode_parts(file, self.name, self.errors, read_bytes)


def decode_parts(file: IO[bytes], name: str, errors: str, read_bytes: int) -> Iterator[str]:
    """The UTF-8 text of ``file`` in parts of about ``read_bytes`` bytes, never cut inside a
    character; invalid bytes named by their offset in ``file``."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors=errors)
    offset = 0
    try:
        while data := file.read(read_bytes):
            pending = len(decoder.getstate()[0])
            try:
                yield decoder.decode(data)
            except UnicodeDecodeError as error:
                where = offset - pending + error.start
                raise InputError(
                    f"{name} is not valid UTF-8: at byte offset {where}", *REPLACE
                ) from None
            offset += len(data)
        pending = len(decoder.getstate()[0])
        yield decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise InputError(
            f"{name} is not valid UTF-8: it ends inside a character, at byte offset "
            f"{offset - pending}",
            *REPLACE,
        ) from None


Text = Document | FileDocument | CompressedDocument


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
