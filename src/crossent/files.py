"""Writing files and folders so that an interrupted run never leaves a half-written one.

Every output crossent writes (JSON, per-token files, reports, figures, model conversions,
checkpoints) goes through here: the data is written under a temporary name beside its target and
renamed into place, so a reader sees the old file or the whole new one, never a part, and the
temporary is removed if writing fails or is interrupted.

Missing folders on the way to an output are created, for every output alike (a JSON file, a
report, a per-token file, a figure, a training run's folder): ``--json results/run1/eval.json``
needs no ``mkdir`` first. They are created only when the output is written, so a run refused
at the start leaves nothing behind; :func:`check_outputs` refuses up front a path whose folder
could never be made (a file stands where a folder must be).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from crossent.failures import RunError

# Below this many free bytes after a failed write, the disk is taken to be what failed it:
# PyTorch and safetensors report a full disk as their own errors, not as ENOSPC.
FULL_DISK_BYTES = 1 << 20


def write_text_atomically(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` as UTF-8, atomically (see :func:`write_bytes_atomically`).

    Line endings are written as they are in ``text``, on every platform.
    """
    write_bytes_atomically(path, text.encode("utf-8"))


def write_bytes_atomically(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename it.

    The folders on the way to ``path`` are created when missing.
    """
    with open_atomically(path) as file:
        file.write(data)


@contextlib.contextmanager
def open_atomically(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary file to write ``path`` through as it goes: a temporary beside it, renamed to
    ``path`` when the block ends, removed instead if the block raises.

    For outputs written a part at a time (``crossent eval --per-token``), so a long run holds
    none of it in memory and a reader still never sees a part. The folders on the way to
    ``path`` are created when missing; a full disk is :func:`full_disk_as_run_error`'s line.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with full_disk_as_run_error(target):
        handle, temporary = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
        )
        try:
            # mkstemp makes the file private (0600); give it the mode a plain open() would.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(temporary, 0o666 & ~umask)
            with os.fdopen(handle, "wb") as file:
                yield file
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def staging_folder(target: Path) -> Path:
    """A new empty folder beside ``target`` (same file system, so a rename can move it there)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))


def write_folder_atomically(
    target: Path, write: Callable[[Path], object], *, done: Callable[[Path], bool] | None = None
) -> None:
    """Run ``write`` into a staging folder beside ``target``, then put it where ``target`` is.

    With ``done``, a ``target`` that appeared meanwhile (another process finished the same
    folder first) and passes ``done`` is kept instead of replaced; without it, an existing
    ``target`` is replaced as a whole by :func:`replace_folder`.
    """
    staging = staging_folder(target)
    try:
        with full_disk_as_run_error(target):
            write(staging)
        if done is None:
            replace_folder(staging, target)
            return
        try:
            os.replace(staging, target)
        except OSError:
            if not done(target):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def replace_folder(staging: Path, folder: Path) -> None:
    """Put ``staging`` where ``folder`` is, the old one removed only once the new is in place."""
    old = folder.with_name(f".{folder.name}-old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(staging, folder)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def full_disk_as_run_error(target: Path) -> Iterator[None]:
    """Turn a write into ``target`` that failed for lack of space into one line (a
    :class:`~crossent.failures.RunError`: exit code 1) saying so and what was kept.

    A full disk is an ``OSError`` with ``ENOSPC`` (or ``EDQUOT``, ``EFBIG``) from Python's own
    writes, but PyTorch's ``torch.save`` and safetensors raise errors of their own; so any error
    after which the target's file system has under :data:`FULL_DISK_BYTES` free counts too.
    """
    try:
        yield
    except Exception as error:
        full = isinstance(error, OSError) and error.errno in (
            errno.ENOSPC, errno.EDQUOT, errno.EFBIG,
        )  # fmt: skip
        free = shutil.disk_usage(next(p for p in (target, *target.parents) if p.exists())).free
        if not (full or free < FULL_DISK_BYTES):
            raise
        kept = f"the earlier {target.name} is kept" if target.exists() else "nothing was written"
        raise RunError(
            f"cannot write {target}: no space left on its disk ({free:,} bytes free); {kept}"
        ) from None


def recover_folder(folder: Path) -> None:
    """Undo what a process killed inside :func:`write_folder_atomically` left of ``folder``.

    Killed between :func:`replace_folder`'s two renames, ``folder`` is missing and its previous
    version waits as ``.NAME-old``: it is put back. Its staging folders (``.NAME-*``), whole or
    half-written, are removed. Only for folders no other process is writing now (a training run
    calls it on its own folder under its lock).
    """
    old = folder.with_name(f".{folder.name}-old")
    if not folder.exists() and old.is_dir():
        os.replace(old, folder)
    for leftover in folder.parent.glob(f".{folder.name}-*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)


def remove_stale_temporaries(folder: Path) -> None:
    """Remove the temporaries a process killed inside :func:`open_atomically` left in
    ``folder`` (``.NAME.*.tmp``: the target ``NAME`` itself was never touched). Only for a
    folder no other process is writing now (a training run calls it on its own under its lock).
    """
    for leftover in folder.glob(".*.tmp"):
        if leftover.is_file():
            leftover.unlink(missing_ok=True)


def readable_folder(folder: Path) -> Path:
    """``folder``, or the previous version a killed :func:`replace_folder` left beside it."""
    old = folder.with_name(f".{folder.name}-old")
    return old if not folder.exists() and old.is_dir() else folder


def check_html_path(option: str, path: str | None) -> None:
    """Refuse an HTML output whose name does not end in ``.html`` (or ``.htm``)."""
    if path is not None and Path(path).suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"{option} {path} must end in .html")


def check_outputs(inputs: Sequence[str], outputs: Sequence[str | None]) -> None:
    """Refuse outputs that would overwrite an input or each other, or cannot be written.

    Called before any work starts, so that nothing the user gave is lost and a long run does not
    fail at its end. An output's missing folders are fine (they are created when it is
    written), but not a folder where the file must go, nor a file where a folder must be.
    ``-`` (stdin) among the inputs names no file; ``None`` outputs are skipped. Paths are
    compared after symlinks are resolved, so an output that is a link to an input is that input;
    an output inside a folder being read is refused too (a later run would read it as text).
    """
    seen = {Path(path).resolve(): f"input {path}" for path in inputs if path != "-"}
    folders = {path: name for path, name in seen.items() if path.is_dir()}
    for output in outputs:
        if output is None:
            continue
        resolved = Path(output).resolve()
        if resolved in seen:
            raise ValueError(f"output {output} is also {seen[resolved]}; it would be overwritten")
        inside = next((name for path, name in folders.items() if path in resolved.parents), None)
        if inside is not None:
            raise ValueError(
                f"output {output} is inside {inside}, which is read as text; write it elsewhere"
            )
        if resolved.is_dir():
            raise ValueError(f"output {output} is a folder, not a file")
        folder = next(parent for parent in resolved.parents if parent.exists())
        if not folder.is_dir():
            raise ValueError(f"output {output}: {folder} is a file, not a folder")
        seen[resolved] = f"output {output}"
