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
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from dataclasses import asdict, dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import torch
import torch.distributed as dist

from crossent.data import Text, Window, iter_windows
from crossent.data.tokens import tokenize_parts
from crossent.data.windows import check_window
from crossent.losses.linear import linear_cross_entropy_with_stats
from crossent.metrics import NLLMeter, NLLResult

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

    from crossent.models.protocol import CausalLM, Tokenizer

Prefix = Literal["bos", "eos", "none"]
_T = TypeVar("_T")
# Called with (tokens scored so far, estimated total or None).
Progress = Callable[[int, int | None], None]

# The default window when none is given: the model's context, capped so a CPU run stays small.
DEFAULT_WINDOW_CAP = 2048
# Float32 logits per chunk when ranking targets and listing the top-k, about 64 MiB.
_DETAIL_CHUNK_BYTES = 64 << 20
_WHITESPACE = re.compile(r"\s+")


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
    rank, world = _shard(group)

    stream = _DocumentStream(model.tokenizer, documents, prefix_id, window, stride, per_token)
    meters: list[NLLMeter] = []
    tokens: list[TokenScore] = []
    decoded = _Decoder(model.tokenizer)
    scored = 0
    with torch.no_grad():
        for number, batch in enumerate(_batched(stream.windows(), batch_size)):
            meters.extend(NLLMeter() for _ in range(stream.count - len(meters)))
            if number % world == rank:
                indices = [index for index, _ in batch]
                windows = [win for _, win in batch]
                sums, details = _score_batch(model, windows, top_k if per_token else 0)
                for index, (nll, count, correct) in zip(indices, sums, strict=True):
                    meters[index].update(nll, count, correct=correct)
                if per_token:
                    tokens.extend(stream.token_scores(indices, windows, details, decoded))
            scored += sum(len(win.targets) - win.score_from for _, win in batch)
            if progress is not None:
                progress(scored, stream.estimated_tokens())
    if stream.count == 0:
        raise ValueError("no documents to evaluate")
    meters.extend(NLLMeter() for _ in range(stream.count - len(meters)))
    if world > 1:
        meters, tokens = _gather(meters, tokens, per_token, group)

    scores = []
    total = NLLMeter()
    for index, meter in enumerate(meters):
        name, num_bytes, words = stream.names[index], stream.bytes[index], stream.words[index]
        scores.append(
            DocumentScore(name, meter.tokens, num_bytes, words, meter.nll_nats, meter.correct)
        )
        total.merge(NLLMeter(meter.nll_nats, meter.tokens, num_bytes, words, meter.correct))
    return EvaluationResult(model.name, window, stride, prefix, scores, total.result(), tokens)


