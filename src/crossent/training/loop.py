"""The training loop: minimise cross-entropy on the training text, watch it on the validation text.

One optimizer step is ``grad_accum`` micro-batches of ``batch_size`` rows (split across the
processes under torchrun). Each micro-batch's loss is its token losses summed and divided by the
tokens of the whole step, so the gradient is that of the step's mean loss however the step is
split. The loss is :func:`crossent.linear_cross_entropy` on the model's hidden states and its
(tied) LM head, with optional label smoothing and z-loss, or, with a teacher,
:func:`crossent.distillation_loss` on both models' logits.

Every ``eval_every`` steps (and at step 0, and at the end) the whole validation text is scored by
:func:`crossent.evaluate`, exactly as ``crossent eval`` scores it, and the record
(:class:`crossent.training.records.EvalRecord`) gets the training loss of the steps since the
last evaluation (their summed token losses over their tokens). The checkpoint of the best
evaluation is kept in ``out/best``; ``out/last`` holds the latest evaluation's checkpoint with
the state from which :func:`train` with ``resume`` continues as if never stopped
(:mod:`crossent.training.checkpoints`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from crossent.data import Document
from crossent.distributed import all_sum, default_device, rank_and_world
from crossent.evaluation import evaluate
from crossent.losses.distill import distillation_loss
from crossent.losses.linear import linear_cross_entropy
from crossent.metrics import nats_to_bits
from crossent.training.checkpoints import (
    link_copy,
    read_state,
    restore,
    save_checkpoint,
    training_state,
)
from crossent.training.config import TrainConfig
from crossent.training.data import TextSplit, TrainingRows, split_text, training_ids, training_text
from crossent.training.model import TrainingModel, build_model, load, module_parameters
from crossent.training.optimizer import autocast, clip_and_step, make_optimizer, make_schedule
from crossent.training.records import METRICS_FILE, EvalHistory, EvalRecord, write_metrics

if TYPE_CHECKING:
    from crossent.models.protocol import CausalLM


@dataclass(frozen=True)
class TrainResult:
    """What a run did; :func:`crossent.report.training.write_training_pages` draws it.

    Attributes:
        config: the run's settings (a resumed run's are those it was started with).
        out: the output folder.
        best: the record of the lowest validation loss; its checkpoint is ``out/best``.
        records: every evaluation, in order (step 0 first).
        stopped: why the run ended: "max_steps", "patience", "max_minutes" or "until_step".
        parameters: the model's parameter count.
        split: the training and validation texts' sizes.
        train_tokens: tokens of the training text (prefix included).
        validation_tokens: tokens the validation loss is computed over.
    """

    config: TrainConfig
    out: Path
    best: EvalRecord
    records: list[EvalRecord]
    stopped: str
    parameters: int
    split: TextSplit
    train_tokens: int
    validation_tokens: int


Log = Callable[[str], None]
# Called after every step with (step, max_steps, tokens per step, the step's training loss).
Progress = Callable[[int, int, int, float], None]


def train(
    config: TrainConfig,
    *,
    resume: str | os.PathLike[str] | None = None,
    until_step: int | None = None,
    log: Log | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Train (or fine-tune, or distil) a causal LM by minimising cross-entropy.

    Under torchrun (``torch.distributed`` initialised by the caller) the model is wrapped in
    DistributedDataParallel and every micro-batch is split across the processes: the same global
    batch, and so the same losses up to float noise, as one process.

    Args:
        config: the run's settings (ignored for ``resume`` except ``max_minutes``, ``out`` and
            ``device``: a resumed run continues the saved configuration).
        resume: an output folder of an earlier run; training continues from its ``last/``.
        until_step: stop after this step as if interrupted (``last/`` is then at this step;
            a step that is not an evaluation step is evaluated first).
        log: called with one line per evaluation.
        progress: called after every optimizer step.

    Returns:
        The run's records and where its outputs are.

    Raises:
        ValueError: bad settings, unreadable text, a text too short, a teacher whose tokenizer
            differs from the student's, or a folder to resume that has no checkpoint.
    """
    world = rank_and_world()[1]
    config, out, state = _configuration(config, resume)
    device = default_device(config.device)
    if config.batch_size % world:
        raise ValueError(
            f"batch size {config.batch_size} is not divisible by the {world} processes"
        )
    # The initial weights and dropout follow from the seed (the row order has its own generators).
    random.seed(config.seed)
    torch.manual_seed(config.seed)

    split = split_text(training_text(config), config.train_ratio)
    teacher = load(config.teacher, device) if config.teacher is not None else None
    model = build_model(config, split, teacher, device, out / "last" if state else None)
    context = model.context(config)
    train_ids = training_ids(model.lm.tokenizer, split.train)
    rows = TrainingRows(train_ids, context, config.seed)
    validation = [Document("validation", split.validation)]
    run = _Run(config, out, model, teacher, rows, validation, device, log, state)
    out.mkdir(parents=True, exist_ok=True)
    model.trainable.train()
    if state is None:
        run.keep(run.evaluate(run.initial_loss()))
    stopped = run.train(until_step, progress)
    best = run.history.best
    assert best is not None  # step 0 was evaluated
    return TrainResult(
        config=run.config,
        out=out,
        best=best,
        records=run.history.records,
        stopped=stopped,
        parameters=module_parameters(model.trainable),
        split=split,
        train_tokens=len(train_ids),
        validation_tokens=run.validation_tokens,
    )


