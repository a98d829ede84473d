"""Atomic writes: the whole new file or the old one, with the mode a plain open() gives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crossent.files import write_bytes_atomically, write_text_atomically


def test_bytes_are_written_exactly_with_the_usual_mode(tmp_path: Path) -> None:
    path = tmp_path / "out.bin"
    data = bytes(range(256)) + b"\r\n\n\r"
    write_bytes_atomically(path, data)
    assert path.read_bytes() == data
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [entry.name for entry in tmp_path.iterdir()] == ["out.bin"]


def test_text_is_utf8_with_its_line_endings(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    write_text_atomically(path, "café\r\nb\n")
    assert path.read_bytes() == b"caf\xc3\xa9\r\nb\n"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with pytest.raises(TypeError):
        write_bytes_atomically(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert [entry.name for entry in tmp_path.iterdir()] == ["out.bin"]
