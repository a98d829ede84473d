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
and ``word_perplexity`` are lm-eval's. They count only the text the scored tokens cover: without
a prefix token the first token of each document is context only, and its bytes and the words
wholly inside it are left out (and reported as ``unscored_bytes`` and ``unscored_words``), so
bits per byte is always nats of scored tokens over the bytes those tokens cover.

A result records where it came from (:class:`Provenance`): crossent's version, the model and its
quantisation, dtype and device, the inputs, the window, stride and prefix, and the limits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from crossent.data import Text, Window
from crossent.data.counts import count_words as count_words  # importable where it was
from crossent.data.stream import DocumentStream, choose_prefix, scored_tokens
from crossent.data.stream import Prefix as Prefix  # the type of evaluate's prefix argument
from crossent.data.tokens import show_bytes
from crossent.data.windows import check_window
from crossent.distributed import all_sum_floats, deal, gather_lists, rank_and_world
from crossent.metrics import NLLMeter, NLLResult
from crossent.scoring import TokenDetail, TokenTexts, score_batch
from crossent.version import __version__

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

    from crossent.models.protocol import CausalLM

# Called with (tokens scored so far, estimated total or None).
Progress = Callable[[int, int | None], None]

# The default window when none is given: the model's context, capped so a CPU run stays small.
DEFAULT_WINDOW_CAP = 2048


@dataclass(frozen=True)
class DocumentScore:
    """One document's sums. ``nll_nats`` is its summed negative log-likelihood.

    ``bytes`` and ``words`` are those the scored tokens cover (:mod:`crossent.data.counts`);
    ``unscored_bytes`` and ``unscored_words`` are the first token's when it is context only (no
    prefix token), and ``truncated`` says the document was cut short by ``max_tokens``.
    """

    name: str
    tokens: int
    bytes: int
    words: int
    nll_nats: float
    correct: int
    unscored_bytes: int = 0
    unscored_words: int = 0
    truncated: bool = False

    def result(self) -> NLLResult:
        """This document's metrics in every unit."""
        return NLLMeter(self.nll_nats, self.tokens, self.bytes, self.words, self.correct).result()

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of one document in ``crossent eval --json``: sums and metrics."""
        return {
            "name": self.name,
            **_metrics_dict(self.result()),
            "unscored_bytes": self.unscored_bytes,
            "unscored_words": self.unscored_words,
            "truncated": self.truncated,
        }


def _metrics_dict(metrics: NLLResult) -> dict[str, Any]:
    return {key: value for key, value in metrics.to_dict().items() if key != "correct"}


@dataclass(frozen=True)
class Inputs:
    """Where the documents came from, for the record (:func:`evaluate` does not read them).

    Attributes:
        paths: the paths read; ``crossent eval`` records the default text by its name
            (:func:`crossent.data.sources.default_text_name`).
        max_chars: each text was cut to its first ``max_chars`` characters, or None.
    """

    paths: tuple[str, ...] = ()
    max_chars: int | None = None


@dataclass(frozen=True)
class Provenance:
    """What produced a result, so that its numbers can be told apart from others'.

    Attributes:
        crossent_version: the version of crossent that scored.
        model: the model as the user named it.
        description: what its weights are (:attr:`crossent.models.CausalLM.description`),
            e.g. the default's "SmolLM2-135M-Instruct, Q4_1 GGUF (...) dequantised to float32".
        quantisation: the GGUF file type the weights were dequantised from (``"Q4_1"``), or
            None when they were never quantised.
        dtype: the dtype the model ran in (``"float32"``).
        device: where it ran (``"cpu"``, ``"cuda:0"``).
        inputs: the documents' paths and character cut.
        max_tokens: the cap on scored tokens, or None.
        max_documents: the cap on documents read, or None.
    """

    crossent_version: str
    model: str
    description: str
    quantisation: str | None
    dtype: str
    device: str
    inputs: Inputs
    max_tokens: int | None
    max_documents: int | None

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``crossent eval --json``'s ``provenance``."""
        record = asdict(self)
        record["data"] = list(self.inputs.paths)
        record["max_chars"] = self.inputs.max_chars
        del record["inputs"]
        return record


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
            character with its first byte and "" after; :attr:`shown` shows its bytes).
        start: character offset in the document where ``text`` starts (for a token that
            covers part of a character, where that character starts).
        nats: ``-ln p(token)`` given its window's context.
        rank: 1 when the token was the model's top prediction; 1 + the number of vocabulary
            entries with a strictly higher logit otherwise.
        top_ids: the ``k`` most likely next tokens, most likely first.
        top_texts: their texts, as :attr:`shown` writes them.
        top_probs: their probabilities.
        utf8: the document's bytes this token covers (see :mod:`crossent.data.tokens`); None
            when not recorded, then ``text``'s UTF-8.
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
    utf8: bytes | None = None

    @property
    def probability(self) -> float:
        """``p(token) = e ** -nats``."""
        return math.exp(-self.nats)

    @property
    def num_bytes(self) -> int:
        """How many bytes of the document this token covers."""
        return len(self.utf8) if self.utf8 is not None else len(self.text.encode("utf-8"))

    @property
    def shown(self) -> str:
        """The token for people: its bytes as UTF-8, each byte of an incomplete character
        written ``<0xNN>`` (:func:`crossent.data.tokens.show_bytes`)."""
        return show_bytes(self.utf8) if self.utf8 is not None else self.text


