"""What a run shows while it trains: the training loss every --log-every steps (metrics.jsonl,
the progress bar, the plot), TensorBoard event files, and Ctrl-C (issue 11, item 14).

Oracles: a run logging every step for the means a coarser log must give (the same seed takes
the same steps), tensorboard's own EventAccumulator for the event files, and a real SIGINT to a
real ``crossent train`` process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from crossent.report import training as training_page
from crossent.training import train
from crossent.training.checkpoints import saved_run
from crossent.training.records import read_train_log
from training.tiny_runs import cli_flags, tiny_config, wait_for_evaluations, write_text

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def test_the_training_loss_is_logged_every_log_every_steps(tmp_path: Path) -> None:
    text = write_text(tmp_path)
    every_step = train(tiny_config(text, tmp_path / "a", max_steps=6, eval_every=3, log_every=1))
    shown: list[tuple[int, float]] = []
    coarse = train(
        tiny_config(text, tmp_path / "b", max_steps=6, eval_every=3, log_every=2),
        progress=lambda step, steps, tokens, loss: shown.append((step, loss)),
    )
    # every 2 steps, and at each evaluation (which closes the interval): 0, 2, 3, 4, 6
    assert [record.step for record in coarse.train_log] == [0, 2, 3, 4, 6]
    single = {record.step: record.train_loss for record in every_step.train_log}
    # each logged loss is the mean of the steps since the previous one (equal tokens per step)
    previous = 0
    for record in coarse.train_log[1:]:
        steps = range(previous + 1, record.step + 1)
        expected = sum(single[step] for step in steps) / len(steps)
        assert record.train_loss == pytest.approx(expected, rel=1e-9)
        previous = record.step
    assert coarse.train_log[0].train_loss == coarse.records[0].train_loss  # step 0
    assert read_train_log(tmp_path / "b" / "metrics.jsonl") == coarse.train_log
    # the progress bar shows the latest logged loss after each step
    logged = {record.step: record.train_loss for record in coarse.train_log}
    latest = [max(s for s in logged if s <= step) for step, _ in shown]
    assert [loss for _, loss in shown] == [logged[step] for step in latest]
    # the plot's training curve is the log
    figure = training_page._figure(coarse.records, coarse.train_log)
    (curve,) = [line for line in figure.axes[0].get_lines() if line.get_gid() == "train-loss"]
    assert np.asarray(curve.get_xdata()).tolist() == [0, 2, 3, 4, 6]
    assert np.asarray(curve.get_ydata()).tolist() == [
        record.train_loss for record in coarse.train_log
    ]


def test_tensorboard_event_files_hold_the_logged_numbers(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    text = write_text(tmp_path)
    board = tmp_path / "board"
    train(tiny_config(text, tmp_path / "run", max_steps=4, tensorboard=str(board)), until_step=2)
    resumed = train(saved_run(tmp_path / "run").config, resume=tmp_path / "run")
    events = EventAccumulator(str(board))
    events.Reload()
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    expected = {
        "train/loss": {r["step"]: r["train_loss"] for r in lines if r["kind"] == "train"},
        "train/lr": {r["step"]: r["lr"] for r in lines if r["kind"] == "train"},
        "val/loss": {r["step"]: r["val_loss"] for r in lines if r["kind"] == "eval"},
        "val/bits_per_byte": {
            r["step"]: r["val_bits_per_byte"] for r in lines if r["kind"] == "eval"
        },
    }
    assert set(events.Tags()["scalars"]) == set(expected)
    for tag, values in expected.items():
        logged = {event.step: event.value for event in events.Scalars(tag)}
        assert sorted(logged) == sorted(values), tag
        for step, value in values.items():
            assert logged[step] == pytest.approx(value, rel=1e-6), (tag, step)  # float32
    assert sorted(expected["train/loss"]) == [0, 1, 2, 3, 4] == [r.step for r in resumed.train_log]


def test_tensorboard_without_its_extra_is_one_line(tmp_path: Path) -> None:
    text = write_text(tmp_path)
    code = (
        "import sys; sys.modules['tensorboard'] = None\n"  # as if not installed
        "from crossent.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "train", *cli_flags(text), "--out", str(tmp_path / "run"),
         "--tensorboard", str(tmp_path / "board")],
        capture_output=True, text=True, check=False, env=ENV,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "crossent: error: crossent train --tensorboard needs the 'tensorboard' extra "
        "(tensorboard missing): pip install 'crossent[tensorboard]'"
    ]
    assert not (tmp_path / "board").exists()


@pytest.mark.parametrize(("sent", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_says_how_to_resume_and_leaves_the_report(
    tmp_path: Path, sent: signal.Signals, code: int
) -> None:
    """Ctrl-C, and SIGTERM as a scheduler sends it (issue 15), end a run the same way."""
    text = write_text(tmp_path)
    run = tmp_path / "run"
    flags = [*cli_flags(text), "--max-steps", "100000", "--out", str(run)]
    process = subprocess.Popen(
        [sys.executable, "-m", "crossent", "train", *flags],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
        # a background job ignores SIGINT, and a child inherits that: let this one take it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        wait_for_evaluations(run / "metrics.jsonl", process, 2)
        process.send_signal(sent)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == code, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("crossent train: interrupted at step ")
    assert last.endswith(f"continue with: crossent train --resume {run}")
    assert "Traceback" not in stderr
    for name in ("report.html", "losses.png", "metrics.jsonl", "last", "best"):
        assert (run / name).exists(), name
    assert "interrupted at step" in (run / "report.html").read_text(encoding="utf-8")

    reached = saved_run(run).step
    done = subprocess.run(
        [sys.executable, "-m", "crossent", "train", "--resume", str(run), "--max-steps",
         str(reached + 2)],
        capture_output=True, text=True, check=False, env=ENV,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert saved_run(run).step == reached + 2
