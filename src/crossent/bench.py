"""Benchmark of the LM-head loss: the implementations a user would pick, side by side.

Each implementation computes ``mean cross_entropy(hidden @ weight.T, target)`` and its gradients
for ``hidden`` and ``weight`` in a Python process of its own, so that its peak resident memory is
its own. The process creates the inputs, warms the implementation up, resets the kernel's
high-water mark of its memory, then times forward+backward ``repeats`` times; it reports every
run's time (the table shows their minimum, median and maximum) and how far its peak rose above
what it held before the timed runs (the inputs). The parent compares every loss with a float64
ground truth computed by PyTorch, a chunk of rows at a time.

The ``floor`` row times the three matrix products that any exact implementation must do (logits,
then the gradients of hidden and weight) and nothing else. Each implementation's
``description`` says what it is; ``crossent bench`` prints them as a legend under the table.

On a shared machine one run can take twice as long as the next, so a single time says little:
when an implementation's slowest run is more than :data:`SPREAD_WARNING` (1.5) times its fastest,
the table is followed by a one-line warning to compare the medians with care or to rerun with
more ``--repeats``.

Run it with ``crossent bench`` (``--quick`` for a demonstration of about a minute);
:func:`crossent.report.table.format_bench` prints its rows.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from crossent.kernels import warmup_pending
from crossent.losses.linear import linear_cross_entropy

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

LossFunction = Callable[[Tensor, Tensor, Tensor], Tensor]

# Warn when an implementation's slowest timed run is more than this many times its fastest: on a
# quiet machine they differ by a few percent; 1.5 is a busy machine, not the implementation.
SPREAD_WARNING = 1.5
# At most this many more warm-up steps while crossent's compiled loops wait for their warm-up
# (4 at the smallest built-in case, N=1024 at V=50304).
WARMUP_STEPS = 8


def _torch_naive(hidden: Tensor, weight: Tensor, target: Tensor) -> Tensor:
    return F.cross_entropy(hidden @ weight.T, target)


def _torch_chunked(hidden: Tensor, weight: Tensor, target: Tensor) -> Tensor:
    return F.linear_cross_entropy(
        hidden, weight, target, options=torch.nn.LinearCrossEntropyOptions()
    )


def _cut_cross_entropy(hidden: Tensor, weight: Tensor, target: Tensor) -> Tensor:
    from cut_cross_entropy import linear_cross_entropy as cce  # optional, for comparison only

    loss: Tensor = cce(hidden, weight, target, impl="torch_compile")
    return loss


def _crossent(hidden: Tensor, weight: Tensor, target: Tensor) -> Tensor:
    return linear_cross_entropy(hidden, weight, target)


def _crossent_recompute(hidden: Tensor, weight: Tensor, target: Tensor) -> Tensor:
    """crossent with the gradient recomputed in backward (its path for per-token losses)."""
    return linear_cross_entropy(hidden, weight, target, reduction="none").mean()


def _floor(hidden: Tensor, weight: Tensor, target: Tensor) -> Tensor:
    """Only the three matrix products: logits, then the gradients of hidden and weight."""
    del target
    with torch.no_grad():
        logits = hidden @ weight.T  # (N, V)
        (logits @ weight).sum()  # (N, d), as grad_hidden
        (logits.T @ hidden).sum()  # (V, d), as grad_weight
    return logits[0, 0].detach()


@dataclass(frozen=True)
class Implementation:
    """A contender: its loss function, what it is in one line, and whether it can run here."""

    name: str
    function: LossFunction
    description: str
    needs_module: str | None = None
    differentiable: bool = True
    compiled: bool = False  # warm up at full size, so compilation is not timed

    def available(self) -> bool:
        return self.needs_module is None or importlib.util.find_spec(self.needs_module) is not None


IMPLEMENTATIONS = {
    impl.name: impl
    for impl in [
        Implementation(
            "torch",
            _torch_naive,
            "PyTorch on materialised logits, F.cross_entropy(hidden @ weight.T, target): "
            "the baseline of the x torch columns",
        ),
        Implementation(
            "torch-chunked",
            _torch_chunked,
            "PyTorch's own chunked F.linear_cross_entropy (default LinearCrossEntropyOptions)",
        ),
        Implementation(
            "cce-compile",
            _cut_cross_entropy,
            'Apple\'s cut-cross-entropy with impl="torch_compile", its CPU implementation '
            "(only when the package is installed)",
            needs_module="cut_cross_entropy",
            compiled=True,
        ),
        Implementation(
            "crossent",
            _crossent,
            "crossent.linear_cross_entropy, gradients computed during the forward pass (its "
            "path for a scalar loss)",
            compiled=True,  # its CPU loops compile once enough work is done
        ),
        Implementation(
            "crossent-recompute",
            _crossent_recompute,
            'crossent.linear_cross_entropy(reduction="none").mean(), logits recomputed in '
            "backward (its path for per-token losses)",
            compiled=True,
        ),
        Implementation(
            "floor",
            _floor,
            "not a loss: the three matrix products every exact implementation does (logits, "
            "then the gradients of hidden and weight) and nothing else; a lower bound",
            differentiable=False,
        ),
    ]
}


@dataclass(frozen=True)
class BenchCase:
    """One LM head: ``tokens`` hidden states of width ``dim``, a vocabulary of ``vocab``."""

    tokens: int
    dim: int
    vocab: int
    dtype: str = "float32"
    repeats: int = 3
    seed: int = 0

    @property
    def label(self) -> str:
        return f"N={self.tokens} d={self.dim} V={self.vocab} {self.dtype}"


@dataclass(frozen=True)
class BenchRow:
    """One implementation's measurement on one case.

    Attributes:
        times: the forward+backward wall time of each timed run, seconds, in run order.
        peak_mib: peak RSS above what the process held before the timed runs, MiB.
        loss: the mean loss it computed, nats (NaN for the floor).
        error: ``|loss - float64 truth|``, nats (NaN for the floor).
    """

    implementation: str
    case: BenchCase
    times: tuple[float, ...]
    peak_mib: float
    loss: float
    error: float

    @property
    def repeats(self) -> int:
        """How many timed runs there were."""
        return len(self.times)

    @property
    def seconds(self) -> float:
        """The median time of the timed runs."""
        return statistics.median(self.times)

    @property
    def spread(self) -> float:
        """The slowest run's time over the fastest's (1 for a single run)."""
        return max(self.times) / min(self.times) if min(self.times) > 0 else float("inf")

    @property
    def description(self) -> str:
        """What the implementation is, in one line."""
        return IMPLEMENTATIONS[self.implementation].description


def _dtypes() -> tuple[str, ...]:
    """float32, and bfloat16 next to it where this machine multiplies bf16 matrices natively."""
    from crossent.hardware import bf16_matmul_is_fast

    return ("float32", "bfloat16") if bf16_matmul_is_fast() else ("float32",)


def quick_cases() -> list[BenchCase]:
    """A GPT-2 head on 1024 tokens, 3 timed runs, fp32 (and bf16 where it is fast): about a
    minute on a 2-core CPU."""
    return [BenchCase(1024, 768, 50304, dtype, repeats=3) for dtype in _dtypes()]


def default_cases() -> list[BenchCase]:
    """The GPT-2 head (N=8192, d=768, V=50304) and a Llama-3 head scaled to fit a CPU
    (N=4096, d=2048, V=128256), each in fp32 and, where it is fast, bf16."""
    return [BenchCase(8192, 768, 50304, dtype) for dtype in _dtypes()] + [
        BenchCase(4096, 2048, 128256, dtype, repeats=2) for dtype in _dtypes()
    ]


def machine_header() -> str:
    """What the times depend on, for the lines above the table: the CPU's model, its bf16 matrix
    instructions (from ``/proc/cpuinfo``), the threads PyTorch uses and the load average."""
    import os

    from crossent.hardware import bf16_matrix_flags, cpu_model

    flags = bf16_matrix_flags()
    bf16 = f"yes ({', '.join(flags)})" if flags else "no (bf16 is converted to fp32 on the fly)"
    try:
        load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        load = "unknown"
    return (
        f"cpu: {cpu_model()}\nbf16 matrix instructions: {bf16}\n"
        f"threads: {torch.get_num_threads()}\nload average (1, 5, 15 min): {load}"
    )


def make_inputs(case: BenchCase) -> tuple[Tensor, Tensor, Tensor]:
    """Hidden states and a head scaled like a trained model's (logits of std ~2), fixed targets."""
    generator = torch.Generator().manual_seed(case.seed)
    dtype = DTYPES[case.dtype]
    hidden = torch.randn(case.tokens, case.dim, generator=generator).to(dtype)
    weight = (torch.randn(case.vocab, case.dim, generator=generator) * (2 / case.dim**0.5)).to(
        dtype
    )
    target = torch.randint(0, case.vocab, (case.tokens,), generator=generator)
    return hidden, weight, target


