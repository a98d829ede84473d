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
            rest, contiguous, is the validation text (as in seed 004).
        preset: the GPT architecture (:attr:`crossent.models.gpt.GPTConfig.PRESETS`).
        n_layer: override of the preset's number of blocks.
        n_head: override of the preset's number of heads.
        d_model: override of the preset's width.
        context_length: override of the preset's context, the training sequence length; for
            an ``init`` model, the sequence length (default: its context, at most 1024).
        dropout: dropout while training.
        tokenizer: ``"bpe"`` trains a byte-level BPE on the training text; ``"smollm2"`` uses
            the embedded model's tokenizer.
        vocab_size: the BPE's vocabulary size.
        init: a model to continue training (anything ``crossent eval`` loads); None trains
            a new GPT from scratch.
        teacher: a model to distil from (it must share the student's tokenizer).
        temperature: distillation temperature.
        alpha: the weight of the soft (teacher) term in the distillation loss.
        batch_size: sequences per micro-batch (split across processes under torchrun).
        grad_accum: micro-batches per optimizer step.
        max_steps: optimizer steps; the learning-rate schedule spans them.
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
        eval_batch_size: windows per forward pass when evaluating.
        patience: stop after this many evaluations without a lower validation loss; None
            never stops early.
        autocast: ``"auto"`` uses bfloat16 autocast on a CUDA device that supports it and
            float32 elsewhere; ``"bfloat16"`` forces it; ``"none"`` disables it.
        compile: run the model through ``torch.compile``.
        seed: seeds the weights, the data order and dropout.
        device: where to train; None picks CUDA when present.
        out: the folder for ``metrics.jsonl``, ``losses.png``, ``report.html``, ``best/``
            and ``last/``.
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
    eval_batch_size: int = 8
    patience: int | None = 4
    autocast: Autocast = "auto"
    compile: bool = False
    seed: int = 1337
    device: str | None = None
    out: str = "runs/train"

    def __post_init__(self) -> None:
        limits = {
            "train_ratio": (0.0 < self.train_ratio < 1.0, "in (0, 1)"),
            "batch_size": (self.batch_size >= 1, "at least 1"),
            "grad_accum": (self.grad_accum >= 1, "at least 1"),
            "max_steps": (self.max_steps >= 1, "at least 1"),
            "eval_every": (self.eval_every >= 1, "at least 1"),
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
    """Refuse an output folder that already holds something: a run never writes over another."""
    from pathlib import Path

    if Path(out).exists() and any(Path(out).iterdir()):
        raise ValueError(
            f"output folder {out} is not empty; choose a new --out, or --resume {out} to continue"
        )
