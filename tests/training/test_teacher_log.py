"""With a teacher, the logged training loss is the student's cross-entropy and the distillation
objective is logged beside it, labelled (issue 11, item 6).

Oracle: the student's weights at a step (``last/`` of a run paused there), the rows of that step
and the teacher's weights, through ``F.cross_entropy`` and ``F.kl_div`` on materialised logits,
in float64: the cross-entropy and the objective ``alpha T^2 KL + (1 - alpha) CE`` of the step
the resumed run logs next.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from crossent.models import load_model
from crossent.models.checkpoint import GPTCausalLM
from crossent.report import training as training_page
from crossent.training import train
from crossent.training.checkpoints import saved_run
from crossent.training.data import TrainingRows, split_text
from crossent.training.records import read_train_log
from training.tiny_runs import TEXT, tiny_config, write_text

TEMPERATURE, ALPHA = 2.0, 0.7


def _logits(model: GPTCausalLM, inputs: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        hidden = model.module(inputs)  # (B, T, d)
        logits: torch.Tensor = (hidden @ model.module.head_weight.T).double()  # (B, T, V)
    return logits.flatten(0, 1)


def test_the_student_cross_entropy_is_logged_and_the_objective_beside_it(tmp_path: Path) -> None:
    text = write_text(tmp_path)
    train(tiny_config(text, tmp_path / "teacher", max_steps=6, eval_every=6))
    student = tiny_config(
        text, tmp_path / "student", teacher=str(tmp_path / "teacher" / "best"),
        n_layer=1, d_model=32, temperature=TEMPERATURE, alpha=ALPHA, eval_every=10,
        max_steps=3,
    )  # fmt: skip
    train(student, until_step=2)
    shutil.copytree(tmp_path / "student" / "last", tmp_path / "at-step-2")
    result = train(student, resume=tmp_path / "student")

    logged = {record.step: record for record in result.train_log}
    assert sorted(logged) == [0, 1, 2, 3]
    at_step_3 = logged[3]  # the loss of step 3's update: the rows of step index 2

    weights = load_model(tmp_path / "at-step-2", device="cpu")
    teacher = load_model(tmp_path / "teacher" / "best", device="cpu")
    assert isinstance(weights, GPTCausalLM)
    assert isinstance(teacher, GPTCausalLM)
    bos = weights.tokenizer.bos_token_id
    assert bos is not None
    ids = [bos, *weights.tokenizer.encode(split_text(TEXT, 0.9).train)]
    rows = TrainingRows(ids, 32, student.seed).take(2 * 8, 8)  # (8, 33)
    inputs, targets = rows[:, :-1], rows[:, 1:].flatten()
    student_logits, teacher_logits = _logits(weights, inputs), _logits(teacher, inputs)
    cross_entropy = F.cross_entropy(student_logits, targets).item()
    kl = F.kl_div(
        F.log_softmax(student_logits / TEMPERATURE, dim=-1),
        F.log_softmax(teacher_logits / TEMPERATURE, dim=-1),
        log_target=True,
        reduction="batchmean",
    ).item()
    objective = ALPHA * TEMPERATURE**2 * kl + (1 - ALPHA) * cross_entropy

    assert at_step_3.train_loss == pytest.approx(cross_entropy, rel=1e-5)
    assert at_step_3.train_objective == pytest.approx(objective, rel=1e-5)
    assert abs(objective - cross_entropy) > 0.01  # the two are told apart

    # metrics.jsonl has both, named; the evaluation at the end too
    assert read_train_log(tmp_path / "student" / "metrics.jsonl") == result.train_log
    last = json.loads((tmp_path / "student" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["kind"] == "eval"
    assert {"train_loss", "train_objective"} <= set(last)

    # the plot draws the objective as its own, labelled curve; the training curve is the CE
    figure = training_page._figure(result.records, result.train_log)
    lines = {line.get_gid(): line for line in figure.axes[0].get_lines()}
    assert np.asarray(lines["train-loss"].get_ydata()).tolist() == [
        r.train_loss for r in result.train_log
    ]
    assert np.asarray(lines["train-objective"].get_ydata()).tolist() == [
        r.train_objective for r in result.train_log
    ]
    assert lines["train-objective"].get_label() == "training objective (the loss minimised)"
    assert lines["train-loss"].get_label() == "training loss (cross-entropy)"
    page = training_page.render_training_report(result.records, {}, train_log=result.train_log)
    assert "train objective, nats/token" in page
    assert saved_run(tmp_path / "student").train_log == result.train_log


def test_without_a_teacher_no_objective_is_logged(tmp_path: Path) -> None:
    result = train(tiny_config(write_text(tmp_path), tmp_path / "run", max_steps=2))
    assert all(record.train_objective is None for record in result.train_log)
    assert "train_objective" not in (tmp_path / "run" / "metrics.jsonl").read_text()
