"""Evaluate a causal language model on texts: the summed negative log-likelihood and its units.

Each document is tokenized whole, preceded by a prefix token, and cut into windows by
:func:`crossent.data.rolling_windows` (the one place the scoring convention is written down).
Windows from all documents are packed into batches, right-padded (a causal model never looks
ahead, so padding after a window cannot change it), and scored from the model's final hidden
states through :func:`crossent.linear_cross_entropy_with_stats` on its own LM head, so no
``[tokens, V]`` fp32 logits are ever held. Sums are kept per document in float64.

Bytes are the UTF-8 bytes of the text and words are counted as lm-evaluation-harness counts them
(``len(re.split(r"\\s+", text))``), so ``bits_per_byte``, ``byte_perplexity`` and
``word_perplexity`` are lm-eval's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch

from crossent.data import Document, Window, rolling_windows
from crossent.losses.linear import linear_cross_entropy_with_stats
from crossent.metrics import NLLMeter, NLLResult
from crossent.models.protocol import CausalLM

Prefix = Literal["bos", "eos", "none"]

# The default window when none is given: the model's context, capped so a CPU run stays small.
DEFAULT_WINDOW_CAP = 2048


def count_words(text: str) -> int:
    """Words as lm-evaluation-harness counts them for perplexity: pieces between whitespace runs."""
    return len(re.split(r"\s+", text))


@dataclass(frozen=True)
class DocumentScore:
    """One document's sums. ``nll_nats`` is its summed negative log-likelihood."""

    name: str
    tokens: int
    bytes: int
    words: int
    nll_nats: float
    correct: int

    def result(self) -> NLLResult:
        """This document's metrics in every unit."""
        return NLLMeter(self.nll_nats, self.tokens, self.bytes, self.words, self.correct).result()


@dataclass(frozen=True, slots=True)
class TokenScore:
    """One scored token, with what the model would have predicted instead.

    Attributes:
        document: index of the document in the order it was evaluated.
        position: index of the token among the document's token ids (0 is the first; without a
            prefix token the first is never scored, so positions start at 1).
        token_id: the token's id.
        text: the document's characters from the end of the previous token to the end of this
            one, so the texts of a document's tokens, in order, concatenate to the document (a
            token that covers only part of a character, such as one byte of an emoji, gets the
            character with its first byte and "" after).
        start: character offset in the document where ``text`` starts.
        nats: ``-ln p(token)`` given its window's context.
        rank: 1 when the token was the model's top prediction; 1 + the number of vocabulary
            entries with a strictly higher logit otherwise.
        top_ids: the ``k`` most likely next tokens, most likely first.
        top_texts: their decoded texts.
        top_probs: their probabilities.
    """

    document: int
    position: int
    token_id: int
    text: str
    start: int
    nats: float
    rank: int
    top_ids: tuple[int, ...]
    top_texts: tuple[str, ...]
    top_probs: tuple[float, ...]

    @property
    def probability(self) -> float:
        """``p(token) = e ** -nats``."""
        return math.exp(-self.nats)


