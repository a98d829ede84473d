"""The training loop: minimise cross-entropy on the training text, watch it on the validation text.

One optimizer step is ``grad_accum`` micro-batches of ``batch_size`` rows (split across the
processes under torchrun). Each micro-batch's loss is its token losses summed and divided by the
tokens of the whole step, so the gradient is that of the step's mean loss however the step is
split. The loss is :func:`crossent.linear_cross_entropy` on the model's hidden states and its
(tied) LM head, with optional label smoothing and z-loss, or, with a teacher,
:func:`crossent.distillation_loss` on both models' logits.

Every ``eval_every`` steps (and at step 0, and at the end) the whole validation text is scored by
:func:`crossent.evaluate`, exactly as ``crossent eval`` scores it, and the record
(:class:`crossent.report.training.EvalRecord`) gets the training loss of the steps since the last
evaluation (their summed token losses over their tokens). The checkpoint of the lowest validation
loss is kept in ``out/best``; ``out/last`` holds the latest evaluation's checkpoint with the
optimizer, schedule, step and random states, from which :func:`train` with ``resume`` continues
as if never stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from crossent.data import Document, read_documents
from crossent.evaluation import evaluate
from crossent.files import write_folder_atomically, write_text_atomically
from crossent.losses.distill import distillation_loss
from crossent.losses.linear import linear_cross_entropy
from crossent.metrics import nats_to_bits
from crossent.report.training import (
    EvalRecord,
    best_evaluation,
    plot_losses,
    render_training_report,
)
from crossent.training.config import TrainConfig
from crossent.training.data import TextSplit, TrainingRows, split_text

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from crossent.models.protocol import CausalLM

STATE_FILE = "training_state.pt"
# The sequence length when fine-tuning a model of a longer context without --context-length.
DEFAULT_INIT_CONTEXT = 1024
METRICS_FILE = "metrics.jsonl"


@dataclass(frozen=True)
class TrainResult:
    """What a run did.

    Attributes:
        out: the output folder.
        best: the record of the lowest validation loss; its checkpoint is ``out/best``.
        records: every evaluation, in order (step 0 first).
        stopped: why the run ended: "max_steps", "patience", "max_minutes" or "until_step".
        parameters: the model's parameter count.
        split: the training and validation texts' sizes.
        train_tokens: tokens of the training text (prefix included).
        validation_tokens: tokens the validation loss is computed over.
    """

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
    say = log or (lambda line: None)
    rank, world = _process()
    state: dict[str, Any] | None = None
    if resume is not None:
        state = _read_state(Path(resume))
        config = dataclasses.replace(
            TrainConfig.from_dict(state["config"]),
            max_minutes=config.max_minutes,
            device=config.device,
        )
        out = Path(resume)
    else:
        out = Path(config.out)
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if config.batch_size % world:
        raise ValueError(
            f"batch size {config.batch_size} is not divisible by the {world} processes"
        )
    random.seed(config.seed)
    torch.manual_seed(config.seed)

    text = _training_text(config)
    split = split_text(text, config.train_ratio)
    teacher = _load(config.teacher, device) if config.teacher is not None else None
    model = _build_model(config, split, teacher, device, out / "last" if state else None)
    module = model.trainable
    # The training sequence length (and validation window): a new GPT's context, or for a
    # pretrained model the override, else its context capped at DEFAULT_INIT_CONTEXT.
    context = min(
        model.lm.context_length,
        config.context_length or min(model.lm.context_length, DEFAULT_INIT_CONTEXT),
    )
    tokenizer = model.lm.tokenizer
    prefix = (
        tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    )
    if prefix is None:
        raise ValueError("the tokenizer has neither a BOS nor an EOS token to start the text with")
    train_ids = [prefix, *tokenizer.encode(split.train)]
    rows = TrainingRows(train_ids, context, config.seed)
    validation = [Document("validation", split.validation)]

    optimizer = _optimizer(module, config, device)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(config))
    step, best, bad_evals, elapsed = 0, None, 0, 0.0
    records: list[EvalRecord] = []
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        step, bad_evals, elapsed = state["step"], state["bad_evals"], state["elapsed_s"]
        records = [EvalRecord(**record) for record in state["records"]]
        best = records[best_evaluation(records) or 0]
        torch.set_rng_state(state["rng_torch"])
        random.setstate(state["rng_python"])
        if device.type == "cuda" and state.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(state["rng_cuda"], device)
    forward: nn.Module = module
    if world > 1:
        forward = nn.parallel.DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None
        )
    if config.compile:
        forward = torch.compile(forward)  # type: ignore[assignment]
    autocast = _autocast(config, device)

    def micro_loss(batch: Tensor, normaliser: int) -> Tensor:
        """The summed token losses of ``batch`` (rows of T + 1) over ``normaliser`` tokens."""
        inputs, targets = batch[:, :-1].to(device), batch[:, 1:].to(device)  # (b, T) each
        with autocast:
            hidden = forward(inputs)  # (b, T, d)
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

    validation_tokens = 0  # scored by each evaluation; the same every time

    def run_eval(train_loss: float) -> EvalRecord:
        nonlocal validation_tokens
        module.eval()
        with torch.no_grad():
            result = evaluate(
                model.lm, validation, window=context, batch_size=config.eval_batch_size
            )
        module.train()
        validation_tokens = result.totals.tokens
        bits = result.totals.bits_per_byte
        return EvalRecord(
            step=step,
            tokens_seen=step * config.batch_size * config.grad_accum * context,
            train_loss=train_loss,
            val_loss=result.totals.nats_per_token,
            val_bits_per_byte=bits if bits is not None else math.nan,
            lr=float(schedule.get_last_lr()[0]),
            elapsed_s=elapsed,
        )

    def keep(record: EvalRecord) -> None:
        """Add a record, save last/ (and best/ when it is the best), rewrite the metrics."""
        nonlocal best, bad_evals
        records.append(record)
        improved = math.isfinite(record.val_loss) and (
            best is None or record.val_loss < best.val_loss
        )
        if improved:
            best, bad_evals = record, 0
        else:
            bad_evals += 1
        if rank == 0:
            state = {
                "config": config.to_dict(),
                "step": step,
                "bad_evals": bad_evals,
                "elapsed_s": elapsed,
                "records": [record.to_dict() for record in records],
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
                "rng_torch": torch.get_rng_state(),
                "rng_python": random.getstate(),
                "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            }
            _save_checkpoint(out / "last", model, state)
            if improved:
                _link_copy(out / "last", out / "best")
            lines = [record.to_json() for record in records]
            write_text_atomically(out / METRICS_FILE, "".join(line + "\n" for line in lines))
        say(_describe(record, improved))

    out.mkdir(parents=True, exist_ok=True)
    module.train()
    tokens_per_step = config.batch_size * config.grad_accum * context
    share = config.batch_size // world
    if state is None:
        # The training loss before any update: the first step's rows under the initial weights.
        with torch.no_grad():
            loss0 = sum(
                micro_loss(rows.take(micro * config.batch_size + rank * share, share), 1).double()
                for micro in range(config.grad_accum)
            )
        keep(run_eval(_all_sum(torch.as_tensor(loss0)).item() / tokens_per_step))
    interval_sum = torch.zeros((), dtype=torch.float64, device=device)
    interval_tokens = 0
    stopped = "max_steps"
    started = time.monotonic() - elapsed
    while step < config.max_steps:
        step_sum = torch.zeros((), dtype=torch.float64, device=device)
        for micro in range(config.grad_accum):
            first_row = (step * config.grad_accum + micro) * config.batch_size
            batch = rows.take(first_row + rank * share, share)
            sync = micro == config.grad_accum - 1 or world == 1
            with contextlib.nullcontext() if sync else forward.no_sync():  # type: ignore[operator]
                loss = micro_loss(batch, tokens_per_step // world)
                loss.backward()  # type: ignore[no-untyped-call]
            step_sum += loss.detach().double()
        if config.grad_clip > 0:
            nn.utils.clip_grad_norm_(module.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        schedule.step()
        step += 1
        interval_sum += step_sum * (tokens_per_step // world)
        interval_tokens += tokens_per_step
        if progress is not None:
            progress(step, config.max_steps, tokens_per_step, step_sum.item())
        elapsed = time.monotonic() - started
        over_time = config.max_minutes is not None and elapsed > 60 * config.max_minutes
        pausing = until_step is not None and step >= until_step
        if step % config.eval_every == 0 or step == config.max_steps or over_time or pausing:
            keep(run_eval(_all_sum(interval_sum).item() / interval_tokens))
            interval_sum.zero_()
            interval_tokens = 0
            if config.patience is not None and bad_evals >= config.patience:
                stopped = "patience"
                break
        if over_time:
            stopped = "max_minutes"
            break
        if pausing:
            stopped = "until_step"
            break
    assert best is not None  # step 0 was evaluated
    if rank == 0:
        plot_losses(records, out / "losses.png")
        summary = {
            "stopped": stopped,
            "best step": best.step,
            "best checkpoint": str(out / "best"),
            "parameters": module_parameters(module),
            "training text": f"{split.train_bytes} bytes, {len(train_ids)} tokens",
            "validation text": f"{split.validation_bytes} bytes",
        }
        write_text_atomically(
            out / "report.html", render_training_report(records, config.to_dict(), summary=summary)
        )
    return TrainResult(
        out=out,
        best=best,
        records=records,
        stopped=stopped,
        parameters=module_parameters(module),
        split=split,
        train_tokens=len(train_ids),
        validation_tokens=validation_tokens,
    )


def module_parameters(module: nn.Module) -> int:
    """Parameters of ``module``, each shared (tied) one counted once."""
    return sum(parameter.numel() for parameter in module.parameters())


@dataclass
class _Model:
    """The model being trained, seen two ways: as a module to optimise and as a CausalLM."""

    trainable: nn.Module  # forward(idx) -> hidden states
    lm: CausalLM
    tokenizer_files: Any  # a transformers tokenizer, saved with each checkpoint

    @property
    def head_weight(self) -> Tensor:
        return self.lm.head_weight

    @property
    def head_bias(self) -> Tensor | None:
        return self.lm.head_bias


class _HiddenStates(nn.Module):
    """A transformers causal LM as a module whose forward returns the final hidden states."""

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, idx: Tensor) -> Tensor:
        output = self.model.base_model(input_ids=idx, use_cache=False)
        hidden: Tensor = output.last_hidden_state  # (B, T, d)
        return hidden


def _build_model(
    config: TrainConfig,
    split: TextSplit,
    teacher: CausalLM | None,
    device: torch.device,
    checkpoint: Path | None,
) -> _Model:
    from crossent.models.bpe import train_bpe_tokenizer
    from crossent.models.checkpoint import GPTCausalLM
    from crossent.models.gpt import GPT, GPTConfig
    from crossent.models.huggingface import HFCausalLM

    source = str(checkpoint) if checkpoint is not None else config.init
    if source is not None:
        lm = _load(source, device)
        if isinstance(lm, GPTCausalLM):
            lm.module.train().requires_grad_(True)
            return _Model(lm.module, lm, lm.hf_tokenizer)
        if isinstance(lm, HFCausalLM):
            lm.model.train().requires_grad_(True)
            return _Model(_HiddenStates(lm.model), lm, lm.hf_tokenizer)
        raise ValueError(f"cannot train model {source!r}: it is neither a crossent GPT nor HF")
    if teacher is not None:
        tokenizer = getattr(teacher, "hf_tokenizer", None)
        if tokenizer is None:
            raise ValueError("the teacher has no transformers tokenizer to give the student")
        vocab_size = teacher.vocab_size
    elif config.tokenizer == "smollm2":
        tokenizer = _load(None, torch.device("cpu")).hf_tokenizer  # type: ignore[attr-defined]
        vocab_size = len(tokenizer)
    else:
        tokenizer = train_bpe_tokenizer([split.train], config.vocab_size)
        vocab_size = len(tokenizer)
    sizes = {
        name: value
        for name in ("n_layer", "n_head", "d_model", "context_length")
        if (value := getattr(config, name)) is not None
    }
    gpt_config = GPTConfig.preset(
        config.preset, vocab_size=vocab_size, dropout=config.dropout, **sizes
    )
    module = GPT(gpt_config).to(device)
    return _Model(module, GPTCausalLM(module, tokenizer, name=config.out), tokenizer)


def _load(spec: str | None, device: torch.device) -> CausalLM:
    from crossent.models import load_model

    return load_model(spec, device=device)


def _training_text(config: TrainConfig) -> str:
    """The documents' texts joined by blank lines (one text for one document)."""
    parts = []
    for document in read_documents(list(config.data), field=config.field, errors=config.errors):
        parts.append("".join(document.parts()))
    return "\n\n".join(parts)


