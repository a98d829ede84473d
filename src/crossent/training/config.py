"""Everything a training run is decided by, in one JSON-ready dataclass."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

Autocast = Literal["auto", "bfloat16", "none"]

# The time cap of `crossent train` run without --max-steps: the default run takes under four
# minutes on two quiet cores; the cap keeps it near that on slower or busier machines.
DEFAULT_RUN_MINUTES = 4.25


@dataclass(frozen=True)
class TrainConfig:
    """The settings of :func:`crossent.training.train`; the defaults are the default run.

    The default run trains the ``cpu-small`` GPT (4.3M parameters) with a 4096-token BPE on
    CPython's documentation for 160 steps of 8 x 256 tokens (about 330k tokens, three passes
    over the training text), evaluating every 20 steps: under four minutes on two CPU cores.
    Nothing caps a run's time unless ``max_minutes`` says so; ``crossent train`` without
    ``--max-steps`` caps the default run at :data:`DEFAULT_RUN_MINUTES` for slower machines.

    Attributes:
        data: texts as ``crossent eval`` reads them; empty for CPython's documentation.
        field: the text field of JSON Lines input.
        errors: ``"strict"`` or ``"replace"`` for invalid UTF-8.
        train_ratio: the leading fraction of the text (in characters) used for training; the
            rest, contiguous, is the validation text (as the textbook split does).
        preset: the GPT architecture (:attr:`crossent.models.gpt.GPTConfig.PRESETS`).
        n_layer: override of the preset's number of blocks.
        n_head: override of the preset's number of heads.
        d_model: override of the preset's width.
        context_length: override of the preset's context, the training sequence length; for
            an ``init`` model, the sequence length (default: its context, at most 1024).
        dropout: dropout while training.
        tokenizer: ``"bpe"`` trains a byte-level BPE on the training text; ``"smollm2"`` uses
            the embedded model's tokenizer.
        vocab_size: the BPE's largest vocabulary size: a text with fewer pairs to merge gives
            fewer tokens, and the run reports the size built
            (:attr:`crossent.training.result.TrainResult.vocab_size`).
        init: a model to continue training (anything ``crossent eval`` loads); None trains
            a new GPT from scratch.
        teacher: a model to distil from (it must share the student's tokenizer).
        temperature: distillation temperature.
        alpha: the weight of the soft (teacher) term in the distillation loss.
        batch_size: sequences per micro-batch (split across processes under torchrun).
        grad_accum: micro-batches per optimizer step.
        max_steps: optimizer steps; the learning-rate schedule spans them (unless
            ``decay_steps`` says otherwise).
        decay_steps: the step at which the cosine decay reaches its floor, after which the
            learning rate stays there; None for ``max_steps``. A run extended on resume keeps
            the span it was started with (see :func:`resumed_config`).
        max_minutes: stop after this much training time, keeping the best checkpoint and
            saying so; None for no cap.
        lr: peak learning rate.
        min_lr_ratio: the cosine decay's floor, as a fraction of ``lr``.
        warmup_steps: steps of linear warm-up from 0.
        weight_decay: AdamW weight decay, applied to matrices only (not to biases, norms).
        betas: AdamW's betas.
        grad_clip: the largest gradient norm (0 disables clipping).
        label_smoothing: label smoothing of the training loss.
        z_loss: weight of PaLM's z-loss in the training loss.
        eval_every: steps between evaluations of the whole validation text.
        log_every: steps between logged training losses (``metrics.jsonl``, the progress
            bar, the plot, TensorBoard), as nanoGPT's ``log_interval``.
        eval_batch_size: windows per forward pass when evaluating.
        patience: stop after this many evaluations without a lower validation loss; None
            never stops early.
        autocast: ``"auto"`` uses bfloat16 autocast on a CUDA device that supports it and
            float32 elsewhere; ``"bfloat16"`` forces it; ``"none"`` disables it.
        compile: run the model through ``torch.compile``.
        skip_nonfinite: skip (and count) an optimizer step whose loss or gradient is NaN or
            infinite, instead of stopping the run there.
        seed: seeds the weights, the data order and dropout.
        device: where to train; None picks CUDA when present.
        out: the folder for ``metrics.jsonl``, ``losses.png``, ``report.html``, ``best/``
            and ``last/``.
        tensorboard: a folder for TensorBoard event files of the logged losses (the
            ``tensorboard`` extra); None for none.
    """

    data: tuple[str, ...] = ()
    field: str | None = None
    errors: Literal["strict", "replace"] = "strict"
    train_ratio: float = 0.9
    preset: str = "cpu-small"
    n_layer: int | None = None
    n_head: int | None = None
    d_model: int | None = None
    context_length: int | None = None
    dropout: float = 0.0
    tokenizer: Literal["bpe", "smollm2"] = "bpe"
    vocab_size: int = 4096
    init: str | None = None
    teacher: str | None = None
    temperature: float = 2.0
    alpha: float = 0.5
    batch_size: int = 8
    grad_accum: int = 1
    max_steps: int = 160
    decay_steps: int | None = None
    max_minutes: float | None = None
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 16
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    label_smoothing: float = 0.0
    z_loss: float = 0.0
    eval_every: int = 20
    log_every: int = 10
    eval_batch_size: int = 8
    patience: int | None = 4
    autocast: Autocast = "auto"
    compile: bool = False
    skip_nonfinite: bool = False
    seed: int = 1337
    device: str | None = None
    out: str = "runs/train"
    tensorboard: str | None = None

    def __post_init__(self) -> None:
        limits = {
            "train_ratio": (0.0 < self.train_ratio < 1.0, "in (0, 1)"),
            "batch_size": (self.batch_size >= 1, "at least 1"),
            "grad_accum": (self.grad_accum >= 1, "at least 1"),
            "max_steps": (self.max_steps >= 1, "at least 1"),
            "eval_every": (self.eval_every >= 1, "at least 1"),
            "log_every": (self.log_every >= 1, "at least 1"),
            "decay_steps": (self.decay_steps is None or self.decay_steps >= 1, "at least 1"),
            "eval_batch_size": (self.eval_batch_size >= 1, "at least 1"),
            "lr": (self.lr > 0, "positive"),
            "min_lr_ratio": (0.0 <= self.min_lr_ratio <= 1.0, "in [0, 1]"),
            "warmup_steps": (self.warmup_steps >= 0, "non-negative"),
            "weight_decay": (self.weight_decay >= 0, "non-negative"),
            "grad_clip": (self.grad_clip >= 0, "non-negative"),
            "label_smoothing": (0.0 <= self.label_smoothing < 1.0, "in [0, 1)"),
            "z_loss": (self.z_loss >= 0, "non-negative"),
            "temperature": (self.temperature > 0, "positive"),
            "alpha": (0.0 <= self.alpha <= 1.0, "in [0, 1]"),
            "patience": (self.patience is None or self.patience >= 1, "at least 1"),
            "max_minutes": (self.max_minutes is None or self.max_minutes > 0, "positive"),
        }
        for name, (ok, requirement) in limits.items():
            if not ok:
                raise ValueError(f"{name} must be {requirement}, got {getattr(self, name)}")

    @property
    def schedule_steps(self) -> int:
        """The step at which the cosine decay reaches ``min_lr_ratio``."""
        return self.decay_steps if self.decay_steps is not None else self.max_steps

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready values (tuples become lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> TrainConfig:
        """The inverse of :meth:`to_dict`."""
        values = dict(record)
        values["data"] = tuple(values.get("data", ()))
        values["betas"] = tuple(values.get("betas", (0.9, 0.95)))
        return cls(**values)


def check_new_output(out: str) -> None:
    """Refuse an output folder that already holds something: a run never writes over another.

    The lock file a run killed before writing anything left (:mod:`crossent.training.lock`)
    does not count: nothing is lost by starting there.
    """
    from pathlib import Path

    from crossent.training.lock import LOCK_FILE

    if Path(out).exists() and any(path.name != LOCK_FILE for path in Path(out).iterdir()):
        raise ValueError(
            f"output folder {out} is not empty; choose a new --out, or --resume {out} to continue"
        )


# What may change when a run is resumed: how long it goes on, when it stops early (or skips a
# non-finite step), and where it runs and reports. Everything else decides what the steps
# compute and stays as saved.
RESUMABLE = (
    "max_steps", "max_minutes", "patience", "log_every", "device", "tensorboard", "skip_nonfinite",
    "out",
)  # fmt: skip


def resumed_config(saved: TrainConfig, **changes: Any) -> TrainConfig:
    """The configuration a resumed run continues with: ``saved`` with ``changes``.

    Only the settings of :data:`RESUMABLE` may change. A longer ``max_steps`` extends the run
    without moving its learning-rate schedule: the cosine keeps the span the run was started
    with (``decay_steps``), and the added steps run at its floor, ``min_lr_ratio * lr``, as
    nanoGPT's steps beyond ``lr_decay_iters`` do. Recomputing the cosine for the new length
    instead would raise the learning rate of an annealed model again, and make the steps
    already taken belong to a schedule other than the one they were taken under.

    Raises:
        ValueError: naming the settings that cannot change.
    """
    fixed = sorted(name for name in changes if name not in RESUMABLE)
    if fixed:
        raise ValueError(
            f"{', '.join(fixed)} cannot change when a run is resumed; only "
            f"{', '.join(RESUMABLE)} can"
        )
    return dataclasses.replace(saved, decay_steps=saved.schedule_steps, **changes)


def setting_conflicts(config: TrainConfig) -> list[str]:
    """One line per setting that contradicts another, as ``crossent train`` warns of them.

    crossent warns and runs what was asked for, rather than changing a setting behind the
    user's back: each line says what the combination means for the run. Only what defeats a
    setting's purpose is named (a warm-up that never ends, an evaluation interval that is never
    reached); a patience a short run cannot use up, or a log interval beyond the run, costs
    nothing and gets no word, so the default settings of a short run stay quiet.

    >>> for line in setting_conflicts(TrainConfig(max_steps=10, patience=None)):
    ...     print(line)  # doctest: +NORMALIZE_WHITESPACE
    --warmup-steps 16 is not below --max-steps 10: the learning rate warms up for the whole
        run and never decays
    --eval-every 20 exceeds --max-steps 10: the validation text is evaluated only at step 0
        and at the end
    """
    lines = []
    steps, decay = config.max_steps, config.schedule_steps
    if config.warmup_steps >= decay:
        limit = f"--max-steps {steps}" if decay == steps else f"the schedule's {decay} steps"
        lines.append(
            f"--warmup-steps {config.warmup_steps} is not below {limit}: the learning rate "
            "warms up for the whole run and never decays"
        )
    elif decay < steps:
        lines.append(
            f"steps {decay + 1}-{steps} run at the minimum learning rate "
            f"({config.min_lr_ratio:g} x --lr): the cosine schedule ends at step {decay}, "
            "where the run was first meant to end"
        )
    if config.eval_every > steps:
        lines.append(
            f"--eval-every {config.eval_every} exceeds --max-steps {steps}: the validation text "
            "is evaluated only at step 0 and at the end"
        )
    return lines
