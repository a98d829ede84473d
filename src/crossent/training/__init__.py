"""Training and fine-tuning causal LMs by minimising cross-entropy (``crossent train``).

* :mod:`crossent.training.config`: :class:`TrainConfig`, every setting of a run;
* :mod:`crossent.training.data`: the training text, the train/validation split and the order of
  training rows;
* :mod:`crossent.training.model`: the model to train, new or loaded, as a module and a CausalLM;
* :mod:`crossent.training.optimizer`: AdamW, the learning-rate schedule and autocast;
* :mod:`crossent.training.records`: what each evaluation records (``metrics.jsonl``), the best
  evaluation and the early-stopping rule;
* :mod:`crossent.training.checkpoints`: ``out/last``, ``out/best`` and the state a run resumes
  from;
* :mod:`crossent.training.log`: the training loss summed over intervals, and TensorBoard;
* :mod:`crossent.training.result`: :class:`TrainResult`, what a run hands back, and
  :class:`TrainingInterrupted`, what Ctrl-C raises;
* :mod:`crossent.training.loop`: :func:`train`, the loop itself.

:func:`train` and :class:`TrainResult` are imported on first use, so that reading a
configuration (as ``crossent train --help`` does) imports neither PyTorch nor matplotlib.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crossent.training.config import TrainConfig

if TYPE_CHECKING:
    from crossent.training.loop import train
    from crossent.training.result import TrainingInterrupted, TrainResult

__all__ = ["TrainConfig", "TrainResult", "TrainingInterrupted", "train"]


def __getattr__(name: str) -> Any:
    if name == "train":
        from crossent.training import loop

        return loop.train
    if name in ("TrainResult", "TrainingInterrupted"):
        from crossent.training import result

        return getattr(result, name)
    raise AttributeError(f"module 'crossent.training' has no attribute {name!r}")