def _configuration(
    config: TrainConfig, resume: str | os.PathLike[str] | None
) -> tuple[TrainConfig, Path, dict[str, Any] | None]:
    """The run's configuration, folder and, when resuming, its saved state."""
    if resume is None:
        return config, Path(config.out), None
    state = read_state(Path(resume))
    saved = dataclasses.replace(
        TrainConfig.from_dict(state["config"]),
        max_minutes=config.max_minutes,
        device=config.device,
    )
    return saved, Path(resume), state


class _Run:
    """A run in progress: what it trains with, and the state the loop moves on.

    The state is ``step``, ``elapsed`` (training seconds, resumed ones included), ``history``
    (the evaluations so far and the stopping rule) and ``validation_tokens``; the optimizer,
    the schedule and the random generators hold the rest. A resumed run starts from ``state``.
    """

    def __init__(
        self,
        config: TrainConfig,
        out: Path,
        model: TrainingModel,
        teacher: CausalLM | None,
        rows: TrainingRows,
        validation: list[Document],
        device: torch.device,
        log: Log | None,
        state: dict[str, Any] | None,
    ) -> None:
        self.config, self.out, self.model, self.teacher = config, out, model, teacher
        self.rows, self.validation, self.device = rows, validation, device
        self.say = log or (lambda line: None)
        self.context = rows.context_length
        self.rank, self.world = rank_and_world()
        self.optimizer = make_optimizer(model.trainable, config, device)
        self.schedule = make_schedule(self.optimizer, config)
        self.step, self.elapsed = 0, 0.0
        self.history = EvalHistory(config.patience)
        if state is not None:
            self.step, self.elapsed, self.history = restore(
                state, self.optimizer, self.schedule, device, config.patience
            )
        self.forward: nn.Module = model.trainable
        if self.world > 1:
            self.forward = nn.parallel.DistributedDataParallel(
                model.trainable, device_ids=[device.index] if device.type == "cuda" else None
            )
        if config.compile:
            self.forward = torch.compile(self.forward)  # type: ignore[assignment]
        self.autocast = autocast(config, device)
        self.validation_tokens = 0  # scored by each evaluation; the same every time
        self.tokens_per_step = config.batch_size * config.grad_accum * self.context
        self.share = config.batch_size // self.world  # rows of a micro-batch on each process

    def micro_loss(self, batch: Tensor, normaliser: int) -> Tensor:
        """The summed token losses of ``batch`` (rows of T + 1) over ``normaliser`` tokens."""
        model, teacher, config = self.model, self.teacher, self.config
        inputs, targets = batch[:, :-1].to(self.device), batch[:, 1:].to(self.device)  # (b, T)
        with self.autocast:
            hidden = self.forward(inputs)  # (b, T, d)
            if teacher is None:
                total = linear_cross_entropy(
                    hidden, model.head_weight, targets, model.head_bias, reduction="sum",
                    label_smoothing=config.label_smoothing, z_loss=config.z_loss,
                )  # fmt: skip
            else:
                with torch.no_grad():
                    teacher_hidden = teacher.hidden_states(inputs)
                    teacher_logits = nn.functional.linear(
                        teacher_hidden, teacher.head_weight, teacher.head_bias
                    )  # (b, T, V)
                logits = nn.functional.linear(hidden, model.head_weight, model.head_bias)
                total = distillation_loss(
                    logits.flatten(0, 1).float(), teacher_logits.flatten(0, 1).float(),
                    targets.flatten(), config.temperature, config.alpha,
                ) * targets.numel()  # fmt: skip
        return total.float() / normaliser

    def micro_batch(self, step: int, micro: int) -> Tensor:
        """This process's rows of micro-batch ``micro`` of step ``step`` (0 is the first)."""
        first_row = (step * self.config.grad_accum + micro) * self.config.batch_size
        return self.rows.take(first_row + self.rank * self.share, self.share)

    def initial_loss(self) -> float:
        """The training loss before any update: the first step's rows under the initial weights."""
        with torch.no_grad():
            loss0 = sum(
                self.micro_loss(self.micro_batch(0, micro), 1).double()
                for micro in range(self.config.grad_accum)
            )
        total: float = all_sum(torch.as_tensor(loss0)).item()
        return total / self.tokens_per_step

    def optimizer_step(self) -> Tensor:
        """One step of ``grad_accum`` micro-batches: this process's share of its mean loss."""
        step_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        for micro in range(self.config.grad_accum):
            batch = self.micro_batch(self.step, micro)
            # DDP averages gradients once per step, after the last micro-batch.
            sync = micro == self.config.grad_accum - 1 or self.world == 1
            with contextlib.nullcontext() if sync else self.forward.no_sync():  # type: ignore[operator]
                loss = self.micro_loss(batch, self.tokens_per_step // self.world)
                loss.backward()  # type: ignore[no-untyped-call]
            step_sum += loss.detach().double()
        clip_and_step(self.model.trainable, self.config, self.optimizer, self.schedule)
        self.step += 1
        return step_sum

    def evaluate(self, train_loss: float) -> EvalRecord:
        """Score the validation text as ``crossent eval`` would; the record of this step."""
        module = self.model.trainable
        module.eval()
        with torch.no_grad():
            result = evaluate(
                self.model.lm,
                self.validation,
                window=self.context,
                batch_size=self.config.eval_batch_size,
            )
        module.train()
        self.validation_tokens = result.totals.tokens
        bits = result.totals.bits_per_byte
        return EvalRecord(
            step=self.step,
            tokens_seen=self.step * self.tokens_per_step,
            train_loss=train_loss,
            val_loss=result.totals.nats_per_token,
            val_bits_per_byte=bits if bits is not None else math.nan,
            lr=float(self.schedule.get_last_lr()[0]),
            elapsed_s=self.elapsed,
        )

    def keep(self, record: EvalRecord) -> None:
        """Add a record, save last/ (and best/ when it is the best), rewrite the metrics."""
        improved = self.history.add(record)
        if self.rank == 0:
            state = training_state(
                self.config,
                self.step,
                self.elapsed,
                self.history,
                self.optimizer,
                self.schedule,
                self.device,
            )
            save_checkpoint(self.out / "last", self.model, state)
            if improved:
                link_copy(self.out / "last", self.out / "best")
            write_metrics(self.out / METRICS_FILE, self.history.records)
        self.say(_describe(record, improved))

    def train(self, until_step: int | None, progress: Progress | None) -> str:
        """Take steps, evaluating as configured, until a limit is reached; say which."""
        config = self.config
        interval_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        interval_tokens = 0
        started = time.monotonic() - self.elapsed
        while self.step < config.max_steps:
            step_sum = self.optimizer_step()
            interval_sum += step_sum * (self.tokens_per_step // self.world)
            interval_tokens += self.tokens_per_step
            if progress is not None:
                progress(self.step, config.max_steps, self.tokens_per_step, step_sum.item())
            self.elapsed = time.monotonic() - started
            over_time = config.max_minutes is not None and self.elapsed > 60 * config.max_minutes
            pausing = until_step is not None and self.step >= until_step
            due = self.step % config.eval_every == 0 or self.step == config.max_steps
            if due or over_time or pausing:
                self.keep(self.evaluate(all_sum(interval_sum).item() / interval_tokens))
                interval_sum.zero_()
                interval_tokens = 0
                if self.history.patience_spent:
                    return "patience"
            if over_time:
                self.say(
                    f"stopped at step {self.step} of {config.max_steps}: the "
                    f"{config.max_minutes:g}-minute cap on training time (--max-minutes) "
                    "was reached"
                )
                return "max_minutes"
            if pausing:
                return "until_step"
        return "max_steps"


def _describe(record: EvalRecord, improved: bool) -> str:
    mark = " *" if improved else ""
    return (
        f"step {record.step}: train {record.train_loss:.4f}, val {record.val_loss:.4f} nats/token "
        f"({nats_to_bits(record.val_loss):.3f} bits, ppl {math.exp(record.val_loss):.2f}, "
        f"{record.val_bits_per_byte:.4f} bits/byte), lr {record.lr:.2e}, "
        f"{record.elapsed_s:.0f} s{mark}"
    )
