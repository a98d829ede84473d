"""The fused linear cross-entropy on a CUDA GPU: crossent (its Triton rows), Liger-Kernel,
cut-cross-entropy (``impl="cce"``) and PyTorch's ``F.linear_cross_entropy``, side by side.

Each contender computes ``mean cross_entropy(hidden @ weight.T, target)`` and the gradients of
``hidden`` and ``weight`` at N=16384, d=4096, V=128256 in bf16 (the Llama-3 head at a 16k-token
batch; ``--tokens``, ``--dim``, ``--vocab``, ``--dtype`` change it). For each the script reports
the median forward+backward time of ``--repeats`` runs after a warm-up (CUDA events, so queued
work is timed, not launched), the peak memory the step allocates above the inputs
(``torch.cuda.max_memory_allocated``), and the errors against float64: of the loss (nats), and
the largest relative error of each gradient (max |g - g64| / max |g64|). The float64 truth is
PyTorch's, computed a chunk of rows at a time on the GPU. A ``floor`` row times the three matrix
products alone (logits, grad_hidden, grad_weight) in the same dtype.

Contenders whose package is missing are listed and skipped (``pip install liger-kernel
cut-cross-entropy``). Without a CUDA device the script prints one line and exits with status 0,
so it can sit in a CPU-only CI job.

    python benchmarks/gpu_linear_ce.py [--repeats 5] [--tokens 16384 --dim 4096 --vocab 128256]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

LossFunction = Callable[[Tensor, Tensor, Tensor], Tensor]


def _crossent(hidden: Tensor, weight: Tensor, target: Tensor) -> Tensor:
    from crossent import linear_cross_entropy

    return linear_cross_entropy(hidden, weight, target)


def _liger(hidden: Tensor, weight: Tensor, target: Tensor) -> Tensor:
    from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

    loss: Tensor = LigerFusedLinearCrossEntropyLoss()(weight, hidden, target)
    return loss


def _cce(hidden: Tensor, weight: Tensor, target: Tensor) -> Tensor:
    from cut_cross_entropy import linear_cross_entropy

    loss: Tensor = linear_cross_entropy(hidden, weight, target, impl="cce")
    return loss


def _torch(hidden: Tensor, weight: Tensor, target: Tensor) -> Tensor:
    return F.linear_cross_entropy(hidden, weight, target)


def _floor(hidden: Tensor, weight: Tensor, target: Tensor) -> Tensor:
    del target
    with torch.no_grad():
        logits = hidden @ weight.T  # (N, V)
        logits @ weight  # (N, d), as grad_hidden
        logits.T @ hidden  # (V, d), as grad_weight
    return logits[0, 0]


CONTENDERS: dict[str, tuple[LossFunction, str | None]] = {
    "crossent": (_crossent, None),
    "liger": (_liger, "liger_kernel"),
    "cce": (_cce, "cut_cross_entropy"),
    "torch-chunked": (_torch, None),
    "floor": (_floor, None),
}


def make_inputs(
    tokens: int, dim: int, vocab: int, dtype: torch.dtype
) -> tuple[Tensor, Tensor, Tensor]:
    """Hidden states and a head scaled like a trained model's (logits of std ~2), on the GPU."""
    generator = torch.Generator(device="cuda").manual_seed(0)
    hidden = torch.randn(tokens, dim, device="cuda", generator=generator).to(dtype)
    weight = torch.randn(vocab, dim, device="cuda", generator=generator) * (2 / dim**0.5)
    target = torch.randint(0, vocab, (tokens,), device="cuda", generator=generator)
    return hidden, weight.to(dtype), target


