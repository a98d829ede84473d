"""What ``crossent eval --calibration`` costs over a plain evaluation: time and peak memory.

Each run is a fresh process (this script with ``--child``) that loads the embedded SmolLM2,
reads the first ``--max-chars`` characters of the default text (the Python documentation inside
CPython), and times :func:`crossent.evaluate` alone, with and without ``calibration=True``,
alternating, ``--repeats`` times each. Memory is the process's resident-set high-water mark
(``VmHWM``) at the end, which includes Python, PyTorch and the model. The printed ratios use
the best time of each.

Usage::

    .venv/bin/python benchmarks/calibration_overhead.py [--max-chars 20000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def _child(max_chars: int, calibration: bool) -> None:
    import crossent
    from crossent.data import Document
    from crossent.data.sources import read_documents
    from crossent.models import load_model

    model = load_model()
    (text,) = read_documents([])
    assert isinstance(text, Document)
    documents = [Document(text.name, text.text[:max_chars])]
    start = time.perf_counter()
    result = crossent.evaluate(model, documents, calibration=calibration)
    seconds = time.perf_counter() - start
    with open("/proc/self/status", encoding="utf-8") as status:
        peak = next(line for line in status if line.startswith("VmHWM:"))
    print(
        json.dumps(
            {
                "seconds": seconds,
                "tokens": result.totals.tokens,
                "vmhwm_mib": int(peak.split()[1]) / 1024,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-chars", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", choices=["plain", "calibration"])
    args = parser.parse_args()
    if args.child:
        _child(args.max_chars, args.child == "calibration")
        return
    runs: dict[str, list[dict[str, float]]] = {"plain": [], "calibration": []}
    for _ in range(args.repeats):
        for mode in runs:
            command = [
                sys.executable,
                __file__,
                "--child",
                mode,
                "--max-chars",
                str(args.max_chars),
            ]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            runs[mode].append(json.loads(done.stdout.splitlines()[-1]))
            print(mode, runs[mode][-1], flush=True)
    best = {mode: min(run["seconds"] for run in rows) for mode, rows in runs.items()}
    peak = {mode: max(run["vmhwm_mib"] for run in rows) for mode, rows in runs.items()}
    print(f"tokens {runs['plain'][0]['tokens']:.0f}")
    for mode in runs:
        print(f"{mode}: best {best[mode]:.2f} s, VmHWM {peak[mode]:.1f} MiB")
    print(
        f"calibration / plain: time {best['calibration'] / best['plain']:.3f}, "
        f"peak memory {peak['calibration'] - peak['plain']:+.1f} MiB"
    )


if __name__ == "__main__":
    main()
