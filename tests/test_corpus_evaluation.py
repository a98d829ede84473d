"""Many small documents share batches; per-token scores stream to a sink and a file as made."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crossent.data import Corpus, Document
from crossent.data.stream import DocumentStream
from crossent.evaluation import TokenScore, evaluate
from crossent.models import HFCausalLM
from crossent.report.per_token import format_per_token, per_token_file
from tiny_lm import tiny_lm

WORDS = [
    "the",
    "cat",
    "sat",
    "on",
    "a",
    "mat",
    "and",
    "then",
    "ran",
    "off",
    "to",
    "see",
    "the",
    "dog",
    "who",
    "was",
    "there",
    "too",
]


def _documents(count: int) -> list[Document]:
    """Short documents of 3 to 12 words each."""
    return [
        Document(f"d{i}", " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(3 + i % 10)))
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def model() -> HFCausalLM:
    return tiny_lm()


def test_short_documents_share_a_batch_up_to_its_padded_tokens(model: HFCausalLM) -> None:
    stream = DocumentStream(model.tokenizer, _documents(200), 0, 32, 32, False)
    batches = list(stream.batches(4))
    assert len(batches[0]) > 4  # four full windows' worth of tokens, not four windows
    for batch in batches:
        assert len(batch) * max(len(win.tokens) for _, win in batch) <= 4 * 32
    assert sum(len(batch) for batch in batches) == 200
    assert [index for batch in batches for index, _ in batch] == list(range(200))


def test_batched_small_documents_equal_each_one_alone(model: HFCausalLM) -> None:
    documents = _documents(120)
    batched = evaluate(model, documents, window=32, batch_size=4)
    for document, score in zip(documents, batched.documents, strict=True):
        (alone,) = evaluate(model, [document], window=32, batch_size=1).documents
        assert score.tokens == alone.tokens
        assert score.nll_nats == pytest.approx(alone.nll_nats, rel=1e-5, abs=1e-6)


def test_on_token_gets_every_token_in_order_and_holds_none(model: HFCausalLM) -> None:
    documents = [*_documents(30), Document("long", " ".join(WORDS * 20))]
    held = evaluate(model, documents, window=16, stride=8, batch_size=3, per_token=True)
    seen: list[tuple[str, TokenScore]] = []
    streamed = evaluate(
        model, documents, window=16, stride=8, batch_size=3,
        on_token=lambda name, token: seen.append((name, token)),
    )  # fmt: skip
    assert streamed.tokens == []
    assert [token for _, token in seen] == held.tokens
    assert [name for name, _ in seen] == [documents[t.document].name for t in held.tokens]
    for score in streamed.documents:
        nats = sum(token.nats for name, token in seen if name == score.name)
        assert nats == pytest.approx(score.nll_nats, rel=1e-9)


def test_token_texts_are_dropped_once_their_batch_is_consumed(model: HFCausalLM) -> None:
    long = Document("long", " ".join(WORDS * 30))
    stream = DocumentStream(model.tokenizer, [long], 0, 16, 16, True)
    batches = stream.batches(2)
    first = next(batches)
    assert stream.token_text(0, 0)[0]  # held while its batch is in hand
    next(batches)
    with pytest.raises(IndexError, match="already released"):
        stream.token_text(0, first[-1][1].first_position)


def test_per_token_file_is_written_whole_or_not_at_all(model: HFCausalLM, tmp_path: Path) -> None:
    documents = _documents(20)
    out = tmp_path / "rows.jsonl"
    with per_token_file(out) as writer:
        evaluate(model, documents, window=32, on_token=writer)
    held = evaluate(model, documents, window=32, per_token=True)
    assert out.read_text(encoding="utf-8") == format_per_token(held, ".jsonl")
    assert len(out.read_text(encoding="utf-8").splitlines()) == held.totals.tokens
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "fine"}) + "\n" + "not json\n", encoding="utf-8")
    failed = tmp_path / "failed.csv"
    with pytest.raises(ValueError, match=r"bad\.jsonl:2 is not valid JSON"):  # noqa: SIM117
        with per_token_file(failed) as writer:
            evaluate(model, Corpus([str(bad)], field="text"), window=32, on_token=writer)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bad.jsonl", "rows.jsonl"]


def _stream_tokens_on_rank(rank: int, world: int, out: Path) -> None:
    model = tiny_lm()
    seen: list[tuple[str, int, int, float]] = []

    def keep(name: str, token: TokenScore) -> None:
        seen.append((name, token.position, token.token_id, token.nats))

    evaluate(model, _documents(25), window=8, stride=6, batch_size=2, on_token=keep)
    (out / f"rank{rank}.json").write_text(json.dumps(seen), encoding="utf-8")


def test_on_token_under_three_ranks_is_the_single_process_order(
    model: HFCausalLM, tmp_path: Path
) -> None:
    from gloo import spawn_gloo_world

    spawn_gloo_world(_stream_tokens_on_rank, 3, tmp_path)
    alone = evaluate(model, _documents(25), window=8, stride=6, batch_size=2, per_token=True)
    names = [document.name for document in alone.documents]
    expected = [[names[t.document], t.position, t.token_id, t.nats] for t in alone.tokens]
    for rank in range(3):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text(encoding="utf-8"))
        assert [row[:3] for row in got] == [row[:3] for row in expected]
        assert [row[3] for row in got] == pytest.approx([row[3] for row in expected], rel=1e-5)
