"""crossent inside lm-evaluation-harness: the ``crossent`` model and the ``crossent lm-eval`` door.

Importing this package registers :class:`CrossentLM` in lm-eval's model registry as
``crossent``, so ``lm_eval.simple_evaluate(model="crossent", model_args="pretrained=DIR")``
works as well as ``lm_eval.simple_evaluate(model=CrossentLM(...))``. :func:`run_harness` is
lm-eval's own command line with that model registered (``crossent lm-eval``).

The imports below are absolute, so ``lm_eval`` inside this package is lm-evaluation-harness,
never this package (``crossent.lm_eval``).
"""

from __future__ import annotations

from crossent.lm_eval.harness import run_harness
from crossent.lm_eval.model import CrossentLM

__all__ = ["CrossentLM", "run_harness"]
