"""Run a comparison: every model's own evaluation, then the reference against each other
model, token by token where they share a tokenizer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import torch

from crossent.comparison.aligned import aligned_segments
from crossent.comparison.records import ComparisonResult, ModelsComparison, TokenDifference
from crossent.comparison.statistics import DEFAULT_BLOCK_BYTES, kl_summary, paired_bits_per_byte
from crossent.data import Text
from crossent.data.stream import DocumentStream, Indexed, Prefix, pad_windows, scored_tokens
from crossent.data.windows import check_window
from crossent.distributed import deal, gather_lists
from crossent.evaluation import (
    DEFAULT_WINDOW_CAP,
    EvaluationResult,
    Progress,
    TokenScore,
    evaluate,
    prefix_token,
)
from crossent.kernels import default_chunk_rows
from crossent.scoring import default_batch_size

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

    from crossent.models.protocol import CausalLM


def compare(
    model_a: CausalLM,
    model_b: CausalLM,
    documents: Sequence[Text],
    *,
    window: int | None = None,
    stride: int | None = None,
    prefix: Prefix | None = None,
    batch_size: int | None = None,
    largest: int = 10,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    progress: Progress | None = None,
    group: ProcessGroup | None = None,
) -> ComparisonResult:
    """Evaluate two models on the same documents, pair their bits per byte and, with a shared
    tokenizer, compare them token by token: :func:`compare_models` of the two.

    Args:
        model_a: the reference model (for a quantised model, the original).
        model_b: the model compared with it.
        documents: the texts, as for :func:`crossent.evaluation.evaluate`.
        window: input tokens per window, L, for both; default: each model its own context,
            at most 2048.
        stride: tokens between window starts, S in [1, L] (default L).
        prefix: token before each document (default BOS, else EOS, of each model).
        batch_size: windows per forward pass (default:
            :func:`crossent.scoring.default_batch_size`).
        largest: how many tokens with the largest change in loss, ``|nats_b - nats_a|``, to list.
        block_bytes: the block size when the difference is paired over byte blocks
            (:mod:`crossent.comparison.statistics`).
        progress: called as for :func:`crossent.evaluation.evaluate`, separately per pass.
        group: the process group to shard over when ``torch.distributed`` is initialised.

    Raises:
        ValueError: as :func:`compare_models` does.
    """
    return compare_models(
        [model_a, model_b], documents, window=window, stride=stride, prefix=prefix,
        batch_size=batch_size, largest=largest, block_bytes=block_bytes, progress=progress,
        group=group,
    ).pairs[0]  # fmt: skip


def compare_models(
    models: Sequence[CausalLM],
    documents: Sequence[Text],
    *,
    window: int | None = None,
    stride: int | None = None,
    prefix: Prefix | None = None,
    batch_size: int | None = None,
    largest: int = 10,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    progress: Progress | None = None,
    group: ProcessGroup | None = None,
) -> ModelsComparison:
    """Evaluate every model on the same documents; compare the first with each of the others.

    Each model is evaluated by :func:`crossent.evaluation.evaluate` with per-token details, in
    its own window (its context, at most 2048, unless ``window`` is given), so its numbers are
    exactly what ``crossent eval`` reports for it. For each other model, B's minus the first's
    bits per byte is paired (:func:`crossent.comparison.statistics.paired_bits_per_byte`);
    when the two tokenize every document to the same ids and have the same vocabulary, a
    further pass runs both on the same windows (the smaller of their windows and strides) and
    computes, at every scored position, ``KL(A || B)`` (nats) over the full vocabulary and the
    two top-1 tokens, a chunk of positions at a time, summarised as llama.cpp's
    ``--kl-divergence`` does (:func:`crossent.comparison.statistics.kl_summary`).

    Args:
        models: two or more models; the first is the reference.
        documents: the texts, as for :func:`crossent.evaluation.evaluate`.
        window, stride, prefix, batch_size, largest, block_bytes, progress, group: as for
            :func:`compare`.

    Raises:
        ValueError: fewer than two models, as :func:`crossent.evaluation.evaluate` does,
            ``largest`` or ``block_bytes`` below 1.
    """
    if len(models) < 2:
        raise ValueError(f"a comparison needs at least two models, got {len(models)}")
    if largest < 1:
        raise ValueError(f"largest must be at least 1, got {largest}")
    if block_bytes < 1:
        raise ValueError(f"block_bytes must be positive, got {block_bytes}")
    windows = [
        window if window is not None else min(model.context_length, DEFAULT_WINDOW_CAP)
        for model in models
    ]
    for model, own in zip(models, windows, strict=True):  # before any runs
        check_window(own, stride, context=model.context_length)
    results = [
        evaluate(
            model, documents, window=own, stride=stride, prefix=prefix, batch_size=batch_size,
            per_token=True, progress=progress, group=group,
        )
        for model, own in zip(models, windows, strict=True)
    ]  # fmt: skip
    reference, a = models[0], results[0]
    pairs = []
    for model, b in zip(models[1:], results[1:], strict=True):
        shared = _shared_tokenizer(reference, model, a, b)
        difference = paired_bits_per_byte(a, b, shared_tokenizer=shared, block_bytes=block_bytes)
        if not shared:
            segments = aligned_segments(a, b)
            ranked_segments = sorted(segments, key=lambda s: abs(s.nats_b - s.nats_a), reverse=True)
            pair = ComparisonResult(a, b, False, None, difference=difference)
            pairs.append(
                replace(pair, segments=segments, largest_segments=ranked_segments[:largest])
            )
            continue
        token_window = (min(a.window, b.window), min(a.stride, b.stride))
        differences = _differences(
            reference, model, documents, a, token_window, batch_size, progress, group
        )
        ranked = sorted(differences, key=lambda d: abs(d.nats_b - d.nats_a), reverse=True)
        summary = kl_summary(differences)
        pair = ComparisonResult(a, b, True, summary, ranked[:largest], differences, difference)
        pairs.append(replace(pair, token_window=token_window))
    return ModelsComparison(results, pairs)


def _shared_tokenizer(
    model_a: CausalLM, model_b: CausalLM, a: EvaluationResult, b: EvaluationResult
) -> bool:
    """Whether the two models scored the same token ids after the same prefix id."""
    if model_a.vocab_size != model_b.vocab_size or a.prefix != b.prefix:
        return False
    if prefix_token(model_a, a.prefix)[1] != prefix_token(model_b, b.prefix)[1]:
        return False
    return [(t.document, t.position, t.token_id) for t in a.tokens] == [
        (t.document, t.position, t.token_id) for t in b.tokens
    ]


def _differences(
    model_a: CausalLM,
    model_b: CausalLM,
    documents: Sequence[Text],
    a: EvaluationResult,
    token_window: tuple[int, int],
    batch_size: int | None,
    progress: Progress | None,
    group: ProcessGroup | None,
) -> list[TokenDifference]:
    """Both models on the same windows: per scored token, both losses, the KL and top-1s."""
    _, prefix_id = prefix_token(model_a, a.prefix)
    window, stride = token_window
    if batch_size is None:
        batch_size = default_batch_size(model_a.device, window)
    stream = DocumentStream(model_a.tokenizer, documents, prefix_id, window, stride, offsets=False)
    texts = {(t.document, t.position): t for t in a.tokens}
    differences: list[TokenDifference] = []
    scored = 0
    with torch.no_grad():
        for batch, mine in deal(stream.batches(batch_size), group):
            if mine:
                differences += _batch_differences(model_a, model_b, batch, texts)
            scored += scored_tokens(batch)
            if progress is not None:
                progress(scored, stream.estimated_tokens())
    return sorted(gather_lists(differences, group), key=lambda d: (d.document, d.position))


def _batch_differences(
    model_a: CausalLM,
    model_b: CausalLM,
    batch: list[Indexed],
    texts: dict[tuple[int, int], TokenScore],
) -> list[TokenDifference]:
    """The :class:`TokenDifference` of every token one batch of windows scores, in order."""
    inputs, targets = pad_windows([win for _, win in batch], model_a.device)
    hidden_a = model_a.hidden_states(inputs)  # (B, T, d_a)
    hidden_b = model_b.hidden_states(inputs.to(model_b.device))  # (B, T, d_b)
    mask = targets != -100  # (B, T)
    rows = _compare_rows(
        hidden_a[mask], model_a, hidden_b[mask.to(hidden_b.device)], model_b, targets[mask]
    )
    positions = [
        (index, win.first_position + j)
        for index, win in batch
        for j in range(win.score_from, len(win.targets))
    ]
    differences = []
    for (index, position), (nats_a, nats_b, kl, top_a, top_b) in zip(positions, rows, strict=True):
        token = texts[(index, position)]
        differences.append(
            TokenDifference(
                index, position, token.token_id, token.text, nats_a, nats_b, kl, top_a, top_b
            )
        )
    return differences


def _compare_rows(
    hidden_a: torch.Tensor,
    model_a: CausalLM,
    hidden_b: torch.Tensor,
    model_b: CausalLM,
    target: torch.Tensor,
) -> list[tuple[float, float, float, int, int]]:
    """(nats A, nats B, KL(A || B), top-1 A, top-1 B) per row; ``hidden_*`` are (M, d)."""
    # As the fused loss: about 64 MiB of float32 logits per model and chunk.
    rows = default_chunk_rows(model_a.vocab_size)
    out: list[tuple[float, float, float, int, int]] = []
    for start in range(0, hidden_a.shape[0], rows):
        chunk = slice(start, start + rows)
        log_a = torch.log_softmax(
            torch.nn.functional.linear(hidden_a[chunk], model_a.head_weight, model_a.head_bias)
            .float(), dim=-1
        )  # fmt: skip
        log_b = torch.log_softmax(
            torch.nn.functional.linear(hidden_b[chunk], model_b.head_weight, model_b.head_bias)
            .float().to(log_a.device), dim=-1
        )  # fmt: skip
        # KL(A || B) = sum_v p_A(v) (ln p_A(v) - ln p_B(v)); xlogy-style, 0 where p_A is 0.
        kl = torch.where(log_a.isneginf(), 0.0, log_a.exp() * (log_a - log_b)).sum(dim=-1)
        index = target[chunk, None].to(log_a.device)
        nats_a = -log_a.gather(1, index)[:, 0]
        nats_b = -log_b.gather(1, index)[:, 0]
        out.extend(
            zip(
                nats_a.tolist(),
                nats_b.tolist(),
                kl.clamp_min(0).tolist(),
                log_a.argmax(dim=-1).tolist(),
                log_b.argmax(dim=-1).tolist(),
                strict=True,
            )
        )
    return out
