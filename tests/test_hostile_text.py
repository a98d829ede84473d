"""Hostile text files (issue 15): one line of 2 GB, only whitespace, a NUL byte, invalid UTF-8 at
the very end. Each gets a clear answer, and memory stays bounded.

The answers, as documented in :mod:`crossent.data.sources`: whitespace and NUL are text, scored
like any other (the tokenizer is the oracle of their tokens, the file of their bytes); invalid
UTF-8 is one line naming the file, the byte offset and ``--errors replace``, exit 2; a file of one
2 GB line is streamed and tokenized in pieces (:mod:`crossent.data.tokens`), so ``crossent eval
--max-tokens`` reads a few MiB of it and its peak memory is well below the file's size.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from crossent.cli import main
from crossent.data import read_documents
from crossent.data.sources import FileDocument, InputError
from tiny_lm import SAMPLE, bpe, save_llama

CHUNK = 1 << 20
LARGE_CHUNKS = 2048  # 2 GiB


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_llama(tmp_path_factory.mktemp("tiny"), bpe([SAMPLE] * 20), seed=0)


def _eval(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, str, str]:
    code = main(["eval", "--no-progress", *arguments])
    out, err = capsys.readouterr()
    return code, out, err


def test_whitespace_and_nul_are_text_scored_like_any_other(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = {"blank.txt": b"  \n\t\n \r\n   ", "nul.txt": b"before\x00after\n\x00"}
    for name, raw in files.items():
        (tmp_path / name).write_bytes(raw)
    out = tmp_path / "out.json"
    code, _, err = _eval(
        capsys, "--model", str(tiny), *(f"--data={tmp_path / name}" for name in files),
        "--json", str(out),
    )  # fmt: skip
    assert code == 0, err
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    documents = json.loads(out.read_text(encoding="utf-8"))["documents"]
    for document, raw in zip(documents, files.values(), strict=True):
        ids = tokenizer(raw.decode("utf-8"), add_special_tokens=False)["input_ids"]
        assert document["tokens"] == len(ids)  # after the BOS prefix, every token is scored
        assert document["bytes"] == len(raw)


@pytest.mark.parametrize("tail", [b"\xe2\x82", b"\xff", b"\xc3"])
def test_invalid_utf8_at_the_very_end_is_one_line_naming_its_offset(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], tail: bytes
) -> None:
    body = b"All is well until the last byte. " * 3
    path = tmp_path / "bad.txt"
    path.write_bytes(body + tail)
    code, out, err = _eval(capsys, "--model", str(tiny), "--data", str(path))
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert str(path) in err
    assert f"offset {len(body)}" in err
    assert "--errors replace" in err
    # the same file streamed (as a file over 8 MiB is) names the same offset
    (document,) = read_documents([str(path)], stream_bytes=8)
    assert isinstance(document, FileDocument)
    with pytest.raises(InputError, match=f"offset {len(body)} "):
        list(document.parts(read_bytes=7))
    # --errors replace scores it: bytes counted as stored
    replaced = tmp_path / "replaced.json"
    code, _, err = _eval(
        capsys, "--model", str(tiny), "--data", str(path), "--errors", "replace",
        "--json", str(replaced),
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(replaced.read_text())["totals"]["bytes"] == len(body) + len(tail)


def _peak_memory(command: list[str], stderr: Path, timeout: float) -> tuple[int, int]:
    """Run ``command``; its exit code and peak resident memory in bytes.

    The peak is the child's own ``VmHWM`` (``/proc/PID/status``), read every 20 ms while it
    runs: a high-water mark, so only a peak in the last 20 ms could be missed. Not wait4's
    ``ru_maxrss``: Linux carries the parent's high-water mark at the fork into the child's
    across exec, so a child of a pytest process holding a few GiB (a real model loaded earlier in
    the session) would report those GiB as its own.
    """
    with stderr.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=log,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )  # fmt: skip
    deadline = time.monotonic() + timeout
    peak = 0
    status = Path(f"/proc/{process.pid}/status")
    while process.poll() is None:
        try:
            line = next(row for row in status.read_text().splitlines() if row.startswith("VmHWM:"))
            peak = max(peak, int(line.split()[1]) * 1024)  # kB
        except (OSError, StopIteration):
            pass  # exiting: the mm (and its line) is already gone
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            pytest.fail(f"{' '.join(command[:4])} did not finish within {timeout:g} s")
        time.sleep(0.02)
    assert peak > 0, "the child's VmHWM was never read"
    return process.returncode, peak


@pytest.mark.slow
def test_a_2_gb_file_of_one_line_is_read_in_bounded_memory(tiny: Path, tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    if free < 5 << 30:
        pytest.skip(f"a 2 GiB file needs about 5 GiB free in {tmp_path}; {free >> 20} MiB are")
    path = tmp_path / "one-line.txt"
    chunk = (b"the quick brown fox jumps over the lazy dog " * (CHUNK // 40))[:CHUNK]
    out, log = tmp_path / "out.json", tmp_path / "stderr.txt"
    try:
        with path.open("wb") as file:
            for _ in range(LARGE_CHUNKS):
                file.write(chunk)
        size = path.stat().st_size
        assert size == CHUNK * LARGE_CHUNKS
        assert b"\n" not in chunk
        # held whole, the line would take minutes of copying and gigabytes of memory
        code, peak = _peak_memory(
            [sys.executable, "-m", "crossent", "eval", "--model", str(tiny), "--data", str(path),
             "--max-tokens", "200", "--no-progress", "--json", str(out)],
            log, timeout=240,
        )  # fmt: skip
    finally:
        path.unlink(missing_ok=True)
    assert code == 0, log.read_text()
    # about 0.95 GiB measured: the process and its model (0.47 GiB on a one-line file) and the
    # tokenizer's work on one piece of a million characters, whatever the file's size
    assert peak < 3 * size // 4, f"peak memory {peak >> 20} MiB on a file of {size >> 20} MiB"
    record = json.loads(out.read_text(encoding="utf-8"))
    assert record["totals"]["tokens"] == 200
    assert record["scoring"]["stopped_early"] is True