class _DocumentStream:
    """Documents to windows, read and tokenized lazily, with what each document counts."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        documents: Iterable[Text],
        prefix_id: int | None,
        window: int,
        stride: int,
        offsets: bool,
    ) -> None:
        self.tokenizer = tokenizer
        self.documents = documents
        self.prefix_id = prefix_id
        self.window = window
        self.stride = stride
        self.offsets = offsets
        self.names: list[str] = []
        self.bytes: list[int] = []
        self.words: list[int] = []
        self.token_texts: list[list[str]] = []
        self.token_starts: list[list[int]] = []
        # For the progress estimate: bytes of all documents, when known up front.
        self.total_bytes = (
            sum(doc.num_bytes for doc in documents) if isinstance(documents, Sized) else None
        )
        self.tokens_read = 0
        self.bytes_read = 0

    @property
    def count(self) -> int:
        """Documents started so far."""
        return len(self.names)

    def windows(self) -> Iterator[tuple[int, Window]]:
        for index, document in enumerate(self.documents):
            self.names.append(document.name)
            self.bytes.append(document.num_bytes)
            self.words.append(1)
            self.token_texts.append([])
            self.token_starts.append([])
            ids = self._ids(index, document)
            try:
                for win in iter_windows(ids, self.prefix_id, self.window, self.stride):
                    yield index, win
            except ValueError as error:
                raise ValueError(f"document {document.name}: {error}") from None

    def _ids(self, index: int, document: Text) -> Iterator[int]:
        for piece in tokenize_parts(self.tokenizer, document.parts(), offsets=self.offsets):
            # lm-eval's word count, len(re.split(r"\s+", text)), is 1 + the whitespace runs;
            # pieces are cut after a run, so no run is counted twice.
            self.words[index] += len(_WHITESPACE.findall(piece.text))
            self.tokens_read += len(piece.ids)
            self.bytes_read += len(piece.text.encode())
            if piece.token_texts is not None and piece.token_starts is not None:
                self.token_texts[index].extend(piece.token_texts)
                self.token_starts[index].extend(piece.token_starts)
            yield from piece.ids

    def estimated_tokens(self) -> int | None:
        """Tokens read so far plus the rest of the bytes at the rate seen so far."""
        if self.total_bytes is None or self.bytes_read == 0:
            return None
        rest = max(0, self.total_bytes - self.bytes_read)
        return self.tokens_read + round(rest * self.tokens_read / self.bytes_read)

    def token_scores(
        self,
        indices: Sequence[int],
        windows: Sequence[Window],
        details: list[list[_TokenDetail]],
        decoded: _Decoder,
    ) -> Iterator[TokenScore]:
        for index, win, row in zip(indices, windows, details, strict=True):
            texts, starts = self.token_texts[index], self.token_starts[index]
            for offset, detail in enumerate(row):
                position = win.first_position + win.score_from + offset
                yield TokenScore(
                    document=index,
                    position=position,
                    token_id=detail.token_id,
                    text=texts[position],
                    start=starts[position],
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


def pad_windows(
    windows: Sequence[Window], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch of windows as right-padded ``(inputs, targets)``, both ``(B, T)`` int64.

    Targets that are not scored (context, padding) are -100, the ignore index. Padding after a
    window cannot change its scores: a causal model never looks ahead.
    """
    length = max(len(win.tokens) for win in windows)
    inputs = torch.zeros(len(windows), length, dtype=torch.long)
    targets = torch.full((len(windows), length), -100, dtype=torch.long)
    for row, win in enumerate(windows):
        inputs[row, : len(win.tokens)] = torch.tensor(win.tokens)
        scored = slice(win.score_from, len(win.targets))
        targets[row, scored] = torch.tensor(win.targets[scored])
    return inputs.to(device), targets.to(device)


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
    rows = max(1, _DETAIL_CHUNK_BYTES // (4 * weight.shape[0]))
    ranks, top_ids, top_probs = [], [], []
    for start in range(0, hidden.shape[0], rows):
        logits = torch.nn.functional.linear(hidden[start : start + rows], weight, bias).float()
        true = logits.gather(1, target[start : start + rows, None])  # (m, 1)
        ranks.append((logits > true).sum(dim=1) + 1)
        values, indices = logits.topk(top_k, dim=1)
        top_ids.append(indices)
        top_probs.append((values - logits.logsumexp(dim=1, keepdim=True)).exp())
    return torch.cat(ranks).cpu(), torch.cat(top_ids).cpu(), torch.cat(top_probs).double().cpu()


def _batched(items: Iterable[_T], size: int) -> Iterator[list[_T]]:
    """Consecutive lists of ``size`` items, the last one shorter (itertools.batched, 3.12+)."""
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _shard(group: ProcessGroup | None) -> tuple[int, int]:
    """This process's rank and the number of ranks to share the work with."""
    if not dist.is_available() or not dist.is_initialized():
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


def _gather(
    meters: list[NLLMeter],
    tokens: list[TokenScore],
    per_token: bool,
    group: ProcessGroup | None,
) -> tuple[list[NLLMeter], list[TokenScore]]:
    """Every rank's per-document sums added up, and every rank's token scores in order."""
    if dist.get_backend(group) == dist.Backend.NCCL:
        device = torch.device("cuda", torch.cuda.current_device())
    else:
        device = torch.device("cpu")
    sums = torch.tensor(
        [[meter.nll_nats, meter.tokens, meter.correct] for meter in meters],
        dtype=torch.float64,
        device=device,
    )
    dist.all_reduce(sums, op=dist.ReduceOp.SUM, group=group)
    meters = [
        NLLMeter(nll, int(count), correct=int(correct)) for nll, count, correct in sums.tolist()
    ]
    # Every rank was given the same per_token, so all take part in the gather or none does.
    if per_token:
        everyone: list[list[TokenScore] | None] = [None] * dist.get_world_size(group)
        dist.all_gather_object(everyone, tokens, group=group)
        tokens = sorted(
            (token for part in everyone for token in part or []),
            key=lambda token: (token.document, token.position),
        )
    return meters, tokens
