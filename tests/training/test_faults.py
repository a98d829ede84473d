"""Training when the world misbehaves: a second run on the same folder, a run killed outright,
weights that turn NaN (issue 15).

Each fault is caused for real: a real ``crossent train`` process holding its folder and then
killed with SIGKILL, and NaN written into a real checkpoint's safetensors file. The oracle is
what the folder held before the fault (its bytes) and PyTorch's own ``isfinite``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch

from crossent.checksums import CHECKSUMS_FILE, write_checksums
from crossent.cli import main
from crossent.failures import RunError
from crossent.training import train
from crossent.training.checkpoints import saved_run
from crossent.training.config import check_new_output
from crossent.training.lock import LOCK_FILE
from crossent.training.records import read_metrics
from training.tiny_runs import cli_flags, tiny_config, wait_for_evaluations, write_text

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _crossent(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crossent", *arguments],
        capture_output=True, text=True, check=False, env=ENV, timeout=300,
    )  # fmt: skip


def test_a_second_run_on_a_busy_folder_is_refused_and_a_killed_run_frees_it(
    tmp_path: Path,
) -> None:
    text = write_text(tmp_path)
    run = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-m", "crossent", "train", *cli_flags(text), "--max-steps", "100000",
         "--out", str(run)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    try:
        wait_for_evaluations(run / "metrics.jsonl", first, 2)
        before = (run / "metrics.jsonl").read_bytes()
        second = _crossent("train", "--resume", str(run))
        assert second.returncode == 1, second.stderr
        assert second.stderr.strip().splitlines() == [
            f"crossent: error: {run} is in use by another crossent train run (process "
            f"{first.pid}); wait for it to end, or give another --out"
        ]
        # A new run started there is refused before it looks at the lock: the folder is a run's.
        assert _crossent("train", *cli_flags(text), "--out", str(run)).returncode == 2
        assert first.poll() is None  # the first run goes on, its records untouched
        assert (run / "metrics.jsonl").read_bytes().startswith(before[: before.rfind(b"\n")])
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    assert first.returncode == -signal.SIGKILL
    # The kernel dropped the dead run's lock: the folder resumes at once, no file to delete.
    assert (run / LOCK_FILE).is_file()
    reached = saved_run(run).step
    resumed = _crossent("train", "--resume", str(run), "--max-steps", str(reached + 1))
    assert resumed.returncode == 0, resumed.stderr
    assert saved_run(run).step == reached + 1


def test_two_library_runs_on_one_folder_the_second_refused(tmp_path: Path) -> None:
    text = write_text(tmp_path)
    run = tmp_path / "run"
    refusals: list[str] = []

    def second_run(step: int, *_: object) -> None:
        if step == 1:
            with pytest.raises(RunError, match="is in use by another crossent train run") as info:
                train(tiny_config(text, run), resume=run)
            refusals.append(str(info.value))

    train(tiny_config(text, run, max_steps=2), progress=second_run)
    assert refusals == [
        f"{run} is in use by another crossent train run (process {os.getpid()}); wait for it "
        "to end, or give another --out"
    ]
    # Only the lock file left by a run killed before writing: a new run may start there.
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    (lonely / LOCK_FILE).write_text("12345\n")
    check_new_output(str(lonely))


def test_a_run_refused_at_the_start_leaves_no_folder(tmp_path: Path) -> None:
    text = write_text(tmp_path)
    missing = tmp_path / "missing.txt"
    with pytest.raises(ValueError, match=r"missing\.txt"):
        train(tiny_config(text, tmp_path / "new" / "run", data=(str(missing),)))
    assert not (tmp_path / "new").exists()


def _poison(checkpoint: Path) -> None:
    """One weight of ``checkpoint`` set to NaN, written beside it and renamed over it (a new
    file, so that ``best/``'s hard link to the old one keeps the old bytes), with checksums
    to match: a checkpoint saved with a NaN in it, not a damaged file."""
    weights_file = checkpoint / "model.safetensors"
    weights = safetensors.torch.load_file(weights_file)
    name = sorted(weights)[0]
    weights[name] = weights[name].clone()
    weights[name].view(-1)[0] = float("nan")
    staging = checkpoint / "poisoned.tmp"
    safetensors.torch.save_file(weights, staging)
    os.replace(staging, weights_file)
    (checkpoint / CHECKSUMS_FILE).unlink()  # only this name: best/'s hard link stays whole
    write_checksums(checkpoint)


def _contents(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_nan_weights_to_start_from_stop_at_step_0_and_write_nothing(tmp_path: Path) -> None:
    text = write_text(tmp_path)
    train(tiny_config(text, tmp_path / "base", max_steps=2))
    _poison(tmp_path / "base" / "best")
    tuned = tmp_path / "tuned"
    with pytest.raises(RunError, match=r"^step 0: the initial model's training loss is nan"):
        train(tiny_config(text, tuned, init=str(tmp_path / "base" / "best")))
    assert not tuned.exists()  # nothing was written, so the folder the run made is gone


def test_weights_turned_nan_stop_the_run_and_keep_last_and_best(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = write_text(tmp_path)
    run = tmp_path / "run"
    train(tiny_config(text, run, max_steps=6), until_step=2)
    _poison(run / "last")  # as a fault in memory would leave the next step's weights
    kept = {name: _contents(run / name) for name in ("last", "best")}
    best_weights = safetensors.torch.load_file(run / "best" / "model.safetensors")
    assert all(torch.isfinite(tensor).all() for tensor in best_weights.values())

    assert main(["train", "--resume", str(run)]) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == (
        "crossent: error: step 3: the training loss is nan; stopped before updating the "
        "weights, so last/ and best/ stay as saved (last/ at step 2); to skip such steps: "
        f"crossent train --resume {run} --skip-nonfinite"
    )
    assert {name: _contents(run / name) for name in ("last", "best")} == kept
    assert saved_run(run).step == 2

    # Skipping does not help weights that stay NaN: every step is skipped and counted, and the
    # evaluation that would save them stops the run instead.
    lines: list[str] = []
    with pytest.raises(RunError, match=r"^step 4: the validation loss is nan; stopped without"):
        train(
            tiny_config(text, tmp_path / "ignored", max_steps=6, skip_nonfinite=True),
            resume=run,
            log=lines.append,
        )
    assert lines == [
        "step 3: the training loss is nan; step skipped (1 so far)",
        "step 4: the training loss is nan; step skipped (2 so far)",
    ]
    assert {name: _contents(run / name) for name in ("last", "best")} == kept
    evaluations = [
        json.loads(line)["step"]
        for line in (run / "metrics.jsonl").read_text().splitlines()
        if json.loads(line)["kind"] == "eval"
    ]
    assert evaluations == [0, 2]


def _records(run: Path) -> list[dict[str, object]]:
    """metrics.jsonl without the wall-clock seconds, which no two runs share."""
    lines = (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "elapsed_s"} for line in lines]


def _evaluations(run: Path) -> int:
    try:
        return sum(record["kind"] == "eval" for record in _records(run))
    except (OSError, ValueError):  # not written yet
        return 0


def _kill(process: subprocess.Popen[str], run: Path, while_saving: bool, delay: float) -> bool:
    """SIGKILL ``process`` in the middle of writing a checkpoint (as soon as a staging folder of
    last/ or best/ appears), or ``delay`` seconds after its next new evaluation (between
    checkpoints, in the middle of a step); False when it ended first."""
    seen = _evaluations(run)
    while process.poll() is None:
        if while_saving and (any(run.glob(".last-*")) or any(run.glob(".best-*"))):
            break
        if not while_saving and _evaluations(run) > seen:
            time.sleep(delay)
            break
        time.sleep(0.002)
    if process.poll() is not None:
        return False
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    return True


def test_sigkill_at_any_point_then_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    text = write_text(tmp_path)
    flags = [*cli_flags(text), "--max-steps", "8", "--eval-every", "1"]
    straight = _crossent("train", *flags, "--out", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr

    run = tmp_path / "run"
    rng = random.Random(15)
    kills = 0
    while True:
        started = (run / "last").exists() or (run / ".last-old").exists()
        command = ["--resume", str(run)] if started else [*flags, "--out", str(run)]
        if not started and run.exists():
            shutil.rmtree(run)  # killed before its first checkpoint: nothing to resume
        process = subprocess.Popen(
            [sys.executable, "-m", "crossent", "train", *command],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV,
        )  # fmt: skip
        killed = kills < 6 and _kill(process, run, kills % 2 == 0, rng.uniform(0.0, 0.3))
        _, stderr = process.communicate(timeout=300)
        if not killed:
            assert process.returncode == 0, stderr
            break
        kills += 1
    assert kills == 6
    assert _records(run) == _records(tmp_path / "straight")
    for name in ("last", "best"):
        ours = (run / name / "model.safetensors").read_bytes()
        assert ours == (tmp_path / "straight" / name / "model.safetensors").read_bytes(), name
    leftovers = sorted(path.name for path in run.iterdir() if path.name.startswith("."))
    assert leftovers == [LOCK_FILE]


def test_a_torn_metrics_file_is_rebuilt_from_the_checkpoint_on_resume(tmp_path: Path) -> None:
    """``--resume`` never reads ``metrics.jsonl``: the checkpoint's training state holds every
    record, and the file is rewritten whole from them, so a file torn mid-line by a crash of
    the disk (or of whatever else wrote to it) costs nothing."""
    text = write_text(tmp_path)
    flags = [*cli_flags(text), "--max-steps", "6", "--eval-every", "1"]
    straight = _crossent("train", *flags, "--out", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr

    run = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "crossent", "train", *flags, "--out", str(run)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    wait_for_evaluations(run / "metrics.jsonl", process, 2)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    whole = (run / "metrics.jsonl").read_bytes()
    cut = whole.rfind(b"\n", 0, len(whole) - 1) + 1 + 7  # seven bytes into the last line
    (run / "metrics.jsonl").write_bytes(whole[:cut] + b'\x00{"kind": "ev')
    with pytest.raises(ValueError, match=r"metrics\.jsonl, line \d+: a metrics line is not valid"):
        read_metrics(run / "metrics.jsonl")  # what the torn file is to anyone who reads it

    resumed = _crossent("train", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr
    assert _records(run) == _records(tmp_path / "straight")
