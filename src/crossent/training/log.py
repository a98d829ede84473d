"""The training loss as the loop logs it: sums over an interval of steps, and TensorBoard.

:class:`LossSums` adds up the student's cross-entropy (and, when the run minimises something
else, that objective) over the tokens of some steps, as token sums in float64 on the training
device, and gives their means over all processes: the training loss of a
:class:`~crossent.training.records.TrainRecord` (the steps since the previous one) and of an
:class:`~crossent.training.records.EvalRecord` (the steps since the previous evaluation).

:class:`TensorBoardLog` writes the same records as TensorBoard scalars (``train/loss``,
``train/objective``, ``train/lr``, ``val/loss``, ``val/bits_per_byte``, each at its step), with
the ``tensorboard`` extra; the numbers are those of ``metrics.jsonl``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from crossent.distributed import all_sum
from crossent.extras import require
from crossent.training.records import EvalRecord, TrainRecord

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter


class LossSums:
    """Token sums of the training loss over the steps since the last :meth:`take`.

    Args:
        device: where the sums live (the training device, so adding never synchronises).
        objective: whether to sum an objective besides the cross-entropy.
    """

    def __init__(self, device: torch.device, objective: bool) -> None:
        self.cross_entropy = torch.zeros((), dtype=torch.float64, device=device)
        self.objective = torch.zeros((), dtype=torch.float64, device=device) if objective else None
        self.tokens = 0

    def add(self, cross_entropy: Tensor, objective: Tensor | None, tokens: int) -> None:
        """Add one step: this process's summed token losses, and the step's tokens (all
        processes')."""
        self.cross_entropy += cross_entropy
        if self.objective is not None and objective is not None:
            self.objective += objective
        self.tokens += tokens

    def take(self) -> tuple[float, float | None]:
        """The mean cross-entropy and objective per token over all processes; then reset.

        Every process must call it at the same step (it sums across them). With no step
        added (every one skipped for a non-finite loss) the means are NaN: nothing was measured.
        """
        tokens = self.tokens if self.tokens else math.nan
        mean = all_sum(self.cross_entropy).item() / tokens
        objective = None
        if self.objective is not None:
            objective = all_sum(self.objective).item() / tokens
            self.objective.zero_()
        self.cross_entropy.zero_()
        self.tokens = 0
        return mean, objective


class TensorBoardLog:
    """TensorBoard event files of a run's records, in ``folder``.

    Args:
        folder: the log directory (created when missing).
        purge_step: for a resumed run, the step after its checkpoint's: TensorBoard hides
            what an earlier session logged from this step on, which the resumed run logs again.

    Raises:
        crossent.extras.MissingExtraError: the ``tensorboard`` extra is not installed.
    """

    def __init__(self, folder: str | Path, purge_step: int | None = None) -> None:
        require("tensorboard", "--tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.writer: SummaryWriter = SummaryWriter(str(folder), purge_step=purge_step)

    def train(self, record: TrainRecord) -> None:
        """Write a training record's loss, objective and learning rate."""
        self.writer.add_scalar("train/loss", record.train_loss, record.step)
        if record.train_objective is not None:
            self.writer.add_scalar("train/objective", record.train_objective, record.step)
        self.writer.add_scalar("train/lr", record.lr, record.step)
        self.writer.flush()

    def evaluation(self, record: EvalRecord) -> None:
        """Write an evaluation's validation loss and bits per byte."""
        self.writer.add_scalar("val/loss", record.val_loss, record.step)
        self.writer.add_scalar("val/bits_per_byte", record.val_bits_per_byte, record.step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
