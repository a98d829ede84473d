"""``crossent bench``: the LM-head loss implementations timed and measured side by side."""

from __future__ import annotations

import argparse

from crossent.cli.arguments import Commands, positive_int

# The choices are listed here, not imported, so that --help needs no PyTorch; the library checks
# them again (tests/test_cli.py keeps both lists equal).
DTYPE_CHOICES = ("bfloat16", "float16", "float32")
IMPLEMENTATION_CHOICES = (
    "cce-compile",
    "crossent",
    "crossent-recompute",
    "floor",
    "torch",
    "torch-chunked",
)


def add_parser(commands: Commands) -> None:
    bench = commands.add_parser(
        "bench",
        help="time and measure the LM-head loss implementations",
        description="Forward+backward time, peak memory above the inputs and error against "
        "float64 of mean cross_entropy(hidden @ weight.T, target), each implementation in its "
        "own process. Without options: a GPT-2 head (N=8192, d=768, V=50304) and a Llama-3 "
        "head scaled to a CPU (N=4096, d=2048, V=128256), each in float32 and, on a machine "
        "with bf16 matrix instructions (AMX, AVX512-BF16), bfloat16. The lines above the "
        "table name the CPU, its bf16 instructions, the threads and the load average.",
    )
    size = bench.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        action="store_true",
        help="one small GPT-2 head (N=1024), 3 runs, float32 (and "
        "bfloat16 where it is fast), about a minute",
    )
    size.add_argument(
        "--tokens",
        type=positive_int,
        help="tokens N of one case of your own, with --dim and --vocab (default: the "
        "built-in cases)",
    )
    bench.add_argument("--dim", type=positive_int, default=768, help="hidden width d")
    bench.add_argument("--vocab", type=positive_int, default=50304, help="vocabulary size V")
    bench.add_argument(
        "--dtype",
        choices=DTYPE_CHOICES,
        default="float32",
        help="dtype of hidden and weight of the case given by --tokens (default: float32)",
    )
    bench.add_argument(
        "--repeats", type=positive_int, default=3, help="timed runs per implementation, after "
        "one warm-up; the table shows their min, median and max (default: 3)",
    )  # fmt: skip
    bench.add_argument(
        "--impl",
        action="append",
        choices=IMPLEMENTATION_CHOICES,
        help="an implementation to run (repeatable; default: every one installed)",
    )
    bench.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from crossent.bench import (
        BenchCase,
        default_cases,
        machine_header,
        quick_cases,
        run_benchmark,
    )
    from crossent.report.table import format_bench

    if args.quick:
        cases = quick_cases()
    elif args.tokens is not None:
        cases = [BenchCase(args.tokens, args.dim, args.vocab, args.dtype, args.repeats)]
    else:
        cases = default_cases()
    repeats = ", ".join(sorted({str(case.repeats) for case in cases}))
    print(
        "Mean cross-entropy of an LM head, forward + backward, each implementation in its own "
        f"process, timed {repeats} times after a warm-up.\nruns: timed runs; min, median, max: "
        "their wall times; x torch: the median (and peak) over the naive PyTorch loss's;\n"
        "x floor: the median over the floor's (the three matrix products alone, same dtype);\n"
        "peak MiB: peak resident memory above the inputs; |err|: distance from float64, nats.\n",
        flush=True,
    )
    print(machine_header() + "\n", flush=True)
    print(format_bench(run_benchmark(cases, args.impl)))
    return 0
