"""How many rows of logits a chunk holds: the one home of every chunk-size rule.

A loss walks its ``[N, V]`` logits a chunk of rows at a time so that no fp32 temporary is larger
than a chunk. Three budgets, each measured for its own job:

* :data:`LOGITS_PER_CHUNK` for logits that already exist (:mod:`crossent.losses.cross_entropy`,
  :mod:`crossent.losses.parallel`): large enough that the per-chunk overhead vanishes, small
  enough that a chunk's fp32 work (4 MiB) stays in cache between passes. Measured on a 2-core
  CPU at V=50304: 2^20 beat 2^18 and 2^22.
* :data:`LOGITS_PER_CACHE_BLOCK` inside the PyTorch rows (:mod:`crossent.kernels.torch_rows`):
  32 MiB of fp32 (two blocks to a fused head's chunk at V = 49152). Each of the block's passes
  (max, log-softmax, exp, scale) is a parallel region, so small blocks pay a thread barrier per
  pass. Measured on the 2-core CPU of docs/benchmarks.md, shared (load average 10), the fused
  loss at N = 2048, d = 576, V = 49152 fp32 with 2 threads took 13.0 s of CPU with 2 MiB blocks,
  10.5 s with 8 MiB and 7.2 s with 32 MiB (the unfused loss 6.8 s); with 1 thread, where there
  is no barrier, 4.4 s, 4.5 s and 4.8 s: a little lost to the cache, much gained on a busy
  machine.
* :data:`HEAD_CHUNK_BYTES` for logits a fused LM head computes (:func:`default_chunk_rows`):
  there the chunk is the only large temporary (one chunk alive at a time, its softmax computed
  in place for fp32), and larger matrix products run at full speed. 60 MiB keeps the fused loss's
  peak above its inputs within the bytes of the gradients it returns plus 64 MiB (issue 14:
  measured 215 MiB against 150 MiB of gradients at N=1024, d=768, V=50304 fp32 with 64 MiB
  chunks, 287 MiB before the previous chunk was let go before the next was made).

The budgets are read when a chunk is cut, not when this module is imported, so a test can shrink
them to force many chunks.
"""

from __future__ import annotations

from collections.abc import Iterator

LOGITS_PER_CHUNK = 1 << 20
LOGITS_PER_CACHE_BLOCK = 1 << 23
HEAD_CHUNK_BYTES = 60 << 20


def row_chunks(num_rows: int, num_classes: int, logits: int | None = None) -> Iterator[slice]:
    """Consecutive slices of ``num_rows`` rows, each of about ``logits`` logits (at least a row).

    ``logits`` defaults to :data:`LOGITS_PER_CHUNK`.
    """
    budget = LOGITS_PER_CHUNK if logits is None else logits
    rows = max(1, budget // max(1, num_classes))
    for start in range(0, num_rows, rows):
        yield slice(start, min(start + rows, num_rows))


def default_chunk_rows(vocab_size: int, itemsize: int = 4) -> int:
    """Tokens per chunk of a fused LM head: as many as fit ``HEAD_CHUNK_BYTES`` of logits held
    in a dtype of ``itemsize`` bytes (4 for fp32, 2 for bf16/fp16 logits).

    A chunk's logits are the only large temporary of the head, and every chunk pays one pass over
    the ``[V, d]`` gradient of the weight (fp32 ``addmm_`` reads and writes it; bf16/fp16 add a
    rounded product into an fp32 sum), a cost the three matrix products of the floor do not pay.
    That pass is the same for any chunk, so the rule is the largest chunk the memory budget
    allows: bf16/fp16 logits take half the bytes, so twice the rows, which halves the passes
    where they cost the most (the bf16 products run 2-3x faster than fp32, the pass does not).
    The chunk shrinks with the vocabulary down to a single token, whose logits stay below the
    budget for any V up to 16 million, so the vocabulary itself never needs splitting: 256k
    classes still give 61 fp32 tokens a chunk.
    """
    return max(1, HEAD_CHUNK_BYTES // (itemsize * vocab_size))
