"""``evaluate(by_position=True)``: the loss at each position of the window, in power-of-two buckets
of context, against a float64 loop over the windows written from the rule."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from crossent.data import Document
from crossent.evaluation import evaluate
from crossent.models import HFCausalLM
from crossent.models.bpe import train_bpe_tokenizer
from crossent.scoring import PositionMeter
from tiny_hf import ARCHS, Arch, build

WINDOW = 16
TEXTS = [
    "the cat sat on the mat and looked at the dog, who looked back at the cat " * 3,
    "a bird in the hand is worth two in the bush, or so the saying goes " * 2,
]


@pytest.fixture(scope="module")
def tiny() -> HFCausalLM:
    tokenizer = train_bpe_tokenizer(TEXTS, vocab_size=300)
    llama = ARCHS["llama-tied"]
    model = build(Arch(llama.model_type, {**llama.settings, "vocab_size": 300}))
    return HFCausalLM(model, tokenizer, name="tiny")


def _oracle(model: HFCausalLM, texts: list[str]) -> dict[tuple[int, int], tuple[int, float]]:
    """Per bucket of context (1, 2-3, 4-7, ...): (tokens, summed nats), for documents cut to a
    whole number of windows of WINDOW targets, each window BOS + text side by side; the last
    bucket ends at the window."""
    sums: dict[tuple[int, int], list[float]] = {}
    bos = model.tokenizer.bos_token_id
    assert bos is not None
    for text in texts:
        ids = model.tokenizer.encode(text)
        sequence = [bos, *ids]
        for start in range(0, len(ids), WINDOW):
            inputs = torch.tensor([sequence[start : start + WINDOW]])
            targets = torch.tensor(sequence[start + 1 : start + WINDOW + 1])
            with torch.no_grad():
                logits = model.model(inputs).logits[0].double()
            losses = F.cross_entropy(logits, targets, reduction="none")
            for position, loss in enumerate(losses.tolist()):
                context = position + 1
                low = 1 << (context.bit_length() - 1)
                entry = sums.setdefault((low, min(2 * low - 1, WINDOW)), [0, 0.0])
                entry[0] += 1
                entry[1] += loss
    return {key: (int(count), total) for key, (count, total) in sums.items()}


def test_by_position_equals_a_float64_loop(tiny: HFCausalLM) -> None:
    # Cut each text to a whole number of windows, so the windows tile it (none is realigned).
    texts = []
    for text in TEXTS:
        ids = tiny.tokenizer.encode(text)
        texts.append(tiny.tokenizer.decode(ids[: len(ids) // WINDOW * WINDOW]))
    assert all(len(tiny.tokenizer.encode(text)) % WINDOW == 0 for text in texts)
    result = evaluate(
        tiny, [Document(f"d{i}", t) for i, t in enumerate(texts)], window=WINDOW, by_position=True
    )
    assert result.by_position is not None
    got = {(b.first, b.last): (b.tokens, b.nll_nats) for b in result.by_position}
    expected = _oracle(tiny, texts)
    assert got.keys() == expected.keys() == {(1, 1), (2, 3), (4, 7), (8, 15), (16, 16)}
    for key, (count, total) in expected.items():
        assert got[key][0] == count
        assert got[key][1] == pytest.approx(total, rel=1e-5)
    assert sum(b.tokens for b in result.by_position) == result.totals.tokens
    record = result.to_dict()["by_position"]
    assert [row["first"] for row in record] == [1, 2, 4, 8, 16]


def test_the_meter_holds_one_sum_per_position() -> None:
    meter = PositionMeter(8192)
    meter.add(torch.ones(3, dtype=torch.float64), torch.tensor([1, 1, 1]))
    meter.add(torch.full((8192,), 2.0), torch.ones(8192, dtype=torch.long))
    assert meter.nats.shape == meter.tokens.shape == (8192,)
    buckets = meter.buckets()
    assert [(b.first, b.last) for b in buckets][-2:] == [(4096, 8191), (8192, 8192)]
    assert (buckets[0].tokens, buckets[0].nll_nats) == (2, 3.0)
    assert (buckets[1].tokens, buckets[1].nll_nats) == (4, 6.0)
