"""crossent.training.train on tiny models: the properties a training loop must have.

Oracles: ln V for an untrained model, PyTorch's cross-entropy on materialised logits for the
first logged loss, an uninterrupted run for a resumed one, a single process for DDP, and
``crossent eval`` of the saved checkpoint for the logged validation loss.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from crossent.cli import build_parser
from crossent.cli.train import config_from_arguments
from crossent.models import load_model
from crossent.models.checkpoint import GPTCausalLM
from crossent.models.gpt import GPT, GPTConfig
from crossent.training import TrainConfig, train
from crossent.training.checkpoints import read_state
from crossent.training.config import DEFAULT_RUN_MINUTES
from crossent.training.data import TrainingRows, split_text

TEXT = "".join(
    f"Line {i}: the quick brown fox jumps over the lazy dog, and the cat sat on mat {i % 7}.\n"
    for i in range(60)
)


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def _config(text_file: Path, out: Path, **changes: object) -> TrainConfig:
    settings: dict[str, object] = {
        "data": (str(text_file),),
        "preset": "tiny",
        "context_length": 32,
        "vocab_size": 300,
        "batch_size": 8,
        "max_steps": 12,
        "eval_every": 4,
        "warmup_steps": 2,
        "lr": 3e-3,
        "patience": None,
        "max_minutes": None,
        "device": "cpu",
        "out": str(out),
    }
    settings.update(changes)
    return TrainConfig(**settings)  # type: ignore[arg-type]


def _losses(records: list) -> list[tuple[int, float, float]]:  # type: ignore[type-arg]
    return [(r.step, r.train_loss, r.val_loss) for r in records]


def test_an_untrained_model_scores_ln_v_and_the_first_loss_is_pytorchs(
    text_file: Path, tmp_path: Path
) -> None:
    config = _config(text_file, tmp_path / "run", max_steps=1, eval_every=1)
    result = train(config)
    first = result.records[0]
    best = load_model(tmp_path / "run" / "last", device="cpu")
    assert isinstance(best, GPTCausalLM)
    vocab = best.vocab_size
    assert first.step == 0
    assert first.val_loss == pytest.approx(math.log(vocab), rel=0.03)
    assert first.train_loss == pytest.approx(math.log(vocab), rel=0.03)
    # The oracle: the same seed builds the same untrained model; its materialised logits on the
    # run's first rows through F.cross_entropy give the first logged training loss.
    torch.manual_seed(config.seed)
    model = GPT(GPTConfig.preset("tiny", vocab_size=vocab, context_length=32))
    bos = best.tokenizer.bos_token_id
    assert bos is not None
    ids = [bos, *best.tokenizer.encode(split_text(TEXT, 0.9).train)]
    rows = TrainingRows(ids, 32, config.seed).take(0, 8)
    with torch.no_grad():
        logits = model(rows[:, :-1]) @ model.head_weight.T
    expected = F.cross_entropy(logits.flatten(0, 1).double(), rows[:, 1:].flatten())
    assert first.train_loss == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.slow
def test_a_tiny_model_overfits_a_tiny_text(text_file: Path, tmp_path: Path) -> None:
    short = tmp_path / "short.txt"
    short.write_text("the cat sat on the mat. " * 40, encoding="utf-8")
    result = train(
        _config(short, tmp_path / "run", max_steps=120, eval_every=40, lr=1e-2, warmup_steps=5)
    )
    assert result.records[-1].train_loss < 0.1


def test_the_same_seed_gives_the_same_run(text_file: Path, tmp_path: Path) -> None:
    one = train(_config(text_file, tmp_path / "a"))
    two = train(_config(text_file, tmp_path / "b"))
    assert _losses(one.records) == _losses(two.records)
    other = train(_config(text_file, tmp_path / "c", seed=7))
    assert _losses(other.records) != _losses(one.records)


@pytest.mark.slow
def test_accumulation_splits_a_step_without_changing_it(text_file: Path, tmp_path: Path) -> None:
    whole = train(_config(text_file, tmp_path / "a", batch_size=8, grad_accum=1))
    split = train(_config(text_file, tmp_path / "b", batch_size=2, grad_accum=4))
    for (s1, t1, v1), (s2, t2, v2) in zip(
        _losses(whole.records), _losses(split.records), strict=True
    ):
        assert s1 == s2
        assert t2 == pytest.approx(t1, rel=1e-4)
        assert v2 == pytest.approx(v1, rel=1e-4)


def test_resume_continues_exactly(text_file: Path, tmp_path: Path) -> None:
    straight = train(_config(text_file, tmp_path / "a"))
    paused = train(_config(text_file, tmp_path / "b"), until_step=8)
    assert paused.stopped == "until_step"
    assert [r.step for r in paused.records] == [0, 4, 8]
    resumed = train(_config(text_file, tmp_path / "ignored"), resume=tmp_path / "b")
    assert resumed.stopped == "max_steps"
    assert _losses(resumed.records) == _losses(straight.records)
    # the losses logged between evaluations too (elapsed seconds aside)
    logged = [[(r.step, r.train_loss, r.lr) for r in run.train_log] for run in (resumed, straight)]
    assert logged[0] == logged[1]
    lines = (tmp_path / "b" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    evaluations = [json.loads(line) for line in lines if json.loads(line)["kind"] == "eval"]
    assert [record["step"] for record in evaluations] == [0, 4, 8, 12]


def test_early_stopping_stops_after_patience(text_file: Path, tmp_path: Path) -> None:
    # A learning rate far too high makes the validation loss stop improving quickly.
    result = train(
        _config(text_file, tmp_path / "run", max_steps=200, eval_every=2, lr=0.5, patience=2)
    )
    assert result.stopped == "patience"
    steps = [r.step for r in result.records]
    assert steps[-1] < 200
    best_index = steps.index(result.best.step)
    assert len(steps) - 1 - best_index == 2
    assert all(r.val_loss >= result.best.val_loss for r in result.records)


def test_the_logged_validation_loss_is_crossent_evals(text_file: Path, tmp_path: Path) -> None:
    result = train(_config(text_file, tmp_path / "run"))
    validation = tmp_path / "validation.txt"
    validation.write_bytes(split_text(TEXT, 0.9).validation.encode())
    out = tmp_path / "eval.json"
    done = subprocess.run(
        [sys.executable, "-m", "crossent", "eval", "--model", str(tmp_path / "run" / "best"),
         "--data", str(validation), "--window", "32", "--json", str(out)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    totals = json.loads(out.read_text(encoding="utf-8"))["totals"]
    assert totals["nats_per_token"] == pytest.approx(result.best.val_loss, rel=1e-6)
    assert totals["bits_per_byte"] == pytest.approx(result.best.val_bits_per_byte, rel=1e-6)


def test_fine_tuning_starts_from_the_given_model(text_file: Path, tmp_path: Path) -> None:
    base = train(_config(text_file, tmp_path / "base"))
    tuned = train(
        _config(text_file, tmp_path / "tuned", init=str(tmp_path / "base" / "best"), max_steps=4)
    )
    # before any step, the fine-tuned run's validation loss is its starting model's
    assert tuned.records[0].val_loss == pytest.approx(base.best.val_loss, rel=1e-6)
    assert tuned.best.val_loss <= tuned.records[0].val_loss


def test_distillation_trains_a_student_on_its_teachers_tokenizer(
    text_file: Path, tmp_path: Path
) -> None:
    teacher = train(_config(text_file, tmp_path / "teacher", max_steps=20, eval_every=10))
    student = train(
        _config(
            text_file,
            tmp_path / "student",
            teacher=str(tmp_path / "teacher" / "best"),
            n_layer=1,
            d_model=32,
            temperature=2.0,
            alpha=0.7,
        )
    )
    assert student.best.val_loss < student.records[0].val_loss
    teacher_model = load_model(tmp_path / "teacher" / "best", device="cpu")
    student_model = load_model(tmp_path / "student" / "best", device="cpu")
    assert student_model.vocab_size == teacher_model.vocab_size
    assert student_model.tokenizer.encode(TEXT) == teacher_model.tokenizer.encode(TEXT)
    del teacher


@pytest.mark.slow
def test_fine_tuning_the_embedded_model(smollm2: object, tmp_path: Path) -> None:
    del smollm2  # loaded once, so its conversion is cached
    path = tmp_path / "t.txt"
    path.write_text("The cat sat on the mat. " * 30, encoding="utf-8")
    result = train(
        dataclasses.replace(
            _config(path, tmp_path / "run", init="smollm2-135m", max_steps=2, eval_every=1),
            batch_size=2,
            lr=1e-4,
            warmup_steps=1,
        )
    )
    assert result.best.val_loss < result.records[0].val_loss
    assert (tmp_path / "run" / "best" / "config.json").is_file()  # a Hugging Face folder


@pytest.mark.slow
def test_two_processes_train_as_one(text_file: Path, tmp_path: Path) -> None:
    common = [
        "train", "--data", str(text_file), "--preset", "tiny", "--context-length", "32",
        "--vocab-size", "300", "--batch-size", "8", "--max-steps", "8", "--eval-every", "4",
        "--warmup-steps", "2", "--patience", "0", "--device", "cpu",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run(
        [sys.executable, "-m", "crossent", *common, "--out", str(tmp_path / "one")],
        capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "crossent", *common, "--out", str(tmp_path / "two")],
        capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr
    assert "outputs in" in one.stdout
    for name in ("metrics.jsonl", "losses.png", "report.html", "best/crossent_gpt.json"):
        assert (tmp_path / "one" / name).is_file(), name
    assert (tmp_path / "one" / "losses.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    def records(folder: str) -> list[dict[str, Any]]:
        lines = (tmp_path / folder / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines]

    for mine, theirs in zip(records("one"), records("two"), strict=True):
        assert (mine["kind"], mine["step"]) == (theirs["kind"], theirs["step"])
        assert theirs["train_loss"] == pytest.approx(mine["train_loss"], rel=1e-5)
        if mine["kind"] == "eval":
            assert theirs["val_loss"] == pytest.approx(mine["val_loss"], rel=1e-5)


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (("--train-ratio", "1.5"), "--train-ratio must be in (0, 1), got 1.5"),
        (("--out", "{tmp}"), "is not empty; choose a new --out, or --resume"),
        (("--resume", "{tmp}"), "cannot resume from"),
        (("--data", "{tmp}/missing.txt"), "missing.txt: no such file or directory"),
    ],
)
def test_bad_training_input_is_one_line(
    tmp_path: Path, text_file: Path, args: tuple[str, ...], complaint: str
) -> None:
    args = tuple(arg.format(tmp=tmp_path) for arg in args)
    done = subprocess.run(
        [sys.executable, "-m", "crossent", "train", "--preset", "tiny", "--max-steps", "1",
         *args],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert complaint in lines[0]
    assert text_file.read_text(encoding="utf-8") == TEXT  # nothing the user gave is touched


def test_the_embedded_tokenizer_can_be_reused(
    smollm2: object, text_file: Path, tmp_path: Path
) -> None:
    del smollm2  # loaded once, so its conversion is cached
    result = train(_config(text_file, tmp_path / "run", tokenizer="smollm2", max_steps=1))
    student = load_model(tmp_path / "run" / "best", device="cpu")
    embedded = load_model(None, device="cpu")
    assert student.vocab_size == len(embedded.hf_tokenizer)  # type: ignore[attr-defined]
    assert student.tokenizer.encode(TEXT) == embedded.tokenizer.encode(TEXT)
    assert result.records[0].val_loss == pytest.approx(math.log(student.vocab_size), rel=0.03)


class _Payload:
    """A pickled object that runs code while it loads: what a hostile run folder could carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (Path.touch, (self.marker,))


