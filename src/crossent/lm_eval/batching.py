"""``batch_size=auto`` for the ``crossent`` model: as many rows as the memory holds, by estimate.

lm-eval's ``hf`` model finds its batch size by trial: forward passes at decreasing batch sizes
until one does not run out of memory. That works on CUDA, where running out raises an error; on
a CPU the operating system kills the process instead. The crossent model holds no logits, so
what a batch needs is the trunk's, and that can be estimated from the model's shape:

* per token of a row of ``T`` tokens, ``(10 d + 4 I + 2 H T)`` numbers of the model's dtype:
  the residual stream and what one layer holds at once (norms, queries, keys, values, outputs:
  ``10 d``, generous), the MLP's intermediate activations (``4 I``) and the attention scores
  with their softmax (``2 H T``, for an attention that materialises them; a fused one needs
  less). ``d``, ``I`` and ``H`` (width, MLP width, heads) come from the model's config (a
  Hugging Face config or a crossent GPT's; else ``d`` from the head, ``I = 4 d``,
  ``H = d / 64``). Without gradients only one layer's activations live at a time, so the
  depth does not count;
* against the memory available once the model is loaded: on CUDA the device's free memory
  (``torch.cuda.mem_get_info``), else the system's (``psutil.virtual_memory().available``,
  or ``MemAvailable`` in ``/proc/meminfo`` without psutil), less 256 MiB for the fused head's
  chunks of logits, of which a batch may use **half** (the margin: copies, the allocator, and
  other processes).

A batch then holds ``budget // (bytes per row of its length)`` rows, at least 1 and at most
``max_batch_size`` (64 by default, as in lm-eval). The rows are counted for each batch from its
longest row, so batches of short requests are larger; that is what lm-eval's ``auto:N`` (re-
detect ``N`` times as requests get shorter) is for, and why ``auto:N`` means ``auto`` here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from crossent.models import GPTCausalLM, HFCausalLM
from crossent.models.protocol import CausalLM

__all__ = ["DEFAULT_MAX_BATCH_SIZE", "MemoryBudget", "available_memory", "parse_batch_size"]

DEFAULT_MAX_BATCH_SIZE = 64  # lm-eval's
SAFETY = 0.5  # the share of the available memory a batch may use
HEAD_RESERVE = 256 * 2**20  # the fused head's chunks of logits and their temporaries


def parse_batch_size(batch_size: int | str) -> int | None:
    """lm-eval's ``batch_size``: a positive integer, or ``None`` for ``auto`` (and ``auto:N``).

    >>> parse_batch_size("8"), parse_batch_size("auto"), parse_batch_size("auto:4")
    (8, None, None)

    Raises:
        ValueError: anything else.
    """
    text = str(batch_size)
    if text == "auto" or (text.startswith("auto:") and text[5:].isdigit()):
        return None
    try:
        value = int(text)
    except ValueError:
        raise ValueError(
            f"batch_size {batch_size!r} is not a positive integer, 'auto' or 'auto:N'"
        ) from None
    if value < 1:
        raise ValueError(f"batch_size {value} is not a positive integer")
    return value


def available_memory(device: torch.device) -> int:
    """Bytes free for a batch on ``device`` now (the module docstring)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        import psutil  # type: ignore[import-untyped]
    except ImportError:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # the file counts kB
        raise ValueError(
            "batch_size auto: no psutil and no MemAvailable in /proc/meminfo"
        ) from None
    return int(psutil.virtual_memory().available)


@dataclass(frozen=True)
class MemoryBudget:
    """How many rows of a given length fit in a memory budget (the module docstring).

    Attributes:
        budget: Bytes a batch may use.
        width: ``d``; mlp_width: ``I``; heads: ``H``; element_size: bytes per number.
        max_batch_size: The most rows of a batch.
    """

    budget: int
    width: int
    mlp_width: int
    heads: int
    element_size: int
    max_batch_size: int

    @classmethod
    def of(cls, model: CausalLM, max_batch_size: int | None = None) -> MemoryBudget:
        """The budget of ``model`` on its device, measured now."""
        rows = DEFAULT_MAX_BATCH_SIZE if max_batch_size is None else int(max_batch_size)
        if rows < 1:
            raise ValueError(f"max_batch_size {rows} is not a positive integer")
        free = available_memory(model.device) - HEAD_RESERVE
        width, mlp_width, heads = _shape(model)
        element_size = model.head_weight.element_size()
        return cls(int(max(free, 0) * SAFETY), width, mlp_width, heads, element_size, rows)

    def row_bytes(self, length: int) -> int:
        """The estimated bytes of one row of ``length`` tokens."""
        numbers = 10 * self.width + 4 * self.mlp_width + 2 * self.heads * length
        return length * numbers * self.element_size

    def rows(self, length: int) -> int:
        """Rows of ``length`` tokens in one batch: in ``[1, max_batch_size]``."""
        return max(1, min(self.max_batch_size, self.budget // self.row_bytes(max(length, 1))))


def _shape(model: CausalLM) -> tuple[int, int, int]:
    """``(d, I, H)`` from the model's config where it has one, else from the head."""
    width = int(model.head_weight.shape[1])
    if isinstance(model, GPTCausalLM):
        return (
            model.module.config.d_model,
            4 * model.module.config.d_model,
            model.module.config.n_head,
        )
    if isinstance(model, HFCausalLM):
        config = model.model.config.get_text_config()
        width = int(getattr(config, "hidden_size", None) or width)
        mlp = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None)
        heads = getattr(config, "num_attention_heads", None) or max(1, width // 64)
        return width, int(mlp or 4 * width), int(heads)
    return width, 4 * width, max(1, width // 64)
