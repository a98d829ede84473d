"""``torchrun -m crossent eval`` with 2 processes on gloo equals one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crossent.models import HFCausalLM

TEXTS = [
    "Every effort moves you. The cat sat on the mat, and the dog looked at the cat.\n" * 3,
    "Cross-entropy measures how surprised a model is by the next token: café, naïve.\n" * 2,
    "A short one.",
]


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    # One thread per process: two processes share this machine's cores.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, check=False, env=env)


@pytest.mark.slow
def test_two_ranks_give_the_single_process_result(smollm2: HFCausalLM, tmp_path: Path) -> None:
    del smollm2  # loaded once so both ranks find the converted model in the cache
    data = []
    for i, text in enumerate(TEXTS):
        path = tmp_path / f"doc{i}.txt"
        path.write_text(text, encoding="utf-8")
        data += ["--data", str(path)]
    args = ["eval", *data, "--window", "16", "--stride", "12", "--batch-size", "2"]
    one = _run(
        [sys.executable, "-m", "crossent", *args, "--json", str(tmp_path / "one.json"),
         "--per-token", str(tmp_path / "one.jsonl")]
    )  # fmt: skip
    assert one.returncode == 0, one.stderr
    two = _run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "crossent", *args, "--json", str(tmp_path / "two.json"),
         "--per-token", str(tmp_path / "two.jsonl")]
    )  # fmt: skip
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("window 16, stride 12") == 1  # only rank 0 reports
    single = json.loads((tmp_path / "one.json").read_text(encoding="utf-8"))
    sharded = json.loads((tmp_path / "two.json").read_text(encoding="utf-8"))
    # sums added in another order: the sums and the errors from them agree to float64 rounding
    rounded = {"nll_nats", "nats_per_token_se", "bits_per_token_se", "perplexity_se"}
    rounded.add("bits_per_byte_se")
    for mine, theirs in zip(single["documents"], sharded["documents"], strict=True):
        assert {k: v for k, v in mine.items() if k not in rounded} == {
            k: v for k, v in theirs.items() if k not in rounded
        }
        for key in rounded:
            assert theirs[key] == pytest.approx(mine[key], rel=1e-12), key
    for key, value in single["totals"].items():
        assert sharded["totals"][key] == pytest.approx(value, rel=1e-12), key
    # the standard errors from the all-reduced sums of squares, and the same bootstrap
    assert single["totals"]["bits_per_byte_se"] > 0
    boot_one, boot_two = single["uncertainty"]["documents"], sharded["uncertainty"]["documents"]
    assert (boot_two["resamples"], boot_two["seed"]) == (boot_one["resamples"], boot_one["seed"])
    for unit in ("nats_per_token", "bits_per_byte", "perplexity"):
        assert boot_two[unit] == pytest.approx(boot_one[unit], rel=1e-9), unit
    rows_one = (tmp_path / "one.jsonl").read_text(encoding="utf-8").splitlines()
    rows_two = (tmp_path / "two.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(rows_one) == single["totals"]["tokens"]
    assert [json.loads(row) for row in rows_two] == [json.loads(row) for row in rows_one]
