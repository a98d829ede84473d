"""Checksums of the folders crossent writes, so that a damaged file is named, never loaded.

safetensors checks its header but not its data, and a model directory has no checksum at all:
a truncated download, a disk error or a half-copied folder can give a model that loads and
computes wrong numbers. So every folder crossent writes for itself (a training checkpoint,
a converted GGUF in the model cache) gets ``crossent_checksums.json``: each file's size and
SHA-256. :func:`verify_checksums` reads it back before the folder is used and names the first
file that is missing, truncated or changed. Folders without the file (written by other tools)
are loaded as they are.

Hashing costs about a second per 500 MB, paid once per load.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from pathlib import Path

from crossent.files import write_text_atomically

__all__ = ["CHECKSUMS_FILE", "verify_checksums", "write_checksums"]

CHECKSUMS_FILE = "crossent_checksums.json"
_BLOCK = 1 << 22


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
        path for path in folder.rglob("*") if path.is_file() and path.name != CHECKSUMS_FILE
    )
    record = {
        str(path.relative_to(folder)): {"bytes": path.stat().st_size, "sha256": _sha256(path)}
        for path in files
    }
    write_text_atomically(folder / CHECKSUMS_FILE, json.dumps(record, indent=1) + "\n")


def verify_checksums(folder: Path, names: Collection[str] | None = None) -> None:
    """Check ``folder`` against its ``crossent_checksums.json``, when it has one.

    Args:
        folder: the folder.
        names: check only these files (paths relative to ``folder``); None: every one listed.

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
    for name, (size, sha256) in expected.items():
        if names is not None and name not in names:
            continue
        path = folder / name
        if not path.is_file():
            raise ValueError(f"{path} is missing from {folder}")
        actual = path.stat().st_size
        if actual != size:
            state = "truncated" if actual < size else "damaged"
            raise ValueError(f"{path} is {state}: {actual} bytes, but {size} were written")
        if _sha256(path) != sha256:
            raise ValueError(f"{path} is damaged: its SHA-256 is not the one it was written with")