def float64_truth(case: BenchCase) -> float:
    """PyTorch's cross-entropy in float64, a chunk of rows at a time so it fits in memory."""
    hidden, weight, target = make_inputs(case)
    weight64 = weight.double()
    total = 0.0
    for start in range(0, case.tokens, 512):
        logits = hidden[start : start + 512].double() @ weight64.T
        total += F.cross_entropy(logits, target[start : start + 512], reduction="sum").item()
    return total / case.tokens


def run_benchmark(
    cases: Sequence[BenchCase], implementations: Sequence[str] | None = None
) -> list[BenchRow]:
    """Measure the implementations (default: all available) on every case, each in a subprocess.

    Raises:
        ValueError: an unknown implementation or dtype, or one whose package is not installed.
        RuntimeError: a worker process failed (its stderr is in the message).
    """
    if implementations is None:
        implementations = [name for name, impl in IMPLEMENTATIONS.items() if impl.available()]
    for name in implementations:
        if name not in IMPLEMENTATIONS:
            raise ValueError(
                f"unknown implementation {name!r}; expected one of {', '.join(IMPLEMENTATIONS)}"
            )
        if not IMPLEMENTATIONS[name].available():
            raise ValueError(f"implementation {name!r} needs {IMPLEMENTATIONS[name].needs_module}")
    rows = []
    for case in cases:
        if case.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {case.dtype!r}; expected one of {', '.join(DTYPES)}")
        truth = float64_truth(case)
        for name in implementations:
            measured = _run_worker(name, case)
            differentiable = IMPLEMENTATIONS[name].differentiable
            rows.append(
                BenchRow(
                    implementation=name,
                    case=case,
                    times=tuple(measured["times"]),
                    peak_mib=measured["peak_mib"],
                    loss=measured["loss"] if differentiable else float("nan"),
                    error=abs(measured["loss"] - truth) if differentiable else float("nan"),
                )
            )
    return rows