@dataclass(frozen=True)
class EvaluationResult:
    """What :func:`evaluate` measured: per document, and the totals in every unit.

    ``tokens`` holds one :class:`TokenScore` per scored token, in document order, when
    :func:`evaluate` was asked for per-token details; otherwise it is empty. ``stopped_early``
    says that ``max_tokens`` or ``max_documents`` left text unscored; ``provenance`` is None
    only for a result built by hand.
    """

    model: str
    window: int
    stride: int
    prefix: Prefix
    documents: list[DocumentScore]
    totals: NLLResult
    tokens: list[TokenScore] = field(default_factory=list)
    provenance: Provenance | None = None
    stopped_early: bool = False

    @property
    def unscored_bytes(self) -> int:
        """The bytes of the documents' first tokens left unscored (no prefix token)."""
        return sum(document.unscored_bytes for document in self.documents)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``crossent eval --json``."""
        return {
            "model": self.model,
            "window": self.window,
            "stride": self.stride,
            "prefix": self.prefix,
            "provenance": self.provenance.to_dict() if self.provenance is not None else None,
            "scoring": {
                "first_token_scored": self.prefix != "none",
                "unscored_bytes": self.unscored_bytes,
                "unscored_words": sum(document.unscored_words for document in self.documents),
                "stopped_early": self.stopped_early,
                "counts": "bytes and words are those the scored tokens cover",
            },
            "documents": [document.to_dict() for document in self.documents],
            "totals": _metrics_dict(self.totals),
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
    max_tokens: int | None = None,
    max_documents: int | None = None,
    inputs: Inputs | None = None,
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
        max_tokens: stop after this many scored tokens: the document they end in is cut after
            its last token scored and counts only the bytes and words those tokens cover
            (:mod:`crossent.data.stream`); later documents are not read. None: no cap.
        max_documents: score only the first this many documents. None: all.
        inputs: where the documents came from, recorded in the result's provenance.
        progress: called after every batch with the tokens scored so far and an estimate of
            the total (None while there is nothing to estimate from).
        group: the process group to shard over when ``torch.distributed`` is initialised.

    Raises:
        ValueError: no documents, a window larger than the model's context, a bad stride,
            batch size, ``top_k`` or limit, a document that tokenizes to nothing or cannot be
            read.
    """
    window = window if window is not None else min(model.context_length, DEFAULT_WINDOW_CAP)
    stride = stride if stride is not None else window
    check_window(window, stride, context=model.context_length)
    if batch_size < 1:
        raise ValueError(f"batch size must be positive, got {batch_size}")
    if not 1 <= top_k <= model.vocab_size:
        raise ValueError(f"top_k {top_k} is outside [1, {model.vocab_size}] (the vocabulary)")
    for name, limit in (("max_tokens", max_tokens), ("max_documents", max_documents)):
        if limit is not None and limit < 1:
            raise ValueError(f"{name} must be positive, got {limit}")
    prefix, prefix_id = prefix_token(model, prefix)

    stream = DocumentStream(
        model.tokenizer, documents, prefix_id, window, stride, per_token,
        max_tokens=max_tokens, max_documents=max_documents,
    )  # fmt: skip
    meters: list[NLLMeter] = []
    tokens: list[TokenScore] = []
    decoded = TokenTexts(model.tokenizer)
    scored = 0
    with torch.no_grad():
        for batch, mine in deal(stream.batches(batch_size), group):
            meters.extend(NLLMeter() for _ in range(stream.count - len(meters)))
            if mine:
                indices = [index for index, _ in batch]
                windows = [win for _, win in batch]
                sums, details = score_batch(model, windows, top_k if per_token else 0)
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
    provenance = Provenance(
        crossent_version=__version__,
        model=model.name,
        description=model.description,
        quantisation=model.quantisation,
        dtype=str(model.head_weight.dtype).removeprefix("torch."),
        device=str(model.device),
        inputs=inputs if inputs is not None else Inputs(),
        max_tokens=max_tokens,
        max_documents=max_documents,
    )
    return EvaluationResult(
        model.name, window, stride, prefix, scores, total.result(), tokens, provenance, stream.cut
    )


def _document_scores(stream: DocumentStream, meters: list[NLLMeter]) -> list[DocumentScore]:
    """Each document's sums with the bytes and words the stream counted as it read it."""
    return [
        DocumentScore(
            name,
            meter.tokens,
            count.bytes,
            count.words,
            meter.nll_nats,
            meter.correct,
            unscored_bytes=count.unscored_bytes,
            unscored_words=count.unscored_words,
            truncated=count.cut,
        )
        for name, count, meter in zip(stream.names, stream.counts, meters, strict=True)
    ]


def _token_scores(
    stream: DocumentStream,
    indices: Sequence[int],
    windows: Sequence[Window],
    details: list[list[TokenDetail]],
    decoded: TokenTexts,
) -> Iterator[TokenScore]:
    """The :class:`TokenScore` of every token one batch scored, in order."""
    for index, win, row in zip(indices, windows, details, strict=True):
        for offset, detail in enumerate(row):
            position = win.first_position + win.score_from + offset
            text, start, utf8 = stream.token_text(index, position)
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
                utf8=utf8,
            )


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
