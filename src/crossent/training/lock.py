"""One run at a time in an output folder: a lock that a killed run cannot leave stuck.

Two ``crossent train`` runs writing to the same folder would interleave checkpoints and
``metrics.jsonl``, and a resume would continue a mixture of both. So a run holds an exclusive
``flock`` on ``OUT/.crossent-train.lock`` for as long as it runs, and a second run refuses at
once, naming the first's process id. The lock belongs to the open file, not to the file's
existence: the kernel releases it when its process ends, however it ends (SIGKILL, a crash, a
power cut on a local file system), so there is never a stale lock to delete by hand. The file
itself stays in the folder (deleting it would let a third run lock a new file while the second
still holds the old one), except when the run made the folder and wrote nothing else into it:
a run refused at the start leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from crossent.failures import RunError

LOCK_FILE = ".crossent-train.lock"


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold ``out``'s lock while the ``with`` block runs (creating ``out`` if needed).

    Raises:
        RunError: another process holds the lock: a run is writing to ``out`` now.
        OSError: ``out`` cannot be created or the lock file cannot be opened.
    """
    made = [folder for folder in (out, *out.parents) if not folder.exists()]
    out.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise RunError(
                f"{out} is in use by another crossent train run ({_holder(descriptor)}); "
                "wait for it to end, or give another --out"
            ) from None
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()}\n".encode())
        yield
    finally:
        if made and os.listdir(out) == [LOCK_FILE]:
            (out / LOCK_FILE).unlink()
            for folder in made:  # innermost first
                folder.rmdir()
        os.close(descriptor)  # closing releases the lock


def _holder(descriptor: int) -> str:
    """Who holds the lock, as the holder wrote it (its process id)."""
    written = os.pread(descriptor, 64, 0).decode(errors="replace").strip()
    return f"process {written}" if written.isdigit() else "process unknown"
