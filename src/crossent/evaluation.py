"""Evaluate a causal language model on texts: the summed negative log-likelihood and its units.

Each document is tokenized whole, preceded by a prefix token, and cut into windows by
:func:`crossent.data.rolling_windows` (the one place the scoring convention is written down).
Windows from all documents are packed into batches by :class:`crossent.data.stream.DocumentStream`,
right-padded (a causal model never looks ahead, so padding after a window cannot change it), and
scored from the model's final hidden states through :func:`crossent.linear_cross_entropy_with_stats`
on its own LM head, so no ``[tokens, V]`` fp32 logits are ever held. Sums are kept per document
in float64.

Bytes and words are counted by :mod:`crossent.data.counts`, as lm-evaluation-harness counts them
(UTF-8 bytes, ``len(re.split(r"\\s+", text))`` words), so ``bits_per_byte``, ``byte_perplexity``
and ``word_perplexity`` are lm-eval's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from crossent.data import Text, Window
from crossent.data.counts import count_words as count_words  # importable where it was
from crossent.data.stream import DocumentStream, choose_prefix, pad_windows, scored_tokens
from crossent.data.stream import Prefix as Prefix  # the type of evaluate's prefix argument
from crossent.data.windows import check_window
from crossent.distributed import all_sum_floats, deal, gather_lists, rank_and_world
from crossent.kernels import default_chunk_rows
from crossent.losses.linear import linear_cross_entropy_with_stats
from crossent.metrics import NLLMeter, NLLResult

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

    from crossent.models.protocol import CausalLM, Tokenizer

# Called with (tokens scored so far, estimated total or None).
Progress = Callable[[int, int | None], None]

# The default window when none is given: the model's context, capped so a CPU run stays small.
DEFAULT_WINDOW_CAP = 2048


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


def top_alternatives(
    ids: Sequence[int], texts: Sequence[str], probs: Sequence[float]
) -> list[dict[str, Any]]:
    """The top-k alternatives as every output writes them: ``{"id", "text", "prob"}`` each.

    The one place these keys are chosen, for ``crossent eval --per-token`` and
    ``crossent explain``'s JSON alike.

    Example:
        >>> top_alternatives([7], ["the"], [0.5])
        [{'id': 7, 'text': 'the', 'prob': 0.5}]
    """
    return [
        {"id": top_id, "text": text, "prob": prob}
        for top_id, text, prob in zip(ids, texts, probs, strict=True)
    ]


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
    """The prefix actually used and its id; None picks BOS, else EOS, as lm-eval does.

    The choice is :func:`crossent.data.stream.choose_prefix`'s; this refuses a prefix the
    model's tokenizer does not have.
    """
    prefix, token = choose_prefix(model.tokenizer, prefix)
    if token is None and prefix != "none":
        raise ValueError(f"model {model.name} has no {prefix.upper()} token; use another prefix")
    return prefix, token


def evaluate(
    model: CausalLM,
    documents: Iterable[Text],
    *,
    window: int | None = None,
    stride: int | None = None,
    prefix: Prefix | None = None,
    batch_size: int = 4,
    per_token: bool = False,
    top_k: int = 5,
    progress: Progress | None = None,
    group: ProcessGroup | None = None,
) -> EvaluationResult:
    """Score every token of every document once, with the rolling-window convention.

    Documents are read, tokenized and cut into windows as they are scored, so only the windows
    in flight are held: a :class:`crossent.data.FileDocument` larger than memory streams
    through. Per-token details, when asked for, are kept for every token (about 300 bytes each).

    When ``torch.distributed`` is initialised (``torchrun``), the batches are dealt round-robin
    to the ranks of ``group`` (default: the world), each rank scores its own, and the sums are
    all-reduced: every rank returns the result one process would have, up to the order of
    float64 additions. Every rank must be given the same documents.

    Args:
        model: any :class:`crossent.models.CausalLM`.
        documents: the texts; each is tokenized whole.
        window: input tokens per window, L (default: the model's context, at most 2048).
        stride: tokens between window starts, S in [1, L] (default L).
        prefix: token before each document: "bos", "eos" or "none" (default BOS, else EOS).
        batch_size: windows per forward pass; results do not depend on it beyond float noise.
        per_token: also return a :class:`TokenScore` for every scored token.
        top_k: how many alternatives each :class:`TokenScore` lists.
        progress: called after every batch with the tokens scored so far and an estimate of
            the total (None while there is nothing to estimate from).
        group: the process group to shard over when ``torch.distributed`` is initialised.

    Raises:
        ValueError: no documents, a window larger than the model's context, a bad stride,
            batch size or ``top_k``, a document that tokenizes to nothing or cannot be read.
    """
    window = window if window is not None else min(model.context_length, DEFAULT_WINDOW_CAP)
    stride = stride if stride is not None else window
    check_window(window, stride, context=model.context_length)
    if batch_size < 1:
        raise ValueError(f"batch size must be positive, got {batch_size}")
    if not 1 <= top_k <= model.vocab_size:
        raise ValueError(f"top_k {top_k} is outside [1, {model.vocab_size}] (the vocabulary)")
    prefix, prefix_id = prefix_token(model, prefix)

    stream = DocumentStream(model.tokenizer, documents, prefix_id, window, stride, per_token)
    meters: list[NLLMeter] = []
    tokens: list[TokenScore] = []
    decoded = _Decoder(model.tokenizer)
    scored = 0
    with torch.no_grad():
        for batch, mine in deal(stream.batches(batch_size), group):
            meters.extend(NLLMeter() for _ in range(stream.count - len(meters)))
            if mine:
                indices = [index for index, _ in batch]
                windows = [win for _, win in batch]
                sums, details = _score_batch(model, windows, top_k if per_token else 0)
                for index, (nll, count, correct) in zip(indices, sums, strict=True):
                    meters[index].update(nll, count, correct=correct)
                if per_token:
                    tokens.extend(_token_scores(stream, indices, windows, details, decoded))
            scored += scored_tokens(batch)
            if progress is not None:
                progress(scored, stream.estimated_tokens())
    if stream.count == 0:
        raise ValueError("no documents to evaluate")
    meters.extend(NLLMeter() for _ in range(stream.count - len(meters)))
    if rank_and_world(group)[1] > 1:
        meters, tokens = _gather(meters, tokens, per_token, group)
    scores = _document_scores(stream, meters)
    total = NLLMeter()
    for score in scores:
        total.merge(NLLMeter(score.nll_nats, score.tokens, score.bytes, score.words, score.correct))
    return EvaluationResult(model.name, window, stride, prefix, scores, total.result(), tokens)


def _document_scores(stream: DocumentStream, meters: list[NLLMeter]) -> list[DocumentScore]:
    """Each document's sums with the bytes and words the stream counted as it read it."""
    return [
        DocumentScore(name, meter.tokens, num_bytes, words, meter.nll_nats, meter.correct)
        for name, num_bytes, words, meter in zip(
            stream.names, stream.bytes, stream.words, meters, strict=True
        )
    ]


def _token_scores(
    stream: DocumentStream,
    indices: Sequence[int],
    windows: Sequence[Window],
    details: list[list[_TokenDetail]],
    decoded: _Decoder,
) -> Iterator[TokenScore]:
    """The :class:`TokenScore` of every token one batch scored, in order."""
    for index, win, row in zip(indices, windows, details, strict=True):
        for offset, detail in enumerate(row):
            position = win.first_position + win.score_from + offset
            text, start = stream.token_text(index, position)
            yield TokenScore(
                document=index,
                position=position,
                token_id=detail.token_id,
                text=text,
                start=start,
                nats=detail.nats,
                rank=detail.rank,
                top_ids=detail.top_ids,
                top_texts=tuple(decoded(token) for token in detail.top_ids),
                top_probs=detail.top_probs,
            )


class _Decoder:
    """Token id to text, remembered: the same few thousand ids recur among the top-k."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.texts: dict[int, str] = {}

    def __call__(self, token: int) -> str:
        text = self.texts.get(token)
        if text is None:
            text = self.texts[token] = self.tokenizer.decode([token])
        return text


@dataclass(frozen=True, slots=True)
class _TokenDetail:
    token_id: int
    nats: float
    rank: int
    top_ids: tuple[int, ...]
    top_probs: tuple[float, ...]


def _score_batch(
    model: CausalLM, windows: Sequence[Window], top_k: int
) -> tuple[list[tuple[float, int, int]], list[list[_TokenDetail]]]:
    """Per window of one right-padded batch: (summed nats, scored tokens, correct top-1), and
    with ``top_k`` > 0 the details of each scored token."""
    inputs, targets = pad_windows(windows, model.device)
    hidden = model.hidden_states(inputs)  # (B, T, d)
    stats = linear_cross_entropy_with_stats(
        hidden, model.head_weight, targets, model.head_bias, reduction="sum"
    )
    token_loss = stats.token_loss.double()  # (B, T), 0 where not scored
    sums = [
        (float(token_loss[row].sum()), int(stats.scored[row].sum()), int(stats.correct[row].sum()))
        for row in range(len(windows))
    ]
    if top_k == 0:
        return sums, []
    scored_mask = stats.scored  # (B, T)
    rank, top_ids, top_probs = _ranks_and_top(
        hidden[scored_mask], model.head_weight, model.head_bias, targets[scored_mask], top_k
    )
    nats = token_loss[scored_mask].tolist()
    ids, ranks = targets[scored_mask].tolist(), rank.tolist()
    top_id_rows, top_prob_rows = top_ids.tolist(), top_probs.tolist()
    details: list[list[_TokenDetail]] = []
    flat = 0
    for count in scored_mask.sum(dim=1).tolist():
        details.append(
            [
                _TokenDetail(
                    ids[i], nats[i], ranks[i], tuple(top_id_rows[i]), tuple(top_prob_rows[i])
                )
                for i in range(flat, flat + count)
            ]
        )
        flat += count
    return sums, details


def _ranks_and_top(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    target: torch.Tensor,
    top_k: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The rank of each target and the ``top_k`` tokens with their probabilities.

    Shapes: ``hidden`` (M, d), ``target`` (M,) -> rank (M,), top ids (M, k), top probs (M, k).
    Logits are made a chunk of rows at a time, in float32, about 64 MiB each.
    """
    # As the fused loss: about 64 MiB of float32 logits per chunk.
    rows = default_chunk_rows(weight.shape[0])
    ranks, top_ids, top_probs = [], [], []
    for start in range(0, hidden.shape[0], rows):
        logits = torch.nn.functional.linear(hidden[start : start + rows], weight, bias).float()
        true = logits.gather(1, target[start : start + rows, None])  # (m, 1)
        ranks.append((logits > true).sum(dim=1) + 1)
        values, indices = logits.topk(top_k, dim=1)
        top_ids.append(indices)
        top_probs.append((values - logits.logsumexp(dim=1, keepdim=True)).exp())
    return torch.cat(ranks).cpu(), torch.cat(top_ids).cpu(), torch.cat(top_probs).double().cpu()


def _gather(
    meters: list[NLLMeter],
    tokens: list[TokenScore],
    per_token: bool,
    group: ProcessGroup | None,
) -> tuple[list[NLLMeter], list[TokenScore]]:
    """Every rank's per-document sums added up, and every rank's token scores in order."""
    sums = all_sum_floats(
        [[meter.nll_nats, meter.tokens, meter.correct] for meter in meters], group
    )
    meters = [NLLMeter(nll, int(count), correct=int(correct)) for nll, count, correct in sums]
    # Every rank was given the same per_token, so all take part in the gather or none does.
    if per_token:
        tokens = sorted(
            gather_lists(tokens, group), key=lambda token: (token.document, token.position)
        )
    return meters, tokens