def float64_truth(
    hidden: Tensor, weight: Tensor, target: Tensor, rows: int = 1024
) -> tuple[float, Tensor, Tensor]:
    """Mean loss and the gradients of hidden and weight in float64, ``rows`` tokens at a time."""
    weight64 = weight.double()
    grad_hidden = torch.empty(hidden.shape, dtype=torch.float64, device=hidden.device)
    grad_weight = torch.zeros(weight.shape, dtype=torch.float64, device=weight.device)
    total = 0.0
    for start in range(0, hidden.shape[0], rows):
        chunk = hidden[start : start + rows].double()
        logits = chunk @ weight64.T  # (rows, V)
        chunk_target = target[start : start + rows]
        total += F.cross_entropy(logits, chunk_target, reduction="sum").item()
        grad = torch.softmax(logits, dim=-1)
        grad[torch.arange(grad.shape[0], device=grad.device), chunk_target] -= 1
        grad /= hidden.shape[0]
        grad_hidden[start : start + rows] = grad @ weight64
        grad_weight.addmm_(grad.T, chunk)
    return total / hidden.shape[0], grad_hidden, grad_weight


def _relative_error(got: Tensor | None, truth: Tensor) -> float:
    if got is None:
        return float("nan")
    return ((got.double() - truth).abs().max() / truth.abs().max()).item()


def measure(
    function: LossFunction, inputs: tuple[Tensor, Tensor, Tensor], repeats: int, grads: bool
) -> tuple[list[float], float, float, Tensor | None, Tensor | None]:
    """Times (s), peak MiB above the inputs, the loss, and the gradients of the last run."""
    hidden, weight, target = inputs
    leaves: list[Tensor] = []

    def step() -> float:
        leaves[:] = [t.detach().requires_grad_(grads) for t in (hidden, weight)]
        loss = function(leaves[0], leaves[1], target)
        if grads:
            loss.backward()  # type: ignore[no-untyped-call]
        return float(loss.float().item())

    step()  # warm-up: compilation, autotuning, the allocator
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    times, loss = [], float("nan")
    for _ in range(repeats):
        leaves.clear()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()  # type: ignore[no-untyped-call]
        loss = step()
        end.record()  # type: ignore[no-untyped-call]
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1000)  # type: ignore[no-untyped-call]
    peak = (torch.cuda.max_memory_allocated() - before) / 2**20
    return times, peak, loss, leaves[0].grad, leaves[1].grad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=16384)
    parser.add_argument("--dim", type=int, default=4096)
    parser.add_argument("--vocab", type=int, default=128256)
    parser.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], default="bfloat16")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_linear_ce: no CUDA device here, nothing to measure (this benchmark needs one)")
        return 0
    dtype = getattr(torch, args.dtype)
    inputs = make_inputs(args.tokens, args.dim, args.vocab, dtype)
    truth, truth_hidden, truth_weight = float64_truth(*inputs)
    print(f"device: {torch.cuda.get_device_name()}; torch {torch.__version__}")
    print(f"N={args.tokens} d={args.dim} V={args.vocab} {args.dtype}; float64 loss {truth:.6f}\n")
    print(f"{'impl':<14} {'median s':>9} {'x floor':>8} {'peak MiB':>9} {'|err| nats':>11} "
          f"{'grad_h rel':>11} {'grad_w rel':>11}")  # fmt: skip
    floor_time = statistics.median(measure(_floor, inputs, args.repeats, grads=False)[0])
    for name, (function, module) in CONTENDERS.items():
        if module is not None and importlib.util.find_spec(module) is None:
            print(f"{name:<14} skipped: {module} is not installed")
            continue
        grads = name != "floor"
        try:
            times, peak, loss, grad_hidden, grad_weight = measure(
                function, inputs, args.repeats, grads
            )
        except Exception as error:  # one contender's failure is a row, not the end of the table
            print(f"{name:<14} failed: {type(error).__name__}: {str(error).splitlines()[0]}")
            continue
        median = statistics.median(times)
        error = abs(loss - truth) if grads else float("nan")
        print(f"{name:<14} {median:>9.4f} {median / floor_time:>8.2f} {peak:>9.0f} {error:>11.1e} "
              f"{_relative_error(grad_hidden, truth_hidden):>11.1e} "
              f"{_relative_error(grad_weight, truth_weight):>11.1e}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
