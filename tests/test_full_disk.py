"""A full disk while writing outputs (issue 15): the earlier file stays intact, no temporary file
is left behind, and the command exits 1 with one line.

The disk is really full: a small tmpfs mounted for the test and filled to its last byte.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from crossent.cli import main
from crossent.failures import RunError
from crossent.files import write_text_atomically
from crossent.training import train
from training.tiny_runs import tiny_config, write_text


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """An empty 16 MiB tmpfs, unmounted afterwards."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount_point)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN): {mounted.stderr}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _fill(disk: Path) -> None:
    """Write zeros into ``disk/filler`` until no byte is left."""
    descriptor = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 16, 4096, 1):
            with pytest.raises(OSError, match="No space left") as info:
                _write_forever(descriptor, bytes(size))
            assert info.value.errno == errno.ENOSPC
    finally:
        os.close(descriptor)
    assert os.statvfs(disk).f_bavail == 0


def _write_forever(descriptor: int, block: bytes) -> None:
    while True:
        os.write(descriptor, block)


def _contents(folder: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != "filler"
    }


def test_a_file_on_a_full_disk(disk: Path) -> None:
    target = disk / "results" / "eval.json"
    write_text_atomically(target, '{"earlier": true}\n')
    _fill(disk)
    with pytest.raises(RunError, match=r"^cannot write .*eval\.json: no space left on its disk"):
        write_text_atomically(target, "x" * 100_000)
    assert target.read_text() == '{"earlier": true}\n'
    assert sorted(path.name for path in target.parent.iterdir()) == ["eval.json"]


def test_eval_outputs_on_a_full_disk(disk: Path) -> None:
    earlier = {name: f"earlier {name}\n" for name in ("eval.json", "tokens.jsonl", "report.html")}
    for name, text in earlier.items():
        (disk / name).write_text(text)
    _fill(disk)
    done = subprocess.run(
        [sys.executable, "-m", "crossent", "eval", "--max-tokens", "16",
         "--json", str(disk / "eval.json"), "--per-token", str(disk / "tokens.jsonl"),
         "--report", str(disk / "report.html")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("crossent: error: cannot write "), done.stderr
    assert "no space left on its disk" in line
    assert "Traceback" not in done.stderr
    assert _contents(disk) == {name: text.encode() for name, text in earlier.items()}


def test_a_checkpoint_on_a_full_disk(disk: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = write_text(disk.parent)
    run = disk / "run"
    train(tiny_config(text, run, max_steps=4), until_step=2)
    kept = _contents(run)
    _fill(disk)
    assert main(["train", "--resume", str(run)]) == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"crossent: error: cannot write {run}/"), line
    assert "no space left on its disk" in line
    now = _contents(run)
    for name in ("last", "best"):
        ours = {key: value for key, value in now.items() if key.startswith(f"{name}/")}
        assert ours == {key: value for key, value in kept.items() if key.startswith(f"{name}/")}
    assert not [path.name for path in run.iterdir() if path.name.startswith((".last-", ".best-"))]
    assert not list(run.rglob("*.tmp"))
