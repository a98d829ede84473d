"""Benchmark of the cross-entropy implementations on language-model-sized logits.

Each implementation runs in its own Python process, so that its peak resident memory is its own:
the process creates the logits and targets, records its peak RSS, runs forward and backward a few
times, and reports the median time and how far its peak rose above the inputs. The parent then
compares every loss with a float64 ground truth on the same inputs.

Run it with ``crossent bench`` (``--quick`` for a half-minute demonstration) or
``python -m crossent.bench``.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from crossent.losses.cross_entropy import cross_entropy

IMPLEMENTATIONS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "torch": F.cross_entropy,
    "crossent": cross_entropy,
}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class BenchCase:
    """One problem size: ``rows`` tokens over a vocabulary of ``vocab`` classes."""

    rows: int
    vocab: int
    dtype: str = "float32"
    repeats: int = 5
    seed: int = 0


@dataclass(frozen=True)
class BenchRow:
    """One implementation's measurement on one case.

    Attributes:
        seconds: median forward+backward wall time.
        peak_mib: peak RSS above what the inputs already used, MiB.
        loss: the mean loss it computed, nats.
        error: ``|loss - float64 truth|``, nats.
    """

    implementation: str
    case: BenchCase
    seconds: float
    peak_mib: float
    loss: float
    error: float


def quick_cases() -> list[BenchCase]:
    """A GPT-2-vocabulary head at a size that runs in seconds on a laptop CPU."""
    return [BenchCase(2048, 50304, "float32", 3), BenchCase(2048, 50304, "bfloat16", 3)]


def default_cases() -> list[BenchCase]:
    """A GPT-2 head (8192 tokens, V=50304) and a Llama-3 vocabulary (4096 tokens, V=128256)."""
    return [BenchCase(8192, 50304), BenchCase(4096, 128256), BenchCase(8192, 50304, "bfloat16")]


def make_inputs(case: BenchCase) -> tuple[Tensor, Tensor]:
    """Logits of a plausible scale (std 2) and uniformly random targets, fixed by the seed."""
    generator = torch.Generator().manual_seed(case.seed)
    logits = torch.randn(case.rows, case.vocab, generator=generator).mul_(2.0)
    target = torch.randint(0, case.vocab, (case.rows,), generator=generator)
    return logits.to(DTYPES[case.dtype]), target


def run_benchmark(
    cases: Sequence[BenchCase], implementations: Sequence[str] = tuple(IMPLEMENTATIONS)
) -> list[BenchRow]:
    """Measure every implementation on every case, each in a fresh subprocess.

    Raises:
        ValueError: an unknown implementation or dtype name.
        RuntimeError: a worker process failed (its stderr is in the message).
    """
    for name in implementations:
        if name not in IMPLEMENTATIONS:
            raise ValueError(
                f"unknown implementation {name!r}; expected one of {', '.join(IMPLEMENTATIONS)}"
            )
    rows = []
    for case in cases:
        if case.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {case.dtype!r}; expected one of {', '.join(DTYPES)}")
        logits, target = make_inputs(case)
        truth = F.cross_entropy(logits.double(), target).item()
        del logits, target
        for name in implementations:
            measured = _run_worker(name, case)
            rows.append(
                BenchRow(
                    implementation=name,
                    case=case,
                    seconds=measured["seconds"],
                    peak_mib=measured["peak_mib"],
                    loss=measured["loss"],
                    error=abs(measured["loss"] - truth),
                )
            )
    return rows


def _run_worker(name: str, case: BenchCase) -> dict[str, float]:
    command = [sys.executable, "-m", "crossent.bench", "--worker", name, json.dumps(asdict(case))]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark worker {name} failed: {done.stderr.strip()}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _peak_rss_mib() -> float:
    """This process's peak resident memory, MiB.

    VmHWM belongs to the process's own address space; ``getrusage``'s ``ru_maxrss`` would not do,
    as Linux carries it over from the parent across fork and exec.
    """
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def _worker(name: str, case: BenchCase) -> dict[str, float]:
    """Run in the child process: time forward+backward, report the peak RSS it added."""
    torch.manual_seed(case.seed)
    loss_fn = IMPLEMENTATIONS[name]
    logits, target = make_inputs(case)
    baseline = _peak_rss_mib()
    times = []
    loss = torch.zeros(())
    for _ in range(case.repeats + 1):  # the first run warms up allocator and kernels
        leaf = logits.detach().requires_grad_(True)
        start = time.perf_counter()
        loss = loss_fn(leaf, target)
        loss.backward()  # type: ignore[no-untyped-call]
        times.append(time.perf_counter() - start)
        loss = loss.detach()
        del leaf
    return {
        "seconds": statistics.median(times[1:]),
        "peak_mib": _peak_rss_mib() - baseline,
        "loss": loss.item(),
    }


def format_rows(rows: Sequence[BenchRow]) -> str:
    """A plain-text table, each implementation's time and memory also as a ratio to torch's."""
    headers = ["case", "impl", "fwd+bwd ms", "x torch", "peak MiB", "x torch", "loss", "|err|"]
    lines = []
    baseline = {row.case: row for row in rows if row.implementation == "torch"}
    for row in rows:
        reference = baseline.get(row.case)
        time_ratio = f"{row.seconds / reference.seconds:.2f}" if reference else "-"
        memory_ratio = (
            f"{row.peak_mib / reference.peak_mib:.2f}"
            if reference and reference.peak_mib > 0
            else "-"
        )
        lines.append(
            [
                f"N={row.case.rows} V={row.case.vocab} {row.case.dtype}",
                row.implementation,
                f"{row.seconds * 1e3:.1f}",
                time_ratio,
                f"{row.peak_mib:.0f}",
                memory_ratio,
                f"{row.loss:.6f}",
                f"{row.error:.1e}",
            ]
        )
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]
    render = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        for line in [headers, ["-" * width for width in widths], *lines]
    ]
    return "\n".join(text.rstrip() for text in render)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m crossent.bench``: the same as ``crossent bench``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) == 3 and args[0] == "--worker":
        case = BenchCase(**json.loads(args[2]))
        print(json.dumps(_worker(args[1], case)))
        return 0
    from crossent.cli import main as cli_main

    return cli_main(["bench", *args])


if __name__ == "__main__":
    sys.exit(main())
