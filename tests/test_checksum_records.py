"""Checksums hashed once per file in crossent's cache (issue 14, start-up), never trusted past a
change (issue 15): the record of a verified file vouches for it only while its ``stat`` is the
same, and any change made through the file system, even one that puts the old size and
modification time back, is hashed again and named.

The oracle is the file's bytes: a flipped byte must be found; the count of files hashed is read
by wrapping the hash function, whose answers are left as they are.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from crossent import checksums
from crossent.checksums import VERIFIED_FILE, verify_checksums, write_checksums


def _settled_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "entry"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(bytes(range(256)) * 64)
    (folder / "config.json").write_text("{}")
    write_checksums(folder)
    time.sleep(2.1)  # the record is kept only once a file's last change is two seconds old
    return folder


def _hashed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = checksums._sha256

    def counting(path: Path) -> str:
        seen.append(path.name)
        return real(path)

    monkeypatch.setattr(checksums, "_sha256", counting)
    return seen


def test_a_verified_file_is_not_hashed_again_until_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _settled_folder(tmp_path)
    seen = _hashed(monkeypatch)
    verify_checksums(folder, remember=True)
    assert sorted(seen) == ["config.json", "weights.bin"]
    assert (folder / VERIFIED_FILE).is_file()
    seen.clear()
    verify_checksums(folder, remember=True)
    assert seen == []
    verify_checksums(folder)  # without remember: every file hashed, as training does
    assert sorted(seen) == ["config.json", "weights.bin"]


def test_a_change_that_restores_size_and_mtime_is_still_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _settled_folder(tmp_path)
    verify_checksums(folder, remember=True)
    weights = folder / "weights.bin"
    before = weights.stat()
    data = bytearray(weights.read_bytes())
    data[100] ^= 0x01
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))  # hide the write's mtime
    assert weights.stat().st_size == before.st_size
    with pytest.raises(ValueError, match="its SHA-256 is not the one it was written with"):
        verify_checksums(folder, remember=True)


def test_a_damaged_record_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _settled_folder(tmp_path)
    (folder / VERIFIED_FILE).write_text("[not a record")
    seen = _hashed(monkeypatch)
    verify_checksums(folder, remember=True)
    assert sorted(seen) == ["config.json", "weights.bin"]
