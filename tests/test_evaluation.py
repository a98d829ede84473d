"""crossent.evaluation on the real embedded model, against transformers' own logits.

The oracle is PyTorch's cross-entropy in float64 over the logits the transformers model itself
returns for the same token ids, and the definitions of the units (lm-eval's word count, UTF-8
bytes).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from crossent.data import Document, FileDocument, read_documents
from crossent.data.counts import count_words
from crossent.evaluation import evaluate
from crossent.models import HFCausalLM

TEXTS = [
    "Every effort moves you. The cat sat on the mat, and the dog looked at the cat.",
    "Cross-entropy measures how surprised a model is by the next token: café, naïve, 2^x.",
]


def _oracle_nll(model: HFCausalLM, text: str) -> tuple[float, int]:
    """Summed nats of every token of a short text given BOS and all tokens before it."""
    ids = model.tokenizer.encode(text)
    bos = model.tokenizer.bos_token_id
    assert bos is not None
    inputs = torch.tensor([[bos, *ids[:-1]]])
    with torch.no_grad():
        logits = model.model(inputs).logits[0].double()
    return F.cross_entropy(logits, torch.tensor(ids), reduction="sum").item(), len(ids)


def test_short_documents_match_transformers(smollm2: HFCausalLM) -> None:
    documents = [Document(f"doc{i}", text) for i, text in enumerate(TEXTS)]
    result = evaluate(smollm2, documents, window=256)
    assert result.prefix == "bos"
    for document, score in zip(documents, result.documents, strict=True):
        nll, tokens = _oracle_nll(smollm2, document.text)
        assert score.tokens == tokens
        assert score.nll_nats == pytest.approx(nll, rel=1e-5)
        assert score.bytes == len(document.text.encode("utf-8"))
        assert score.words == len(document.text.split())  # no leading/trailing whitespace here
    total = sum(score.nll_nats for score in result.documents)
    tokens = sum(score.tokens for score in result.documents)
    num_bytes = sum(len(text.encode("utf-8")) for text in TEXTS)
    assert result.totals.nats_per_token == pytest.approx(total / tokens, rel=1e-12)
    assert result.totals.perplexity == pytest.approx(math.exp(total / tokens), rel=1e-12)
    assert result.totals.bits_per_byte == pytest.approx(total / num_bytes / math.log(2), rel=1e-12)


def test_windows_and_batches_do_not_change_a_stride_equal_to_the_window(
    smollm2: HFCausalLM,
) -> None:
    """Batch size changes nothing beyond float noise; a smaller stride gives more context."""
    document = [Document("long", " ".join(TEXTS * 3))]
    one = evaluate(smollm2, document, window=16, batch_size=1)
    many = evaluate(smollm2, document, window=16, batch_size=5)
    assert one.documents[0].tokens == many.documents[0].tokens
    assert many.documents[0].nll_nats == pytest.approx(one.documents[0].nll_nats, rel=1e-5)
    overlapping = evaluate(smollm2, document, window=16, stride=4)
    assert overlapping.documents[0].tokens == one.documents[0].tokens
    # More context per token: a lower loss on this text (each token sees >= 13 tokens, not >= 1).
    assert overlapping.documents[0].nll_nats < one.documents[0].nll_nats


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"window": 10_000}, r"window 10000 is outside \[1, 8192\]"),
        ({"window": 8, "stride": 9}, r"stride 9 is outside \[1, 8\]"),
        ({"batch_size": 0}, "batch size must be positive"),
    ],
)
def test_bad_options_are_named(smollm2: HFCausalLM, kwargs: dict[str, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        evaluate(smollm2, [Document("d", "text")], **kwargs)  # type: ignore[arg-type]


TRICKY = "  Leading spaces,\ttabs\n\n\nblank lines, café, 😀 emoji, <|im_end|> and 3.14159.  \n"


def test_per_token_details_match_transformers_logits(smollm2: HFCausalLM) -> None:
    """Each token's nats, rank and top-5 against float64 softmax of transformers' logits."""
    documents = [Document("d0", TEXTS[0]), Document("d1", TRICKY)]
    result = evaluate(smollm2, documents, window=512, per_token=True, top_k=5)
    bos = smollm2.tokenizer.bos_token_id
    assert bos is not None
    for index, document in enumerate(documents):
        tokens = [token for token in result.tokens if token.document == index]
        ids = smollm2.tokenizer.encode(document.text)
        assert [token.position for token in tokens] == list(range(len(ids)))
        assert [token.token_id for token in tokens] == ids
        assert "".join(token.text for token in tokens) == document.text
        assert all(document.text.startswith(token.text, token.start) for token in tokens)
        with torch.no_grad():
            logits = smollm2.model(torch.tensor([[bos, *ids[:-1]]])).logits[0].double()
        log_probs = logits.log_softmax(dim=-1)
        for position, token in enumerate(tokens):
            true = logits[position, ids[position]]
            assert token.nats == pytest.approx(-log_probs[position, ids[position]].item(), abs=2e-4)
            # a rank can differ only where logits tie within float32 noise of the true one
            close = ((logits[position] - true).abs() < 1e-4).sum().item()
            expected_rank = int((logits[position] > true).sum().item()) + 1
            assert abs(token.rank - expected_rank) < close
            top = log_probs[position].topk(5)
            assert token.top_probs == pytest.approx(top.values.exp().tolist(), abs=1e-5)
            assert token.top_ids[0] == top.indices[0].item()
            decoded = smollm2.tokenizer.decode([token.top_ids[0]])
            if "\ufffd" not in decoded:  # a part of a character is shown by its bytes instead
                assert token.top_texts[0] == decoded
        score = result.documents[index]
        assert sum(token.nats for token in tokens) == pytest.approx(score.nll_nats, rel=1e-9)
        assert sum(token.rank == 1 for token in tokens) == score.correct


def test_a_streamed_file_scores_as_the_text_in_memory(smollm2: HFCausalLM, tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    text = (TRICKY + TEXTS[1] + "\n") * 6
    path.write_bytes(text.encode())
    (streamed,) = read_documents([str(path)], stream_bytes=16)
    assert isinstance(streamed, FileDocument)
    whole = evaluate(smollm2, [Document(str(path), text)], window=64, per_token=True)
    parts = evaluate(smollm2, [streamed], window=64, per_token=True)
    assert parts.documents == whole.documents
    assert parts.documents[0].words == count_words(text)
    assert [t.token_id for t in parts.tokens] == [t.token_id for t in whole.tokens]


def test_words_and_bytes_are_counted_as_lm_eval_counts_them(smollm2: HFCausalLM) -> None:
    result = evaluate(smollm2, [Document("t", TRICKY)], window=64)
    assert result.documents[0].words == len(re.split(r"\s+", TRICKY))
    assert result.documents[0].bytes == len(TRICKY.encode("utf-8"))


def test_progress_reaches_the_total(smollm2: HFCausalLM) -> None:
    calls: list[tuple[int, int | None]] = []
    documents = [Document("a", TEXTS[0]), Document("b", TEXTS[1])]
    result = evaluate(
        smollm2, documents, window=8, batch_size=2, progress=lambda n, t: calls.append((n, t))
    )
    scored = [n for n, _ in calls]
    assert scored == sorted(scored)
    assert scored[-1] == result.totals.tokens
    assert calls[-1][1] == result.totals.tokens  # once everything is read the estimate is exact


def test_an_empty_document_is_named(smollm2: HFCausalLM) -> None:
    with pytest.raises(ValueError, match="document blank: cannot score an empty document"):
        evaluate(smollm2, [Document("ok", "fine"), Document("blank", "")], window=8)