def _optimizer(module: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices (and embeddings) only, not on biases and norms."""
    decay = [p for p in module.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in module.parameters() if p.requires_grad and p.dim() < 2]
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.lr,
        betas=config.betas,
        fused=device.type == "cuda",
    )


def _lr_factor(config: TrainConfig) -> Callable[[int], float]:
    """Linear warm-up to 1, then cosine decay to ``min_lr_ratio`` at ``max_steps``."""

    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        span = max(1, config.max_steps - config.warmup_steps)
        progress = min(1.0, (step - config.warmup_steps) / span)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine

    return factor


def _autocast(config: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    wanted = config.autocast == "bfloat16" or (
        config.autocast == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()
    )
    if not wanted:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def _process() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_sum(value: Tensor) -> Tensor:
    """``value`` summed over the processes (itself in one process)."""
    if _process()[1] > 1:
        value = value.clone()
        dist.all_reduce(value)
    return value


def _save_checkpoint(folder: Path, model: _Model, state: dict[str, Any]) -> None:
    """The model, its tokenizer and the training state into ``folder``, replaced as a whole."""
    from crossent.models.checkpoint import save_gpt
    from crossent.models.gpt import GPT

    def write(staging: Path) -> None:
        if isinstance(model.trainable, GPT):
            save_gpt(staging, model.trainable, model.tokenizer_files)
        elif isinstance(model.trainable, _HiddenStates):
            model.trainable.model.save_pretrained(staging)
            model.tokenizer_files.save_pretrained(staging)
        torch.save(state, staging / STATE_FILE)

    write_folder_atomically(folder, write)


def _link_copy(source: Path, folder: Path) -> None:
    """``folder`` replaced by a copy of ``source`` made of hard links (no bytes rewritten)."""
    write_folder_atomically(
        folder,
        lambda staging: shutil.copytree(
            source, staging, dirs_exist_ok=True, copy_function=_link_or_copy
        ),
    )


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:  # a file system without hard links
        shutil.copy2(source, target)


def _read_state(out: Path) -> dict[str, Any]:
    path = out / "last" / STATE_FILE
    if not path.is_file():
        raise ValueError(
            f"cannot resume from {out}: no {path.relative_to(out)} (not a run folder?)"
        )
    state: dict[str, Any] = torch.load(path, weights_only=False)
    return state


def _describe(record: EvalRecord, improved: bool) -> str:
    mark = " *" if improved else ""
    return (
        f"step {record.step}: train {record.train_loss:.4f}, val {record.val_loss:.4f} nats/token "
        f"({nats_to_bits(record.val_loss):.3f} bits, ppl {math.exp(record.val_loss):.2f}, "
        f"{record.val_bits_per_byte:.4f} bits/byte), lr {record.lr:.2e}, "
        f"{record.elapsed_s:.0f} s{mark}"
    )
