"""The training loop: minimise cross-entropy on the training text, watch it on the validation text.

One optimizer step is ``grad_accum`` micro-batches of ``batch_size`` rows (split across the
processes under torchrun). Each micro-batch's loss is its token losses summed and divided by the
tokens of the whole step, so the gradient is that of the step's mean loss however the step is
split. The loss is :func:`crossent.linear_cross_entropy` on the model's hidden states and its
(tied) LM head, with optional label smoothing and z-loss, or, with a teacher,
:func:`crossent.distillation_loss` on both models' logits.

The training loss logged is always the student's cross-entropy on its training rows; the
objective minimised, when it is something else (a teacher, label smoothing, z-loss), is logged
beside it (:mod:`crossent.training.records`). Every ``log_every`` steps, at every evaluation and
at step 0, a :class:`~crossent.training.records.TrainRecord` gets the mean of the steps since
the previous one (an evaluation closes the interval, so that a run resumed from it logs what an
uninterrupted one does).

Every ``eval_every`` steps (and at step 0, and at the end) the whole validation text is scored by
:func:`crossent.evaluate`, exactly as ``crossent eval`` scores it, and the record
(:class:`crossent.training.records.EvalRecord`) gets the training loss of the steps since the
last evaluation (their summed token losses over their tokens). The checkpoint of the best
evaluation is kept in ``out/best``; ``out/last`` holds the latest evaluation's checkpoint with
the state from which :func:`train` with ``resume`` continues as if never stopped
(:mod:`crossent.training.checkpoints`). Ctrl-C raises
:class:`~crossent.training.result.TrainingInterrupted` with what was done; ``metrics.jsonl``
is rewritten at every logged step, so it always has what the run has done.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from crossent.data import Document
from crossent.distributed import default_device, rank_and_world
from crossent.evaluation import evaluate
from crossent.failures import NonFiniteLossError, RunError
from crossent.training.checkpoints import (
    configuration,
    link_copy,
    restore,
    save_checkpoint,
    training_state,
)
from crossent.training.config import TrainConfig, setting_conflicts
from crossent.training.data import TrainingRows, split_text, training_ids, training_text
from crossent.training.lock import output_lock
from crossent.training.log import LossSums, TensorBoardLog
from crossent.training.model import TrainingModel, build_model, load, module_parameters
from crossent.training.objective import cross_entropy_sums, distillation_sums
from crossent.training.optimizer import (
    autocast,
    autocast_dtype,
    clip_and_step,
    make_optimizer,
    make_schedule,
)
from crossent.training.records import (
    METRICS_FILE,
    EvalHistory,
    EvalRecord,
    TrainRecord,
    describe,
    write_metrics,
)
from crossent.training.result import TrainingInterrupted, TrainResult

if TYPE_CHECKING:
    from crossent.models.protocol import CausalLM


Log = Callable[[str], None]
# Called after every step with (step, max_steps, tokens per step, the latest logged training
# loss: the mean cross-entropy of the last ``log_every`` steps).
Progress = Callable[[int, int, int, float], None]


def train(
    config: TrainConfig,
    *,
    resume: str | os.PathLike[str] | None = None,
    until_step: int | None = None,
    log: Log | None = None,
    progress: Progress | None = None,
    warn: Log | None = None,
) -> TrainResult:
    """Train (or fine-tune, or distil) a causal LM by minimising cross-entropy.

    Under torchrun (``torch.distributed`` initialised by the caller) the model is wrapped in
    DistributedDataParallel and every micro-batch is split across the processes: the same global
    batch, and so the same losses up to float noise, as one process.

    Args:
        config: the run's settings. With ``resume``, the saved run's settings
            (:func:`crossent.training.config.resumed_config` makes them) in which only those of
            :data:`~crossent.training.config.RESUMABLE` may differ (``out`` is ignored).
        resume: an output folder of an earlier run; training continues from its ``last/``.
        until_step: stop after this step as if interrupted (``last/`` is then at this step;
            a step that is not an evaluation step is evaluated first).
        log: called with one line per evaluation.
        progress: called after every optimizer step.
        warn: called with each line of :func:`crossent.training.config.setting_conflicts`
            once the model is built, before the first step (default: :func:`warnings.warn`).

    Returns:
        The run's records and where its outputs are.

    Raises:
        ValueError: bad settings, unreadable text, a text too short, a teacher whose tokenizer
            differs from the student's, a folder to resume that has no checkpoint, settings
            that cannot change on resume, or a run to resume that is already complete.
        TrainingInterrupted: Ctrl-C after the first evaluation, with what the run had done.
        RunError: another run holds the output folder (:mod:`crossent.training.lock`), or a
            loss became NaN or infinite (unless ``config.skip_nonfinite`` skips the step);
            ``last/`` and ``best/`` then stay as the last finite evaluation saved them.
    """
    rank, world = rank_and_world()
    folder = Path(resume) if resume is not None else Path(config.out)
    with output_lock(folder) if rank == 0 else contextlib.nullcontext():
        return _train(config, resume, until_step, log, progress, warn, world)


def _train(
    config: TrainConfig,
    resume: str | os.PathLike[str] | None,
    until_step: int | None,
    log: Log | None,
    progress: Progress | None,
    warn: Log | None,
    world: int,
) -> TrainResult:
    """:func:`train` once the output folder is locked."""
    config, out, state = configuration(config, resume)
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
    for line in setting_conflicts(config):
        (warn or warnings.warn)(line)
    out.mkdir(parents=True, exist_ok=True)
    model.trainable.train()

    def result(stopped: str) -> TrainResult:
        best = run.history.best
        assert best is not None  # step 0 was evaluated
        return TrainResult(
            config=run.config, out=out, best=best, records=run.history.records,
            stopped=stopped, parameters=module_parameters(model.trainable), split=split,
            train_tokens=len(train_ids), validation_tokens=run.validation_tokens,
            train_log=run.train_log, vocab_size=len(model.tokenizer_files), step=run.step,
            skipped_steps=run.skipped,
        )  # fmt: skip

    try:
        if state is None:
            run.start()
        stopped = run.train(until_step, progress)
    except KeyboardInterrupt:
        if run.history.best is None:  # nothing done yet: nothing to report or resume
            raise
        raise TrainingInterrupted(result("interrupted")) from None
    finally:
        run.close()
    return result(stopped)


class _Run:
    """A run in progress: what it trains with, and the state the loop moves on.

    The state is ``step``, ``elapsed`` (training seconds, resumed ones included), ``history``
    (the evaluations so far and the stopping rule), ``train_log`` and ``validation_tokens``; the
    optimizer, the schedule and the random generators hold the rest. A resumed run starts from
    ``state``.
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
        self.train_log: list[TrainRecord] = []
        self.validation_tokens = 0  # scored by each evaluation; the same every time
        self.skipped = 0  # steps not taken for a non-finite loss (skip_nonfinite)
        if state is not None:
            self.step, self.elapsed, self.history = restore(
                state, self.optimizer, self.schedule, device, config.patience
            )
            self.train_log = [TrainRecord.from_dict(r) for r in state.get("train_log", [])]
            self.validation_tokens = state.get("validation_tokens", 0)
            self.skipped = state.get("skipped_steps", 0)
        self.forward: nn.Module = model.trainable
        if self.world > 1:
            self.forward = nn.parallel.DistributedDataParallel(
                model.trainable, device_ids=[device.index] if device.type == "cuda" else None
            )
        if config.compile:
            self.forward = torch.compile(self.forward)  # type: ignore[assignment]
        self.autocast = autocast(config, device)
        self.head_dtype = autocast_dtype(config, device)
        self.tokens_per_step = config.batch_size * config.grad_accum * self.context
        self.share = config.batch_size // self.world  # rows of a micro-batch on each process
        # Whether the loss minimised is something other than the student's cross-entropy.
        self.objective = teacher is not None or config.label_smoothing > 0 or config.z_loss > 0
        self.board = None
        if config.tensorboard is not None and self.rank == 0:
            # steps past the checkpoint logged by an earlier session are redone: hidden
            self.board = TensorBoardLog(config.tensorboard, self.step + 1 if state else None)
        self.shown_loss = self.train_log[-1].train_loss if self.train_log else math.nan

    def micro_loss(self, batch: Tensor, normaliser: int) -> tuple[Tensor, Tensor]:
        """The objective's token losses of ``batch`` (rows of T + 1) summed over
        ``normaliser`` tokens, to differentiate, and the student's summed cross-entropy."""
        inputs, targets = batch[:, :-1].to(self.device), batch[:, 1:].to(self.device)  # (b, T)
        with self.autocast:
            hidden = self.forward(inputs)  # (b, T, d)
            if self.teacher is not None:
                total, plain = distillation_sums(
                    self.model, self.teacher, inputs, hidden, targets, self.config
                )
        if self.teacher is None:
            total, plain = cross_entropy_sums(
                self.model, hidden, targets, self.config, self.head_dtype, self.objective
            )
        return total.float() / normaliser, plain

    def micro_batch(self, step: int, micro: int) -> Tensor:
        """This process's rows of micro-batch ``micro`` of step ``step`` (0 is the first)."""
        first_row = (step * self.config.grad_accum + micro) * self.config.batch_size
        return self.rows.take(first_row + self.rank * self.share, self.share)

    def start(self) -> None:
        """Step 0: the training loss of the first step's rows under the initial weights, logged
        and evaluated."""
        sums = LossSums(self.device, self.objective)
        with torch.no_grad():
            for micro in range(self.config.grad_accum):
                objective, plain = self.micro_loss(self.micro_batch(0, micro), 1)
                sums.add(plain, objective.double(), 0)
        sums.tokens = self.tokens_per_step
        losses = sums.take()
        if not all(math.isfinite(loss) for loss in losses if loss is not None):
            raise RunError(
                f"step 0: the initial model's training loss is {losses[0]}: its weights hold "
                "NaN or infinity; nothing was trained or saved"
            )
        self.log_train(*losses)
        self.keep(self.evaluate(*losses))

    def optimizer_step(self) -> tuple[Tensor, Tensor, bool]:
        """One step of ``grad_accum`` micro-batches: this process's summed token losses, of
        the objective and of the cross-entropy, and whether the step was taken (not when a
        loss or gradient is NaN or infinite: :func:`clip_and_step`)."""
        objective_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        plain_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        normaliser = self.tokens_per_step // self.world
        for micro in range(self.config.grad_accum):
            batch = self.micro_batch(self.step, micro)
            # DDP averages gradients once per step, after the last micro-batch.
            sync = micro == self.config.grad_accum - 1 or self.world == 1
            with contextlib.nullcontext() if sync else self.forward.no_sync():  # type: ignore[operator]
                loss, plain = self.micro_loss(batch, normaliser)
                loss.backward()  # type: ignore[no-untyped-call]
            objective_sum += loss.detach().double() * normaliser
            plain_sum += plain
        finite = bool(torch.isfinite(objective_sum) & torch.isfinite(plain_sum))
        taken = clip_and_step(
            self.model.trainable, self.config, self.optimizer, self.schedule, finite
        )
        self.step += 1
        return objective_sum, plain_sum, taken

    def not_taken(self, plain: Tensor) -> None:
        """Count a step not taken for a non-finite loss or gradient, or stop the run there."""
        loss = plain.item() / (self.tokens_per_step // self.world)
        finite = math.isfinite(loss)
        what = "a gradient is NaN or infinite" if finite else f"the training loss is {loss}"
        if not self.config.skip_nonfinite:
            saved = self.history.records[-1].step
            raise RunError(
                f"step {self.step}: {what}; stopped before updating the weights, so last/ and "
                f"best/ stay as saved (last/ at step {saved}); to skip such steps: crossent "
                f"train --resume {self.out} --skip-nonfinite"
            )
        self.skipped += 1
        self.say(f"step {self.step}: {what}; step skipped ({self.skipped} so far)")

    def evaluate(self, train_loss: float, objective: float | None) -> EvalRecord:
        """Score the validation text as ``crossent eval`` would; the record of this step."""
        module = self.model.trainable
        module.eval()
        try:
            with torch.no_grad():
                result = evaluate(
                    self.model.lm,
                    self.validation,
                    window=self.context,
                    batch_size=self.config.eval_batch_size,
                )
        except NonFiniteLossError:
            self.keep_finite(math.nan)
        module.train()
        self.validation_tokens = result.totals.tokens
        bits = result.totals.bits_per_byte
        return EvalRecord(
            step=self.step,
            tokens_seen=self.step * self.tokens_per_step,
            train_loss=train_loss,
            val_loss=result.totals.nats_per_token,
            val_bits_per_byte=bits if bits is not None else math.nan,
            lr=self._lr(),
            elapsed_s=self.elapsed,
            train_objective=objective,
        )

    def _lr(self) -> float:
        return float(self.schedule.get_last_lr()[0])

    def log_train(self, train_loss: float, objective: float | None) -> None:
        """Record the training loss of the steps since the last record; rewrite the metrics."""
        record = TrainRecord(
            self.step, self.step * self.tokens_per_step, train_loss, self._lr(), self.elapsed,
            train_objective=objective,
        )  # fmt: skip
        self.train_log.append(record)
        self.shown_loss = train_loss
        if self.rank == 0:
            write_metrics(self.out / METRICS_FILE, self.history.records, self.train_log)
            if self.board is not None:
                self.board.train(record)

    def keep(self, record: EvalRecord) -> None:
        """Add a record, save last/ (and best/ when it is the best), rewrite the metrics."""
        self.keep_finite(record.val_loss)
        improved = self.history.add(record)
        if self.rank == 0:
            state = training_state(
                self.config, self.step, self.elapsed, self.history, self.train_log,
                self.validation_tokens, self.optimizer, self.schedule, self.device, self.skipped,
            )  # fmt: skip
            save_checkpoint(self.out / "last", self.model, state)
            if improved:
                link_copy(self.out / "last", self.out / "best")
            write_metrics(self.out / METRICS_FILE, self.history.records, self.train_log)
            if self.board is not None:
                self.board.evaluation(record)
        self.say(describe(record, improved))

    def keep_finite(self, val_loss: float) -> None:
        """Stop the run, saving nothing, when the validation loss is NaN or infinite."""
        if not math.isfinite(val_loss):
            saved = self.history.records[-1].step
            raise RunError(
                f"step {self.step}: the validation loss is {val_loss}; stopped without saving, "
                f"so last/ and best/ stay as saved (last/ at step {saved})"
            )

    def train(self, until_step: int | None, progress: Progress | None) -> str:
        """Take steps, logging and evaluating as configured, until a limit is reached; say
        which."""
        config = self.config
        since_evaluation = LossSums(self.device, self.objective)
        since_log = LossSums(self.device, self.objective)
        started = time.monotonic() - self.elapsed
        while self.step < config.max_steps:
            objective, plain, taken = self.optimizer_step()
            if not taken:
                self.not_taken(plain)
            for sums in (since_evaluation, since_log) if taken else ():
                sums.add(plain, objective, self.tokens_per_step)
            self.elapsed = time.monotonic() - started
            over_time = config.max_minutes is not None and self.elapsed > 60 * config.max_minutes
            pausing = until_step is not None and self.step >= until_step
            due = self.step % config.eval_every == 0 or self.step == config.max_steps
            if due or over_time or pausing or self.step % config.log_every == 0:
                self.log_train(*since_log.take())
            if progress is not None:
                progress(self.step, config.max_steps, self.tokens_per_step, self.shown_loss)
            if due or over_time or pausing:
                self.keep(self.evaluate(*since_evaluation.take()))
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

    def close(self) -> None:
        if self.board is not None:
            self.board.close()