def _run_worker(name: str, case: BenchCase) -> dict[str, Any]:
    command = [sys.executable, "-m", "crossent.bench", "--worker", name, json.dumps(asdict(case))]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark worker {name} failed: {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _memory_mib(field: str) -> float:
    """A memory figure of this process from /proc/self/status (VmRSS now, VmHWM its peak)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not found in /proc/self/status (the benchmark needs Linux)")


def _reset_peak_memory() -> None:
    # Writing 5 to clear_refs resets the kernel's high-water mark VmHWM to the current RSS.
    with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
        clear_refs.write("5")


def _worker(name: str, case: BenchCase) -> dict[str, Any]:
    """Run in the child process: time forward+backward, report the peak RSS the runs added."""
    impl = IMPLEMENTATIONS[name]
    hidden, weight, target = make_inputs(case)

    def step(tokens: int = case.tokens) -> tuple[float, float]:
        leaves = [t.detach().requires_grad_(impl.differentiable) for t in (hidden[:tokens], weight)]
        start = time.perf_counter()
        loss = impl.function(leaves[0], leaves[1], target[:tokens])
        if impl.differentiable:
            loss.backward()  # type: ignore[no-untyped-call]
        return time.perf_counter() - start, loss.item()

    # Warm-up (thread pools, allocator; compilation at the timed shape), on a slice when it can.
    step(case.tokens if impl.compiled else min(case.tokens, 256))
    # crossent's CPU loops compile once a process has done enough work (a few steps at small
    # N): warm up until they have, so the runs time what a training job's later steps run.
    for _ in range(WARMUP_STEPS):
        if not (name.startswith("crossent") and warmup_pending()):
            break
        step()
    gc.collect()
    _reset_peak_memory()
    baseline = _memory_mib("VmRSS")
    runs = [step() for _ in range(case.repeats)]
    return {
        "times": [seconds for seconds, _ in runs],
        "peak_mib": _memory_mib("VmHWM") - baseline,
        "loss": runs[-1][1],
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m crossent.bench --worker NAME CASE``: one measurement, in a process of its own.

    :func:`run_benchmark` starts these; people run ``crossent bench``.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3 or args[0] != "--worker":
        print("usage: python -m crossent.bench --worker NAME CASE_JSON (see crossent bench)")
        return 2
    case = BenchCase(**json.loads(args[2]))
    print(json.dumps(_worker(args[1], case)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
