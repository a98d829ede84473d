"""A run's checkpoints and the state it resumes from.

``out/last`` holds the model and tokenizer of the latest evaluation with the training state
(``training_state.pt``): the configuration, the step, the evaluations and training records so
far, the validation text's token count, the optimizer, the schedule and every random
generator's state, so that a run resumed from it continues as if never stopped.
``out/best`` is ``out/last`` as it was at the best evaluation, copied as hard links. Each folder
is replaced as a whole, so an interrupted save leaves the previous one. :func:`saved_run` reads
what a run has done without building anything, so that resuming a finished run is answered at
once.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from crossent.checksums import verify_checksums, write_checksums
from crossent.files import (
    readable_folder,
    recover_folder,
    remove_stale_temporaries,
    write_folder_atomically,
)
from crossent.training.config import RESUMABLE, TrainConfig
from crossent.training.model import HiddenStates, TrainingModel
from crossent.training.records import EvalHistory, EvalRecord, TrainRecord

STATE_FILE = "training_state.pt"


def training_state(
    config: TrainConfig,
    step: int,
    elapsed: float,
    history: EvalHistory,
    train_log: list[TrainRecord],
    validation_tokens: int,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
    skipped_steps: int = 0,
) -> dict[str, Any]:
    """Everything a resumed run needs besides the weights, as ``training_state.pt`` holds it."""
    return {
        "config": config.to_dict(),
        "step": step,
        "bad_evals": history.bad_evals,
        "elapsed_s": elapsed,
        "records": [record.to_dict() for record in history.records],
        "train_log": [record.to_dict() for record in train_log],
        "validation_tokens": validation_tokens,
        "skipped_steps": skipped_steps,
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "rng_torch": torch.get_rng_state(),
        "rng_python": random.getstate(),
        "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }


def restore(
    state: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
    patience: int | None,
) -> tuple[int, float, EvalHistory]:
    """Put the optimizer, the schedule and the random generators back as ``state`` has them.

    Returns:
        The step, the training seconds so far, and the evaluations so far.
    """
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    records = [EvalRecord.from_dict(record) for record in state["records"]]
    history = EvalHistory(patience, records, state["bad_evals"])
    torch.set_rng_state(state["rng_torch"])
    random.setstate(state["rng_python"])
    if device.type == "cuda" and state.get("rng_cuda") is not None:
        torch.cuda.set_rng_state(state["rng_cuda"], device)
    return state["step"], state["elapsed_s"], history


@dataclass(frozen=True)
class SavedRun:
    """What the run in a folder has done, as its ``last/`` saved it.

    Attributes:
        config: the run's settings.
        step: the optimizer steps taken.
        records: its evaluations.
        train_log: its training records.
        bad_evals: evaluations since the best one.
        validation_tokens: the tokens each evaluation scores.
    """

    config: TrainConfig
    step: int
    records: list[EvalRecord]
    train_log: list[TrainRecord]
    bad_evals: int
    validation_tokens: int

    def finished(self, config: TrainConfig) -> str | None:
        """Why the run would take no step under ``config`` (its resumed settings), or None.

        ``"max_steps"`` when it has reached ``config.max_steps``; ``"patience"`` when
        ``config.patience`` evaluations have passed without a new best.
        """
        if self.step >= config.max_steps:
            return "max_steps"
        if config.patience is not None and self.bad_evals >= config.patience:
            return "patience"
        return None

    def completion(self, config: TrainConfig, folder: Path) -> str | None:
        """One line saying that the run in ``folder`` has nothing left to do under ``config``
        and how to extend it; None when it has."""
        command = f"crossent train --resume {folder}"
        reason = self.finished(config)
        if reason == "max_steps":
            return (
                f"{folder} is complete: it is at step {self.step} of --max-steps "
                f"{config.max_steps}; to train it further: {command} --max-steps N (N > "
                f"{self.step})"
            )
        if reason == "patience":
            return (
                f"{folder} is complete: it stopped at step {self.step} after {self.bad_evals} "
                f"evaluations without a lower validation loss (--patience {config.patience}); "
                f"to train it further: {command} --patience N (N > {self.bad_evals}, or 0 to "
                "never stop early)"
            )
        return None


def saved_run(out: Path) -> SavedRun:
    """What the run in ``out`` has done, from its training state (see :func:`read_state`).

    Raises:
        ValueError: as :func:`read_state`.
    """
    state = read_state(out)
    return SavedRun(
        config=TrainConfig.from_dict(state["config"]),
        step=state["step"],
        records=[EvalRecord.from_dict(record) for record in state["records"]],
        train_log=[TrainRecord.from_dict(record) for record in state.get("train_log", [])],
        bad_evals=state["bad_evals"],
        validation_tokens=state.get("validation_tokens", 0),
    )


def read_state(out: Path) -> dict[str, Any]:
    """The training state of the run in ``out``, read without running anything it carries.

    A run folder may come from someone else, and a pickle can name any callable to run while it
    loads. So the state is read with PyTorch's restricted unpickler (``weights_only=True``):
    tensors, numbers, strings, None and containers of them, which is all a state holds (see
    :func:`training_state`); anything else is refused before it is built.

    Raises:
        ValueError: ``out`` has no ``last/training_state.pt``, or the file is not a training
            state crossent wrote (corrupt, or carrying other objects).
    """
    path = readable_folder(out / "last") / STATE_FILE
    if not path.is_file():
        raise ValueError(
            f"cannot resume from {out}: no last/{STATE_FILE} (not a run folder, or a run "
            "stopped before its first checkpoint: start it again)"
        )
    try:
        verify_checksums(path.parent, names=[STATE_FILE])
    except ValueError as error:
        raise ValueError(f"cannot resume from {out}: {error}") from None
    try:
        state = torch.load(path, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"cannot resume from {out}: {path.relative_to(out)} is not a crossent training "
            f"state, refused: {first}"
        ) from None
    if not isinstance(state, dict) or "optimizer" not in state:
        raise ValueError(
            f"cannot resume from {out}: {path.relative_to(out)} is not a crossent training state"
        )
    return state


def configuration(
    config: TrainConfig, resume: str | os.PathLike[str] | None
) -> tuple[TrainConfig, Path, dict[str, Any] | None]:
    """The run's configuration, folder and, when resuming, its saved state (for :func:`train`).

    Raises:
        ValueError: ``config`` differs from the saved run's in a setting that cannot change,
            or the run has nothing left to do.
    """
    if resume is None:
        return config, Path(config.out), None
    folder = Path(resume)
    done = saved_run(folder)
    fixed = [
        field.name
        for field in dataclasses.fields(TrainConfig)
        if field.name not in (*RESUMABLE, "decay_steps")
        and getattr(config, field.name) != getattr(done.config, field.name)
    ]
    if fixed:
        raise ValueError(
            f"cannot resume {folder} with other settings: {', '.join(fixed)} differ from the "
            f"saved run's, and only {', '.join(RESUMABLE)} can change"
        )
    recover_run(folder, done)
    config = dataclasses.replace(config, out=str(folder), decay_steps=done.config.schedule_steps)
    complete = done.completion(config, folder)
    if complete is not None:
        raise ValueError(complete)
    return config, folder, read_state(folder)


def recover_run(out: Path, done: SavedRun) -> None:
    """Make the run folder ``out`` whole again after its process was killed while saving.

    ``last/`` and ``best/`` are each replaced as a whole (:func:`crossent.files.recover_folder`
    puts back a previous version that a kill between two renames left aside, and removes
    staging folders); the temporary of a file killed while written (``metrics.jsonl``, the
    report) is removed, its file being the previous whole one. ``best/`` is written just after
    ``last/`` when an evaluation is the best so far, so a kill between the two leaves ``best/``
    one best behind: it is made again from ``last/`` whenever the saved state says ``last/`` is
    the best and ``best/`` is not it.
    """
    for name in ("last", "best"):
        recover_folder(out / name)
    remove_stale_temporaries(out)
    best = EvalHistory(None, done.records).best
    last, kept = out / "last" / STATE_FILE, out / "best" / STATE_FILE
    last_is_best = best is not None and best.step == done.records[-1].step
    if last_is_best and not (kept.is_file() and os.path.samefile(last, kept)):
        link_copy(out / "last", out / "best")


def save_checkpoint(folder: Path, model: TrainingModel, state: dict[str, Any]) -> None:
    """The model, its tokenizer and the training state into ``folder``, replaced as a whole."""
    from crossent.models.checkpoint import save_gpt
    from crossent.models.gpt import GPT

    def write(staging: Path) -> None:
        if isinstance(model.trainable, GPT):
            save_gpt(staging, model.trainable, model.tokenizer_files)
        elif isinstance(model.trainable, HiddenStates):
            model.trainable.model.save_pretrained(staging)
            model.tokenizer_files.save_pretrained(staging)
        torch.save(state, staging / STATE_FILE)
        write_checksums(staging)

    write_folder_atomically(folder, write)


def link_copy(source: Path, folder: Path) -> None:
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
