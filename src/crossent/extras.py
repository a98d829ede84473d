"""Which optional dependencies (``pip install crossent[EXTRA]``) each part of crossent needs.

``pip install crossent`` brings the loss library with PyTorch and NumPy only. Evaluating,
comparing, training and explaining on real models need the ``hf`` extra; figures and the training
report need ``report``; the GPU kernel needs ``gpu``; ``crossent train --tensorboard`` needs
``tensorboard``; ``crossent lm-eval`` needs ``lm-eval``; reading ``.zst`` files, Parquet files
and ``datasets`` folders needs ``corpus``. A command whose extra is missing says which
one to install in one line, before it imports anything that would fail deep inside.
"""

from __future__ import annotations

import importlib.util

EXTRAS: dict[str, tuple[str, ...]] = {
    "hf": ("transformers", "gguf", "accelerate", "safetensors", "tokenizers", "tqdm"),
    "report": ("matplotlib",),
    "gpu": ("triton",),
    "tensorboard": ("tensorboard",),
    "corpus": ("zstandard", "pyarrow", "datasets"),
    "lm-eval": ("transformers", "gguf", "accelerate", "safetensors", "tokenizers", "lm_eval"),
}


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def extra_for(module: str) -> str | None:
    """The extra that brings top-level ``module`` (None when no extra does)."""
    top = module.partition(".")[0]
    return next((extra for extra, modules in EXTRAS.items() if top in modules), None)


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here."""
    return [name for name in EXTRAS[extra] if importlib.util.find_spec(name) is None]


def require(extra: str, purpose: str) -> None:
    """Raise :class:`MissingExtraError` unless every module of ``extra`` is installed.

    Example:
        >>> require("hf", "loading a model")  # silent when transformers & co. are installed
    """
    absent = missing(extra)
    if absent:
        raise MissingExtraError(
            f"{purpose} needs the {extra!r} extra ({', '.join(absent)} missing): "
            f"pip install 'crossent[{extra}]'"
        )
