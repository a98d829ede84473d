"""Atomic writes: the whole new file or folder or the old one, with the mode open() gives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from crossent.files import (
    check_outputs,
    readable_folder,
    recover_folder,
    remove_stale_temporaries,
    staging_folder,
    write_bytes_atomically,
    write_folder_atomically,
    write_text_atomically,
)


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


def test_an_interrupted_folder_write_leaves_nothing(tmp_path: Path) -> None:
    def write_then_fail(folder: Path) -> None:
        (folder / "config.json").write_text("{}")
        raise KeyboardInterrupt

    target = tmp_path / "models" / "entry"
    with pytest.raises(KeyboardInterrupt):
        write_folder_atomically(target, write_then_fail)
    assert os.listdir(tmp_path / "models") == []

    write_folder_atomically(target, lambda folder: (folder / "config.json").write_text("{}"))
    assert os.listdir(tmp_path / "models") == ["entry"]
    assert (target / "config.json").read_text() == "{}"


def test_a_folder_is_replaced_whole_or_kept_when_done(tmp_path: Path) -> None:
    target = tmp_path / "run" / "best"
    write_folder_atomically(target, lambda folder: (folder / "old.txt").write_text("old"))
    write_folder_atomically(target, lambda folder: (folder / "new.txt").write_text("new"))
    assert os.listdir(target) == ["new.txt"]  # replaced as a whole: old.txt is gone
    # With `done`, a finished folder someone else put there first is kept.
    write_folder_atomically(
        target, lambda folder: (folder / "mine.txt").write_text("x"), done=lambda f: f.is_dir()
    )
    assert os.listdir(target) == ["new.txt"]
    assert sorted(os.listdir(target.parent)) == ["best"]


def test_outputs_may_not_overwrite_inputs_or_each_other(tmp_path: Path) -> None:
    source = tmp_path / "book.txt"
    source.write_text("text")
    with pytest.raises(ValueError, match="is also input"):
        check_outputs([str(source)], [str(source)])
    with pytest.raises(ValueError, match="is also output"):
        check_outputs([], [str(tmp_path / "a.json"), str(tmp_path / "a.json")])
    # A missing folder is created when the output is written; a file in its way is refused.
    check_outputs(["-"], [str(tmp_path / "missing" / "deeper" / "a.json")])
    with pytest.raises(ValueError, match=r"book\.txt is a file, not a folder"):
        check_outputs([], [str(source / "a.json")])
    with pytest.raises(ValueError, match="is a folder, not a file"):
        check_outputs([], [str(tmp_path)])
    check_outputs(["-", str(source)], [None, str(tmp_path / "a.json")])


def test_a_folder_left_between_two_renames_is_put_back(tmp_path: Path) -> None:
    """What a process killed inside ``replace_folder`` leaves: the target renamed aside and the
    new version in its staging folder, or a half-written staging folder."""
    target = tmp_path / "last"
    target.mkdir()
    (target / "weights").write_bytes(b"step 4")
    staging = staging_folder(target)
    (staging / "weights").write_bytes(b"step 5, half")
    os.replace(target, tmp_path / ".last-old")  # the kill came after the first rename
    assert readable_folder(target) == tmp_path / ".last-old"
    recover_folder(target)
    assert (target / "weights").read_bytes() == b"step 4"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["last"]
    recover_folder(target)  # a whole folder is left as it is
    assert (target / "weights").read_bytes() == b"step 4"


def test_an_output_linked_to_an_input_or_inside_a_folder_read_is_refused(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    book = corpus / "book.txt"
    book.write_text("text")
    link = tmp_path / "eval.json"
    link.symlink_to(book)
    with pytest.raises(ValueError, match=r"^output .*eval\.json is also input .*book\.txt"):
        check_outputs([str(book)], [str(link)])
    with pytest.raises(ValueError, match=r"is inside input .*corpus, which is read as text"):
        check_outputs([str(corpus)], [str(corpus / "results" / "eval.json")])
    check_outputs([str(corpus)], [str(tmp_path / "eval2.json")])  # beside it is fine
    assert book.read_text() == "text"


def test_a_write_killed_midway_leaves_a_temporary_that_recovery_removes(tmp_path: Path) -> None:
    target = tmp_path / "metrics.jsonl"
    target.write_text("the previous whole file\n", encoding="utf-8")
    writer = (
        "import sys, time\n"
        "from crossent.files import open_atomically\n"
        "with open_atomically(sys.argv[1]) as file:\n"
        "    file.write(b'half of a new')\n"
        "    file.flush()\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(60)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", writer, str(target)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "writing\n"
    process.send_signal(signal.SIGKILL)  # no handler, no finally: the temporary stays
    process.wait(timeout=30)
    left = [path.name for path in tmp_path.iterdir() if path.name.endswith(".tmp")]
    assert len(left) == 1
    assert left[0].startswith(".metrics.jsonl.")
    keep = tmp_path / ".a-folder.x.tmp"  # a folder, not a temporary file: left alone
    keep.mkdir()
    remove_stale_temporaries(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == [".a-folder.x.tmp", "metrics.jsonl"]
    assert target.read_text(encoding="utf-8") == "the previous whole file\n"
