"""Checksums of the folders crossent writes, so that a damaged file is named, never loaded.

safetensors checks its header but not its data, and a model directory has no checksum at all:
a truncated download, a disk error or a half-copied folder can give a model that loads and
computes wrong numbers. So every folder crossent writes for itself (a training checkpoint,
a converted GGUF in the model cache) gets ``crossent_checksums.json``: each file's size and
SHA-256. :func:`verify_checksums` reads it back before the folder is used and names the first
file that is missing, truncated or changed. Folders without the file (written by other tools)
are loaded as they are.

Hashing costs about a second per 500 MB. crossent's own model cache pays it once per file, not
once per load (``remember=True``): a file whose hash matched is recorded in
``crossent_verified.json`` with its size, inode, and modification and change times, and a later
check whose ``stat`` still gives the same five values takes the hash as checked. Any change made
through the file system (a write, a truncation, a copy or rename over it, even ``touch`` with an
old date) moves the change time, which no program can set back, so such a file is hashed
again. What this does not see is a disk changing bytes at rest without the file system knowing;
training checkpoints, which a user moves between machines, are hashed on every load. A file is
recorded only once its last change is two seconds old, so a change within the file system's
timestamp granularity cannot hide behind the record.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Collection
from pathlib import Path

from crossent.files import write_text_atomically

__all__ = ["CHECKSUMS_FILE", "VERIFIED_FILE", "verify_checksums", "write_checksums"]

CHECKSUMS_FILE = "crossent_checksums.json"
# Beside it, with remember=True: the files already hashed, by their stat (the module docstring).
VERIFIED_FILE = "crossent_verified.json"
_BLOCK = 1 << 22
# A file changed this recently may share its change time with a later change: not recorded.
_SETTLED_NS = 2_000_000_000


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def write_checksums(folder: Path) -> None:
    """Record the size and SHA-256 of every file in ``folder`` (recursively) in
    ``folder/crossent_checksums.json``."""
    files = sorted(
        path
        for path in folder.rglob("*")
        if path.is_file() and path.name not in (CHECKSUMS_FILE, VERIFIED_FILE)
    )
    record = {
        str(path.relative_to(folder)): {"bytes": path.stat().st_size, "sha256": _sha256(path)}
        for path in files
    }
    write_text_atomically(folder / CHECKSUMS_FILE, json.dumps(record, indent=1) + "\n")


def verify_checksums(
    folder: Path, names: Collection[str] | None = None, *, remember: bool = False
) -> None:
    """Check ``folder`` against its ``crossent_checksums.json``, when it has one.

    Args:
        folder: the folder.
        names: check only these files (paths relative to ``folder``); None: every one listed.
        remember: skip hashing a file whose ``stat`` is the one recorded when its hash last
            matched, and record the files hashed (the module docstring); for crossent's own
            cache, whose folder it writes into.

    Raises:
        ValueError: one line naming the first file that is missing, has another size
            (truncated) or another SHA-256 (changed), or saying the checksum file is unreadable.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "weights").write_bytes(b"1234")
        >>> write_checksums(folder)
        >>> _ = (folder / "weights").write_bytes(b"12")
        >>> try:
        ...     verify_checksums(folder)
        ... except ValueError as error:
        ...     print(str(error).removeprefix(str(folder)))
        /weights is truncated: 2 bytes, but 4 were written
    """
    saved = folder / CHECKSUMS_FILE
    if not saved.is_file():
        return
    try:
        record = json.loads(saved.read_text(encoding="utf-8"))
        expected = {
            name: (int(entry["bytes"]), str(entry["sha256"])) for name, entry in record.items()
        }
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        raise ValueError(
            f"{saved} is damaged: it is not the checksum list crossent wrote"
        ) from None
    verified = _read_verified(folder) if remember else {}
    changed = False
    for name, (size, sha256) in expected.items():
        if names is not None and name not in names:
            continue
        path = folder / name
        if not path.is_file():
            raise ValueError(f"{path} is missing from {folder}")
        status = path.stat()
        if status.st_size != size:
            state = "truncated" if status.st_size < size else "damaged"
            raise ValueError(f"{path} is {state}: {status.st_size} bytes, but {size} were written")
        stamp = _stamp(status, sha256)
        if verified.get(name) == stamp:
            continue
        if _sha256(path) != sha256:
            raise ValueError(f"{path} is damaged: its SHA-256 is not the one it was written with")
        if remember and time.time_ns() - status.st_ctime_ns > _SETTLED_NS:
            verified[name] = stamp
            changed = True
    if changed:
        with contextlib.suppress(OSError):  # a read-only cache is hashed on every load
            write_text_atomically(folder / VERIFIED_FILE, json.dumps(verified, indent=1) + "\n")


def _stamp(status: os.stat_result, sha256: str) -> list[str | int]:
    """What a file's record holds: the hash it matched and the stat that vouches for it."""
    return [sha256, status.st_size, status.st_ino, status.st_mtime_ns, status.st_ctime_ns]


def _read_verified(folder: Path) -> dict[str, list[str | int]]:
    """The records of ``folder``'s files already hashed; none when unreadable."""
    try:
        record = json.loads((folder / VERIFIED_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}
