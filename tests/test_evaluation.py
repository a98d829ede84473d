"""crossent.evaluation on the real embedded model, against transformers' own logits.

The oracle is PyTorch's cross-entropy in float64 over the logits the transformers model itself
returns for the same token ids, and the definitions of the units (lm-eval's word count, UTF-8
bytes).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from crossent.data import Document
from crossent.evaluation import count_words, evaluate
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


def test_word_count_is_lm_evals() -> None:
    assert count_words("a  b\tc\n") == 4  # re.split gives a trailing empty piece, as lm-eval's
    assert count_words("one") == 1


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
