"""Results built by hand for the page tests, and the formats the pages promise to show.

Texts with markup, entities, CR/LF, tabs, non-ASCII and an emoji split across two tokens, so every
expected string is computed from these inputs, not read back from a page.
"""

from __future__ import annotations

from crossent.comparison import ComparisonResult, KLSummary, TokenDifference
from crossent.evaluation import DocumentScore, EvaluationResult, TokenScore, count_words
from crossent.metrics import NLLMeter

# Each document as its tokens' texts; the emoji's second byte-token has no text of its own.
DOCUMENTS = {
    "intro <u>": ["Hi", " <script>", 'alert("x")', "</script>", " &amp;", " caf", "é", "\n",
                  "\t", "end", " 😀", "", "!"],
    "crlf": ["Line", " one", "\r\n", "line", "\u00a0two", " 日本"],
}  # fmt: skip
NATS_A = [0.1, 2.5, 7.3, 0.02, 4.4, 1.1, 0.7, 0.3, 3.3, 12.0, 5.5, 0.01, 9.9,
          0.2, 1.7, 0.05, 2.2, 6.1, 30.5]  # fmt: skip
NATS_B = [0.3, 2.0, 7.3, 0.5, 1.0, 1.1, 2.7, 0.3, 0.1, 14.0, 5.0, 0.01, 3.0,
          0.2, 1.0, 0.05, 4.2, 6.1, 20.0]  # fmt: skip
ALTERNATIVES = ["</script>", "&", " ", "\n", "", "é", "<!--", "\t", "x"]
HOVERED = 2  # 'alert("x")' in the first document: p below 0.001, so in exponent form


def _tokens(nats: list[float], rank_shift: int) -> list[TokenScore]:
    scores: list[TokenScore] = []
    for document, pieces in enumerate(DOCUMENTS.values()):
        start = 0
        for position, text in enumerate(pieces, start=1):
            index = len(scores)
            texts = tuple(ALTERNATIVES[(index + k) % len(ALTERNATIVES)] for k in range(6))
            probs = (0.41, 0.2, 0.0333, 0.0005, 0.00012345, 1e-9)
            scores.append(
                TokenScore(
                    document=document,
                    position=position,
                    token_id=100 + index,
                    text=text,
                    start=start,
                    nats=nats[index],
                    rank=1 + (index + rank_shift) % 9,
                    top_ids=tuple(1000 + (index + k) % len(ALTERNATIVES) for k in range(6)),
                    top_texts=texts,
                    top_probs=probs,
                )
            )
            start += len(text)
    return scores


def example_evaluation(
    model: str, nats: list[float], *, rank_shift: int = 0, with_tokens: bool = True
) -> EvaluationResult:
    """DOCUMENTS scored with ``nats`` per token (in order), its totals merged from theirs."""
    tokens = _tokens(nats, rank_shift)
    documents = []
    total = NLLMeter()
    for index, (name, pieces) in enumerate(DOCUMENTS.items()):
        text = "".join(pieces)
        own = [token for token in tokens if token.document == index]
        meter = NLLMeter(
            nll_nats=sum(token.nats for token in own),
            tokens=len(own),
            bytes=len(text.encode()),
            words=count_words(text),
            correct=sum(token.rank == 1 for token in own),
        )
        documents.append(
            DocumentScore(
                name, meter.tokens, meter.bytes, meter.words, meter.nll_nats, meter.correct
            )
        )
        total.merge(meter)
    return EvaluationResult(
        model, 64, 32, "bos", documents, total.result(), tokens if with_tokens else []
    )


def example_comparison(*, shared_tokenizer: bool = True) -> ComparisonResult:
    """Model A (NATS_A) against model B (NATS_B); token by token only with a shared tokenizer."""
    a = example_evaluation("model <A>", NATS_A)
    b = example_evaluation("model B", NATS_B, rank_shift=4)
    differences = [
        TokenDifference(
            token_a.document,
            token_a.position,
            token_a.token_id,
            token_a.text,
            token_a.nats,
            token_b.nats,
            kl=0.001 * (index + 1),
            top_a=token_a.top_ids[0],
            top_b=token_b.top_ids[1],
        )
        for index, (token_a, token_b) in enumerate(zip(a.tokens, b.tokens, strict=True))
    ]
    largest = sorted(differences, key=lambda d: abs(d.nats_b - d.nats_a), reverse=True)[:3]
    kl = KLSummary(
        tokens=len(differences),
        mean=0.0123456,
        percentiles={
            "p50": 0.01,
            "p90": 0.017,
            "p95": 0.018,
            "p99": 0.019,
            "p99.9": 0.019,
            "max": 0.019,
        },
        top1_agreement=0.25,
    )
    if not shared_tokenizer:
        return ComparisonResult(a, b, False, None)
    return ComparisonResult(a, b, True, kl, largest, differences)


def probability_text(p: float) -> str:
    """The documented format: three significant digits, in exponent form below 0.001."""
    if p >= 0.001:
        return f"{p:#.3g}"
    mantissa, exponent = f"{p:.2e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def visible(text: str) -> str:
    """The documented tooltip text: whitespace as visible symbols, an empty text as ∅."""
    shown = {" ": "\u2423", "\n": "\u21b5", "\t": "\u21e5", "\r": "\u240d"}
    return "".join(shown.get(char, char) for char in text) if text else "\u2205"


def document_texts() -> list[str]:
    """Each document's whole text."""
    return ["".join(pieces) for pieces in DOCUMENTS.values()]