@dataclass(frozen=True)
class EvaluationResult:
    """What :func:`evaluate` measured: per document, and the totals in every unit.

    ``tokens`` holds one :class:`TokenScore` per scored token, in document order, when
    :func:`evaluate` was asked for per-token details; otherwise it is empty.
    """

    model: str
    window: int
    stride: int
    prefix: Prefix
    documents: list[DocumentScore]
    totals: NLLResult
    tokens: list[TokenScore] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``crossent eval --json``."""
        totals = self.totals
        return {
            "model": self.model,
            "window": self.window,
            "stride": self.stride,
            "prefix": self.prefix,
            "documents": [
                {key: value for key, value in asdict(doc).items() if key != "correct"}
                for doc in self.documents
            ],
            "totals": {
                "tokens": totals.tokens,
                "bytes": totals.bytes,
                "words": totals.words,
                "nll_nats": totals.nll_nats,
                "nats_per_token": totals.nats_per_token,
                "bits_per_token": totals.bits_per_token,
                "perplexity": totals.perplexity,
                "bits_per_byte": totals.bits_per_byte,
                "byte_perplexity": totals.byte_perplexity,
                "word_perplexity": totals.word_perplexity,
                "accuracy": totals.accuracy,
            },
        }


def prefix_token(model: CausalLM, prefix: Prefix | None) -> tuple[Prefix, int | None]:
    """The prefix actually used and its id; None picks BOS, else EOS, as lm-eval does."""
    tokenizer = model.tokenizer
    if prefix is None:
        prefix = "bos" if tokenizer.bos_token_id is not None else "eos"
    if prefix == "none":
        return prefix, None
    token = tokenizer.bos_token_id if prefix == "bos" else tokenizer.eos_token_id
    if token is None:
        raise ValueError(f"model {model.name} has no {prefix.upper()} token; use another prefix")
    return prefix, token


def evaluate(
    model: CausalLM,
    documents: Sequence[Document],
    *,
    window: int | None = None,
    stride: int | None = None,
    prefix: Prefix | None = None,
    batch_size: int = 4,
) -> EvaluationResult:
    """Score every token of every document once, with the rolling-window convention.

    Args:
        model: any :class:`crossent.models.CausalLM`.
        documents: the texts; each is tokenized whole.
        window: input tokens per window, L (default: the model's context, at most 2048).
        stride: tokens between window starts, S in [1, L] (default L).
        prefix: token before each document: "bos", "eos" or "none" (default BOS, else EOS).
        batch_size: windows per forward pass; results do not depend on it beyond float noise.

    Raises:
        ValueError: no documents, a window larger than the model's context, a bad stride or
            batch size, a document that tokenizes to nothing.
    """
    if not documents:
        raise ValueError("no documents to evaluate")
    window = window if window is not None else min(model.context_length, DEFAULT_WINDOW_CAP)
    if not 1 <= window <= model.context_length:
        raise ValueError(
            f"window {window} is outside [1, {model.context_length}] (the model's context)"
        )
    stride = stride if stride is not None else window
    if not 1 <= stride <= window:
        raise ValueError(f"stride {stride} is outside [1, {window}] (the window)")
    if batch_size < 1:
        raise ValueError(f"batch size must be positive, got {batch_size}")
    prefix, prefix_id = prefix_token(model, prefix)

    work: list[tuple[int, Window]] = []
    for index, document in enumerate(documents):
        ids = model.tokenizer.encode(document.text)
        if not ids:
            raise ValueError(f"document {document.name} has no tokens")
        work.extend((index, win) for win in rolling_windows(ids, prefix_id, window, stride))

    meters = [NLLMeter() for _ in documents]
    with torch.no_grad():
        for start in range(0, len(work), batch_size):
            batch = work[start : start + batch_size]
            for (index, _), (nll, tokens, correct) in zip(
                batch, _score_batch(model, [win for _, win in batch]), strict=True
            ):
                meters[index].update(nll, tokens, correct=correct)

    scores = []
    total = NLLMeter()
    for document, meter in zip(documents, meters, strict=True):
        num_bytes = len(document.text.encode("utf-8"))
        words = count_words(document.text)
        scores.append(
            DocumentScore(
                document.name, meter.tokens, num_bytes, words, meter.nll_nats, meter.correct
            )
        )
        total.merge(NLLMeter(meter.nll_nats, meter.tokens, num_bytes, words, meter.correct))
    return EvaluationResult(model.name, window, stride, prefix, scores, total.result())


def _score_batch(model: CausalLM, windows: Sequence[Window]) -> list[tuple[float, int, int]]:
    """(summed nats, scored tokens, correct top-1) for each window of one right-padded batch."""
    length = max(len(win.tokens) for win in windows)
    inputs = torch.zeros(len(windows), length, dtype=torch.long)
    targets = torch.full((len(windows), length), -100, dtype=torch.long)
    for row, win in enumerate(windows):
        inputs[row, : len(win.tokens)] = torch.tensor(win.tokens)
        scored = slice(win.score_from, len(win.targets))
        targets[row, scored] = torch.tensor(win.targets[scored])
    hidden = model.hidden_states(inputs.to(model.device))  # (B, T, d)
    stats = linear_cross_entropy_with_stats(
        hidden, model.head_weight, targets.to(model.device), model.head_bias, reduction="sum"
    )
    token_loss = stats.token_loss.double()  # (B, T), 0 where not scored
    return [
        (
            float(token_loss[row].sum()),
            int(stats.scored[row].sum()),
            int(stats.correct[row].sum()),
        )
        for row in range(len(windows))
    ]
