"""Training and fine-tuning causal LMs by minimising cross-entropy (``crossent train``).

* :mod:`crossent.training.config`: :class:`TrainConfig`, every setting of a run;
* :mod:`crossent.training.data`: the train/validation split and the order of training rows;
* :mod:`crossent.training.loop`: :func:`train`, the loop, its evaluations and checkpoints.
"""

from crossent.training.config import TrainConfig
from crossent.training.loop import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
