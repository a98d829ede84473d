"""NLLMeter.all_reduce across real processes on the gloo backend (CPU only).

Starting a process that imports torch costs seconds, so one spawn of three processes serves both
cases: an all-reduce over the whole world (three processes) and one over a two-process group that
leaves rank 0 out, so that group ranks differ from global ranks.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from crossent.metrics import NLLMeter
from gloo import spawn_gloo_world

Record = tuple[float, int, int, bool]


def _make_records(count: int) -> list[Record]:
    """One record per scored token: (nll in nats, bytes, words, correct).

    The losses span eight orders of magnitude so that a sum in the wrong precision shows.
    """
    rng = random.Random(0)
    return [
        (
            rng.uniform(0.0, 12.0) * 10.0 ** rng.randint(-6, 2),
            rng.randint(1, 5),
            rng.randint(0, 1),
            rng.random() < 0.4,
        )
        for _ in range(count)
    ]


_RECORDS = _make_records(40)
_WORLD_SIZE = 3
# Contiguous shards of _RECORDS by global rank; rank 2 scores nothing over the world.
_WORLD_SHARDS = {0: (0, 9), 1: (9, 40), 2: (40, 40)}
_PAIR_SHARDS = {1: (0, 23), 2: (23, 40)}


def _meter_from(records: list[Record]) -> NLLMeter:
    """Feeds half the records as tensors and half one token at a time as Python numbers."""
    meter = NLLMeter()
    middle = len(records) // 2
    head, tail = records[:middle], records[middle:]
    meter.update(
        torch.tensor([nll for nll, _, _, _ in head], dtype=torch.float64),
        torch.ones(len(head), dtype=torch.bool),
        bytes=sum(num_bytes for _, num_bytes, _, _ in head),
        words=sum(words for _, _, words, _ in head),
        correct=torch.tensor([correct for _, _, _, correct in head], dtype=torch.bool),
    )
    for nll, num_bytes, words, correct in tail:
        meter.update(nll, 1, bytes=num_bytes, words=words, correct=int(correct))
    return meter


def _write_totals(path: Path, meter: NLLMeter, reduced: NLLMeter) -> None:
    values = {
        "nll_nats": meter.nll_nats,
        "tokens": meter.tokens,
        "bytes": meter.bytes,
        "words": meter.words,
        "correct": meter.correct,
        "nll_squared": meter.nll_squared,
    }
    path.write_text(
        json.dumps(
            {
                "values": values,
                "types": {name: type(value).__name__ for name, value in values.items()},
                "returned_self": reduced is meter,
            }
        )
    )


def _rank_main(rank: int, _world_size: int, out_dir: Path) -> None:
    pair = dist.new_group(sorted(_PAIR_SHARDS))  # every rank must take part in creating it

    start, stop = _WORLD_SHARDS[rank]
    meter = _meter_from(_RECORDS[start:stop])
    _write_totals(out_dir / f"world-{rank}.json", meter, meter.all_reduce())

    if rank in _PAIR_SHARDS:
        start, stop = _PAIR_SHARDS[rank]
        meter = _meter_from(_RECORDS[start:stop])
        _write_totals(out_dir / f"pair-{rank}.json", meter, meter.all_reduce(pair))


@pytest.fixture(scope="module")
def reduced_totals(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out_dir = tmp_path_factory.mktemp("all_reduce")
    spawn_gloo_world(_rank_main, _WORLD_SIZE, out_dir)
    return out_dir


@pytest.mark.parametrize(("group", "ranks"), [("world", (0, 1, 2)), ("pair", (1, 2))])
def test_all_reduce_sums_the_shards_on_every_process(
    reduced_totals: Path, group: str, ranks: tuple[int, ...]
) -> None:
    expected_nll = math.fsum(nll for nll, _, _, _ in _RECORDS)
    expected_counts = {
        "tokens": len(_RECORDS),
        "bytes": sum(num_bytes for _, num_bytes, _, _ in _RECORDS),
        "words": sum(words for _, _, words, _ in _RECORDS),
        "correct": sum(correct for _, _, _, correct in _RECORDS),
    }
    for rank in ranks:
        totals = json.loads((reduced_totals / f"{group}-{rank}.json").read_text())
        values = totals["values"]
        assert totals["returned_self"], f"rank {rank}: all_reduce did not return the meter"
        assert values["nll_nats"] == pytest.approx(expected_nll, rel=1e-12, abs=0.0)
        # the squares travel with the sums, so the standard errors are one process's
        squared = math.fsum(nll * nll for nll, _, _, _ in _RECORDS)
        assert values["nll_squared"] == pytest.approx(squared, rel=1e-12, abs=0.0)
        assert {name: values[name] for name in expected_counts} == expected_counts
        assert totals["types"] == {
            "nll_nats": "float",
            "tokens": "int",
            "bytes": "int",
            "words": "int",
            "correct": "int",
            "nll_squared": "float",
        }


def test_all_reduce_without_process_group_is_an_error() -> None:
    assert not dist.is_initialized()
    meter = NLLMeter()
    meter.update(1.0, 1)
    with pytest.raises(RuntimeError, match="init_process_group"):
        meter.all_reduce()
    assert (meter.nll_nats, meter.tokens) == (1.0, 1)
