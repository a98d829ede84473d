"""``crossent train --resume`` with other flags: what may change, what is refused, and a run
that has nothing left to do (issue 11, item 4).

Oracles: an uninterrupted run whose schedule spans the original length (``decay_steps``) for
an extended one, the cosine formula's floor for the learning rate of the added steps, the saved
tokenizer's own count of the validation text's tokens.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from crossent.models import load_model
from crossent.training import train
from crossent.training.checkpoints import saved_run
from crossent.training.config import resumed_config
from crossent.training.data import split_text
from training.tiny_runs import TEXT, tiny_config, write_text

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 4-step run; each test works on its own copy."""
    folder = tmp_path_factory.mktemp("finished")
    train(tiny_config(write_text(folder), folder / "run"))
    return folder / "run"


@pytest.fixture
def run(finished: Path, tmp_path: Path) -> Path:
    shutil.copytree(finished, tmp_path / "run")
    return tmp_path / "run"


def _crossent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crossent", *args],
        capture_output=True, text=True, check=False, env=ENV,
    )  # fmt: skip


def _evaluations(run: Path) -> list[dict[str, float]]:
    lines = (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [record for line in lines if (record := json.loads(line))["kind"] == "eval"]


def test_resuming_a_finished_run_says_so_and_how_to_extend_it(run: Path) -> None:
    before = (run / "metrics.jsonl").read_bytes()
    done = _crossent("train", "--resume", str(run))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.splitlines() == [
        f"{run} is complete: it is at step 4 of --max-steps 4; to train it further: "
        f"crossent train --resume {run} --max-steps N (N > 4)"
    ]
    assert (run / "metrics.jsonl").read_bytes() == before  # nothing was run


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (("--lr", "1e-3"), "--lr"),
        (("--preset", "tiny", "--data", "x.txt", "--max-steps", "8"), "--data, --preset"),
        (("--out", "elsewhere"), "--out"),
        (("--seed", "1337"), "--seed"),  # refused even when equal to the saved value
    ],
)
def test_flags_that_cannot_change_on_resume_are_refused_in_one_line(
    run: Path, flags: tuple[str, ...], named: str
) -> None:
    before = (run / "metrics.jsonl").read_bytes()
    done = _crossent("train", "--resume", str(run), *flags)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"{named} cannot be given with --resume" in lines[0]
    assert "only --max-steps, --max-minutes, --patience" in lines[0]
    assert (run / "metrics.jsonl").read_bytes() == before


def test_extending_max_steps_continues_at_the_schedules_floor(run: Path, tmp_path: Path) -> None:
    done = _crossent("train", "--resume", str(run), "--max-steps", "8")
    assert done.returncode == 0, done.stderr
    assert "steps 5-8 run at the minimum learning rate" in done.stderr
    extended = _evaluations(run)
    assert [record["step"] for record in extended] == [0, 2, 4, 6, 8]
    # The oracle: one uninterrupted run of 8 steps whose cosine spans the first 4.
    text = Path(saved_run(run).config.data[0])
    straight = train(tiny_config(text, tmp_path / "straight", max_steps=8, decay_steps=4))
    # (the subprocess runs on one thread, this one on more: float noise in the sums)
    for mine, theirs in zip(extended, straight.records, strict=True):
        assert mine["train_loss"] == pytest.approx(theirs.train_loss, rel=1e-6)
        assert mine["val_loss"] == pytest.approx(theirs.val_loss, rel=1e-6)
        assert mine["lr"] == theirs.lr
    # after step 4, the learning rate is the cosine's floor: min_lr_ratio x lr
    assert [record["lr"] for record in extended[3:]] == pytest.approx([0.1 * 3e-3] * 2)
    assert saved_run(run).config.max_steps == 8


def test_a_run_stopped_by_patience_is_continued_with_more_patience(tmp_path: Path) -> None:
    text = write_text(tmp_path)
    # A learning rate far too high: the validation loss stops improving at once.
    config = tiny_config(text, tmp_path / "run", max_steps=60, eval_every=1, lr=0.5, patience=1)
    stopped = train(config)
    assert stopped.stopped == "patience"
    run = tmp_path / "run"
    done = _crossent("train", "--resume", str(run))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"{run} is complete: it stopped at step {stopped.step} after 1 evaluations without a "
        f"lower validation loss (--patience 1); to train it further: crossent train --resume "
        f"{run} --patience N (N > 1, or 0 to never stop early)"
    )
    more = train(resumed_config(saved_run(run).config, patience=3), resume=run)
    assert more.step > stopped.step
    assert more.records[: len(stopped.records)] == stopped.records


def test_the_library_refuses_other_settings_on_resume(run: Path, tmp_path: Path) -> None:
    saved = saved_run(run).config
    with pytest.raises(ValueError, match=r"lr, seed differ from the saved run's") as caught:
        train(dataclasses.replace(saved, lr=1.0, seed=2), resume=run)
    assert "\n" not in str(caught.value)
    with pytest.raises(ValueError, match="preset cannot change when a run is resumed"):
        resumed_config(saved, preset="gpt2")
    with pytest.raises(ValueError, match="is complete: it is at step 4 of --max-steps 4"):
        train(saved, resume=run)


def test_the_validation_token_count_is_saved_with_the_run(run: Path) -> None:
    validation = split_text(TEXT, 0.9).validation
    tokenizer = load_model(run / "last", device="cpu").tokenizer
    # every token of the validation text is scored once (the prefix token is not scored)
    assert saved_run(run).validation_tokens == len(tokenizer.encode(validation))
    done = _crossent("train", "--resume", str(run), "--max-steps", "5")
    assert done.returncode == 0, done.stderr
    assert f"({len(tokenizer.encode(validation))} tokens)\n" in done.stdout