def test_a_crafted_training_state_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "the payload ran"
    run = tmp_path / "run"
    (run / "last").mkdir(parents=True)
    state = run / "last" / "training_state.pt"
    torch.save({"optimizer": _Payload(marker), "step": 1}, state)

    done = subprocess.run(
        [sys.executable, "-m", "crossent", "train", "--resume", str(run)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "last/training_state.pt is not a crossent training state, refused:" in lines[0]
    assert not marker.exists()

    # The file is really hostile: PyTorch's unrestricted loader runs it.
    torch.load(state, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"PK\x03\x04 truncated"])
def test_a_corrupt_training_state_is_one_clear_error(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "last").mkdir()
    (tmp_path / "last" / "training_state.pt").write_bytes(content)
    with pytest.raises(ValueError, match="is not a crossent training state") as caught:
        read_state(tmp_path)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("flags", "cap"),
    [
        ((), 4.25),  # the default run, capped for slow machines
        (("--max-steps", "2000"), None),  # an explicit length runs to its end
        (("--max-steps", "2000", "--max-minutes", "30"), 30.0),
        (("--max-minutes", "0"), None),  # 0 switches the cap off
        (("--resume", "runs/old"), None),
    ],
)
def test_only_the_default_run_is_capped_in_time(flags: tuple[str, ...], cap: float | None) -> None:
    args = build_parser().parse_args(["train", *flags])
    config = config_from_arguments(args, "runs/new")
    assert config.max_minutes == cap
    assert config.max_steps == (2000 if "--max-steps" in flags else TrainConfig().max_steps)
    assert DEFAULT_RUN_MINUTES == 4.25  # the figure the default run's docs give


def test_a_run_stopped_by_its_time_cap_says_so(text_file: Path, tmp_path: Path) -> None:
    lines: list[str] = []
    config = _config(text_file, tmp_path / "run", max_minutes=1e-9)
    result = train(config, log=lines.append)
    assert result.stopped == "max_minutes"
    assert result.records[-1].step == 1  # the cap is checked after every step
    expected = "stopped at step 1 of 12: the 1e-09-minute cap on training time (--max-minutes)"
    assert [line for line in lines if line.startswith("stopped")] == [expected + " was reached"]
