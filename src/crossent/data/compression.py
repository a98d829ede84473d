"""Opening a file that may be compressed: plain, gzip (``.gz``) or zstd (``.zst``).

A file's compression is told by its name's last extension; what is inside is told by the
extension before it (``corpus.jsonl.gz`` is JSON Lines, ``book.txt.zst`` a text). The file is
decompressed as it is read, never whole. A corrupt or truncated compressed file is a
ValueError of one line naming the file and the problem, wherever reading finds it. zstd needs
the ``zstandard`` package (the ``corpus`` extra); gzip is in Python.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from crossent.extras import MissingExtraError

COMPRESSIONS = {".gz": "gzip", ".zst": "zstd"}


def compression_of(path: str) -> str | None:
    """``"gzip"``, ``"zstd"`` or None (not compressed), by the last extension of ``path``."""
    return next((kind for suffix, kind in COMPRESSIONS.items() if path.endswith(suffix)), None)


def inner_name(path: str) -> str:
    """``path`` without its compression extension: what the decompressed file would be."""
    kind = compression_of(path)
    return path.rsplit(".", 1)[0] if kind is not None else path


@contextmanager
def open_binary(path: str) -> Iterator[IO[bytes]]:
    """``path`` opened for reading its (decompressed) bytes.

    Raises:
        ValueError: the file cannot be opened, or is not valid for its compression (raised
            where the block reads the damage).
        MissingExtraError: a ``.zst`` file without the ``zstandard`` package.
    """
    kind = compression_of(path)
    try:
        if kind == "zstd":
            file: IO[bytes] = _open_zstd(path)
        elif kind == "gzip":
            file = gzip.open(path, "rb")  # type: ignore[assignment]  # noqa: SIM115
        else:
            file = open(path, "rb")  # noqa: SIM115 (closed below, after the errors are mapped)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file or directory") from None
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror}") from None
    with file:
        try:
            yield file
        except (EOFError, zlib.error, gzip.BadGzipFile) as error:
            raise ValueError(f"{path} is not a valid {kind} file: {_reason(error)}") from None
        except OSError as error:
            raise ValueError(f"cannot read {path}: {error.strerror or error}") from None
        except Exception as error:
            if kind == "zstd" and type(error).__name__ == "ZstdError":
                raise ValueError(f"{path} is not a valid zstd file: {_reason(error)}") from None
            raise


def _open_zstd(path: str) -> IO[bytes]:
    try:
        import zstandard
    except ImportError:
        raise MissingExtraError(
            f"reading {path} needs the 'corpus' extra (zstandard missing): "
            "pip install 'crossent[corpus]'"
        ) from None
    raw = open(path, "rb")  # noqa: SIM115 (the reader closes it)
    reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    return io.BufferedReader(reader)


def _reason(error: BaseException) -> str:
    """The error's message on one line, lower-cased at the start."""
    message = " ".join(str(error).split()) or type(error).__name__
    return message[0].lower() + message[1:]
