"""Evaluate a causal language model on texts: the summed negative log-likelihood and its units.

Each document is tokenized whole, preceded by a prefix token, and cut into windows by
:func:`crossent.data.rolling_windows` (the one place the scoring convention is written down).
Windows from all documents are packed into batches by :class:`crossent.data.stream.DocumentStream`
and scored by :func:`crossent.scoring.score_batch` under ``torch.inference_mode``: windows of
equal length go through the trunk together (no padding is computed), and the final hidden states
of the scored positions go through :func:`crossent.linear_cross_entropy_with_stats` on the model's
own LM head, so no ``[tokens, V]`` fp32 logits are ever held. Sums are kept per document in
float64. ``compile=True`` runs the trunk through ``torch.compile``
(:func:`crossent.scoring.compiled_trunk`).

Bytes and words are counted by :mod:`crossent.data.counts`, as lm-evaluation-harness counts them
(UTF-8 bytes, ``len(re.split(r"\\s+", text))`` words), so ``bits_per_byte``, ``byte_perplexity``
and ``word_perplexity`` are lm-eval's. They count only the text the scored tokens cover: without
a prefix token the first token of each document is context only, and its bytes and the words
wholly inside it are left out (and reported as ``unscored_bytes`` and ``unscored_words``), so
bits per byte is always nats of scored tokens over the bytes those tokens cover.

A result records where it came from (:class:`Provenance`): crossent's version, the model and its
quantisation, dtype, device and batch size, the inputs, the window, stride and prefix, and the
limits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import torch

from crossent.calibration import CalibrationMeter, CalibrationResult
from crossent.data import Text, Window
from crossent.data.conventions import (
    Convention,
    Tally,
    check_convention,
    convention_prefix,
    counted,
)
from crossent.data.stream import DocumentStream, choose_prefix, scored_tokens
from crossent.data.stream import Prefix as Prefix  # the type of evaluate's prefix argument
from crossent.data.windows import check_window
from crossent.distributed import all_sum_floats, deal, gather_lists, rank_and_world
from crossent.evaluation.records import (
    DocumentScore,
    EvaluationResult,
    Inputs,
    Provenance,
    TokenScore,
    bootstrap_scores,
)
from crossent.evaluation.token_sink import TokenRelay, TokenSink
from crossent.failures import NonFiniteLossError
from crossent.metrics import NLLMeter
from crossent.scoring import (
    PositionMeter,
    TokenDetail,
    TokenTexts,
    compiled_trunk,
    default_batch_size,
    score_batch,
)
from crossent.version import __version__

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

    from crossent.models.protocol import CausalLM

# Called with (tokens scored so far, estimated total or None).
Progress = Callable[[int, int | None], None]

# The default window when none is given: the model's context, capped so a CPU run stays small.
DEFAULT_WINDOW_CAP = 2048


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
    batch_size: int | None = None,
    per_token: bool = False,
    top_k: int = 5,
    max_tokens: int | None = None,
    max_documents: int | None = None,
    inputs: Inputs | None = None,
    progress: Progress | None = None,
    group: ProcessGroup | None = None,
    on_token: TokenSink | None = None,
    convention: Convention = "lm-eval",
    by_position: bool = False,
    compile: bool = False,
    calibration: bool = False,
) -> EvaluationResult:
    """Score every document's tokens by a convention: by default each token once, in rolling
    windows (lm-evaluation-harness's); or llama.cpp's or the Transformers guide's way
    (:mod:`crossent.data.conventions`).

    Documents are read, tokenized and cut into windows as they are scored, so only the windows
    in flight are held: a :class:`crossent.data.FileDocument` larger than memory streams
    through. Per-token details, when asked for with ``per_token``, are kept for every token
    (about 300 bytes each); ``on_token`` receives them instead as they are made, holding none
    (:mod:`crossent.evaluation.token_sink`).

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
        batch_size: full windows per forward pass; shorter windows (short documents) are
            packed up to as many tokens counted padded, ``batch_size * window``
            (:mod:`crossent.data.stream`), and each length goes through the trunk on its own,
            so no padding is computed. Results do not depend on it beyond float noise (bf16's
            noise is larger). Default: :func:`crossent.scoring.default_batch_size`, windows
            up to 512 tokens a pass on a CPU (faster there than larger passes), 4 on a GPU.
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
        on_token: called with each scored token's document name and :class:`TokenScore`, in
            document order, as it is scored (on every rank, which must all give one or none).
        convention: ``"lm-eval"``, ``"llama.cpp"`` or ``"hf-stride"``; it also picks the
            default prefix (:func:`crossent.data.conventions.convention_prefix`). Under the
            latter two ``max_tokens`` caps the tokens read, of which only some are scored.
        by_position: also sum the loss at each position of the window, for
            :attr:`EvaluationResult.by_position` (:class:`crossent.scoring.PositionMeter`:
            ``O(L)`` memory, every scored token once, unweighted).
        compile: run the trunk through ``torch.compile`` (:func:`crossent.scoring.compiled_trunk`):
            faster on long texts once compiled, the same numbers to float32 rounding.
        calibration: also measure calibration and the best temperature, for
            :attr:`EvaluationResult.calibration` (:mod:`crossent.calibration`: a fixed number
            of sums gathered in the same pass, every scored token once; refused under
            ``"hf-stride"``, whose totals weigh tokens by window).

    Raises:
        ValueError: no documents, a window larger than the model's context, a bad stride,
            batch size, ``top_k`` or limit, a document that tokenizes to nothing or cannot be
            read, calibration under ``"hf-stride"``.
    """
    window = window if window is not None else min(model.context_length, DEFAULT_WINDOW_CAP)
    check_convention(convention, window, stride)
    stride = stride if stride is not None else window
    check_window(window, stride, context=model.context_length)
    batch_size = default_batch_size(model.device, window) if batch_size is None else batch_size
    _check_options(model, convention, batch_size, top_k, max_tokens, max_documents, calibration)
    prefix, prefix_id = prefix_token(model, convention_prefix(convention, model.tokenizer, prefix))

    details = per_token or on_token is not None
    stream = DocumentStream(
        model.tokenizer, documents, prefix_id, window, stride, details,
        max_tokens=max_tokens, max_documents=max_documents, convention=convention,
    )  # fmt: skip
    meters: list[NLLMeter] = []
    positions = PositionMeter(window) if by_position else None
    confidence = CalibrationMeter() if calibration else None
    tokens: list[TokenScore] = []
    decoded = TokenTexts(model.tokenizer)
    relay = TokenRelay(on_token, stream.names, group) if on_token is not None else None
    scored = 0
    trunk = compiled_trunk(model) if compile else None
    with torch.inference_mode():
        for batch, mine in deal(stream.batches(batch_size), group):
            meters.extend(NLLMeter() for _ in range(stream.count - len(meters)))
            batch_tokens: list[TokenScore] = []
            if mine:
                indices = [index for index, _ in batch]
                windows = [win for _, win in batch]
                sums, rows = score_batch(
                    model, windows, top_k if details else 0, positions, trunk, confidence
                )
                for index, win, (nll, count, correct, squared) in zip(
                    indices, windows, sums, strict=True
                ):
                    if not math.isfinite(nll):
                        _stop_at_first_non_finite(model, stream, index, win)
                    stream.tallies[index].nll_squared += squared
                    if win.counted is not None:  # the guide's weighting: no per-token spread
                        nll, count, correct = counted(win, nll, count, correct)
                        meters[index].update(nll, count, correct=correct)
                    else:
                        meters[index].update(nll, count, correct=correct, nll_squared=squared)
                if details:
                    batch_tokens = list(_token_scores(stream, indices, windows, rows, decoded))
                tokens.extend(batch_tokens if per_token else [])
            if relay is not None:
                relay.add(batch_tokens)
            scored += scored_tokens(batch)
            if progress is not None:
                progress(scored, stream.estimated_tokens())
        if relay is not None:
            relay.flush()
    if stream.count == 0:
        raise ValueError("no documents to evaluate")
    meters.extend(NLLMeter() for _ in range(stream.count - len(meters)))
    if rank_and_world(group)[1] > 1:
        meters, tokens = _gather(meters, tokens, per_token, group)
        _sum_over_ranks(stream.tallies, positions, group)
        if confidence is not None:
            confidence.all_reduce(group)
    scores = _document_scores(stream, meters)
    total = NLLMeter()
    for score in scores:
        total.merge(score.meter())
    provenance = _provenance(model, batch_size, inputs, max_tokens, max_documents)
    return EvaluationResult(
        model.name, window, stride, prefix, scores, total.result(), tokens, provenance, stream.cut,
        bootstrap=bootstrap_scores(scores), convention=convention,
        by_position=positions.buckets() if positions is not None else None,
        calibration=_calibration(confidence, total),
    )  # fmt: skip


def _provenance(
    model: CausalLM,
    batch_size: int,
    inputs: Inputs | None,
    max_tokens: int | None,
    max_documents: int | None,
) -> Provenance:
    """What produced a result (:class:`Provenance`)."""
    return Provenance(
        crossent_version=__version__,
        model=model.name,
        description=model.description,
        quantisation=model.quantisation,
        dtype=str(model.head_weight.dtype).removeprefix("torch."),
        device=str(model.device),
        batch_size=batch_size,
        inputs=inputs if inputs is not None else Inputs(),
        max_tokens=max_tokens,
        max_documents=max_documents,
    )


def _calibration(meter: CalibrationMeter | None, total: NLLMeter) -> CalibrationResult | None:
    """The meter's result over the bytes of the totals; None when not asked or nothing scored."""
    if meter is None or meter.tokens == 0:
        return None
    return meter.result(total.bytes)


def _check_options(
    model: CausalLM,
    convention: Convention,
    batch_size: int,
    top_k: int,
    max_tokens: int | None,
    max_documents: int | None,
    calibration: bool,
) -> None:
    """Refuse a batch size, ``top_k`` or limit out of range, and calibration under hf-stride."""
    if calibration and convention == "hf-stride":
        raise ValueError(
            "calibration does not apply to the hf-stride convention: its totals weigh tokens "
            "by window, calibration counts each scored token once"
        )
    if batch_size < 1:
        raise ValueError(f"batch size must be positive, got {batch_size}")
    if not 1 <= top_k <= model.vocab_size:
        raise ValueError(f"top_k {top_k} is outside [1, {model.vocab_size}] (the vocabulary)")
    for name, limit in (("max_tokens", max_tokens), ("max_documents", max_documents)):
        if limit is not None and limit < 1:
            raise ValueError(f"{name} must be positive, got {limit}")


def _stop_at_first_non_finite(
    model: CausalLM, stream: DocumentStream, index: int, win: Window
) -> None:
    """Raise the one line that names where a window's loss first stopped being finite.

    Raises:
        NonFiniteLossError: always; the document, the token position (among the document's
            token ids, as ``--per-token`` counts them) and the loss there.
    """
    (row,) = score_batch(model, [win], 1)[1]
    offset, detail = next(
        (offset, detail) for offset, detail in enumerate(row) if not math.isfinite(detail.nats)
    )
    position = win.first_position + win.score_from + offset
    raise NonFiniteLossError(
        f"document {stream.names[index]}: the loss is {detail.nats} at token {position}: the "
        "model's weights or hidden states hold NaN or infinity there (later tokens not scored)"
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
            nll_squared=meter.nll_squared,
            unscored_bytes=count.unscored_bytes,
            unscored_words=count.unscored_words,
            truncated=count.cut,
            tally=tally,
        )
        for name, count, meter, tally in zip(
            stream.names, stream.counts, meters, stream.tallies, strict=True
        )
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


def _sum_over_ranks(
    tallies: list[Tally], positions: PositionMeter | None, group: ProcessGroup | None
) -> None:
    """Every rank's squared losses and per-position sums added up, in place."""
    squares = all_sum_floats([[tally.nll_squared] for tally in tallies], group)
    for tally, (squared,) in zip(tallies, squares, strict=True):
        tally.nll_squared = squared
    if positions is not None:
        nats, counts = all_sum_floats([positions.nats.tolist(), positions.tokens.tolist()], group)
        positions.nats = torch.tensor(nats, dtype=torch.float64)
        positions.tokens = torch.tensor(counts, dtype=torch.float64).long()


def _gather(
    meters: list[NLLMeter],
    tokens: list[TokenScore],
    per_token: bool,
    group: ProcessGroup | None,
) -> tuple[list[NLLMeter], list[TokenScore]]:
    """Every rank's per-document sums added up, and every rank's token scores in order."""
    sums = all_sum_floats(
        [
            [meter.nll_nats, meter.tokens, meter.correct, meter.nll_squared or 0.0]
            for meter in meters
        ],
        group,
    )
    meters = [
        NLLMeter(nll, int(count), correct=int(correct), nll_squared=squared)
        for nll, count, correct, squared in sums
    ]
    # Every rank was given the same per_token, so all take part in the gather or none does.
    if per_token:
        tokens = sorted(
            gather_lists(tokens, group), key=lambda token: (token.document, token.position)
        )
    return meters, tokens
