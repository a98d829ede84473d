"""Compare two causal language models on the same texts.

Bits per byte is the headline: it divides by the text's bytes, not by tokens, so it is comparable
across tokenizers where token perplexity is not. When the two models share a tokenizer, every
token is also compared position by position, as llama.cpp's perplexity tool does for a quantised
model against its original: the KL divergence, whether the two agree on the top-1 token, and the
tokens whose loss changed most.

One name, one direction and one unit for every per-token number, in the terminal, the JSON and
the page: A is the reference (for a quantised model, the original), and the divergence is
``KL(A || B) = sum_v p_A(v) ln(p_A(v) / p_B(v))`` over the whole vocabulary at each position,
llama.cpp's direction: the expected extra surprise, under A's distribution, of predicting with B's.
It and each token's loss (``-ln p``) and change in loss (B's minus A's) are in nats, as every
crossent loss is and as llama.cpp reports its KL statistics; only the per-byte headline is in
bits (bits per byte).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

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

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

    from crossent.models.protocol import CausalLM

# How every per-token number of a comparison is named and measured (see the module docstring).
KL_NAME = "KL(A || B)"
KL_FORMULA = "KL(A || B) = sum_v p_A(v) ln(p_A(v) / p_B(v))"
TOKEN_UNIT = "nats"

PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p99.9": 99.9, "max": 100.0}


@dataclass(frozen=True, slots=True)
class TokenDifference:
    """One token scored by both models (shared tokenizer only).

    Attributes:
        document: index of the document.
        position: index of the token among the document's token ids.
        token_id: the token's id.
        text: the token's text, as in :class:`crossent.evaluation.TokenScore`.
        nats_a: ``-ln p_A(token)``, nats.
        nats_b: ``-ln p_B(token)``, nats.
        kl: ``KL(A || B)`` of the two next-token distributions at this position, nats.
        top_a: A's most likely token id.
        top_b: B's most likely token id.
    """

    document: int
    position: int
    token_id: int
    text: str
    nats_a: float
    nats_b: float
    kl: float
    top_a: int
    top_b: int


@dataclass(frozen=True)
class KLSummary:
    """The distribution of per-token ``KL(A || B)`` over every scored token, in nats.

    Attributes:
        tokens: number of tokens compared.
        mean: mean KL divergence.
        percentiles: KL at the 50th, 90th, 95th, 99th and 99.9th percentile and the maximum,
            keyed ``"p50"``, ``"p90"``, ``"p95"``, ``"p99"``, ``"p99.9"``, ``"max"``.
        top1_agreement: fraction of tokens where both models' most likely token is the same.
    """

    tokens: int
    mean: float
    percentiles: dict[str, float]
    top1_agreement: float


@dataclass(frozen=True)
class ComparisonResult:
    """What :func:`compare` measured.

    Attributes:
        a: model A's evaluation, with per-token details.
        b: model B's evaluation, with per-token details.
        shared_tokenizer: whether both models tokenized every document to the same ids (then
            ``kl`` and ``largest`` are filled in).
        kl: the per-token KL divergence summary, or None without a shared tokenizer.
        largest: the tokens with the largest ``|nats_b - nats_a|``, largest first.
        differences: every compared token, in document order (shared tokenizer only).
    """

    a: EvaluationResult
    b: EvaluationResult
    shared_tokenizer: bool
    kl: KLSummary | None
    largest: list[TokenDifference] = field(default_factory=list)
    differences: list[TokenDifference] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``crossent compare --json`` (every difference left out).

        ``kl_name`` and ``token_unit`` say what ``kl``, ``largest[].kl``, ``largest[].nats_a``
        and ``largest[].nats_b`` are: ``"KL(A || B)"`` and ``"nats"``.
        """
        return {
            "a": self.a.to_dict(),
            "b": self.b.to_dict(),
            "shared_tokenizer": self.shared_tokenizer,
            "kl_name": KL_NAME,
            "token_unit": TOKEN_UNIT,
            "kl": None if self.kl is None else asdict(self.kl),
            "largest": [asdict(difference) for difference in self.largest],
        }


def compare(
    model_a: CausalLM,
    model_b: CausalLM,
    documents: Sequence[Text],
    *,
    window: int | None = None,
    stride: int | None = None,
    prefix: Prefix | None = None,
    batch_size: int = 4,
    largest: int = 10,
    progress: Progress | None = None,
    group: ProcessGroup | None = None,
) -> ComparisonResult:
    """Evaluate two models on the same documents and, with a shared tokenizer, compare them
    token by token.

    Each model is evaluated by :func:`crossent.evaluation.evaluate` with per-token details (so
    its numbers are exactly what ``crossent eval`` reports). When both tokenize every document
    to the same ids and have the same vocabulary, a further pass runs both models on the same
    windows and computes, at every scored position, ``KL(A || B)`` (nats) over the full vocabulary
    and the two top-1 tokens, a chunk of positions at a time.

    Args:
        model_a: the reference model (for a quantised model, the original).
        model_b: the model compared with it.
        documents: the texts, as for :func:`crossent.evaluation.evaluate`.
        window: input tokens per window, L; default: the smaller model context, at most 2048.
        stride: tokens between window starts, S in [1, L] (default L).
        prefix: token before each document (default BOS, else EOS, of model A).
        batch_size: windows per forward pass.
        largest: how many tokens with the largest change in loss, ``|nats_b - nats_a|``, to list.
        progress: called as for :func:`crossent.evaluation.evaluate`, separately per pass.
        group: the process group to shard over when ``torch.distributed`` is initialised.

    Raises:
        ValueError: as :func:`crossent.evaluation.evaluate` does, or ``largest`` below 1.
    """
    if largest < 1:
        raise ValueError(f"largest must be at least 1, got {largest}")
    if window is None:
        window = min(model_a.context_length, model_b.context_length, DEFAULT_WINDOW_CAP)
    for model in (model_a, model_b):  # before either runs, not once A's whole pass is done
        check_window(window, stride, context=model.context_length)
    a, b = (
        evaluate(
            model,
            documents,
            window=window,
            stride=stride,
            prefix=prefix,
            batch_size=batch_size,
            per_token=True,
            progress=progress,
            group=group,
        )
        for model in (model_a, model_b)
    )
    if not _shared_tokenizer(model_a, model_b, a, b):
        return ComparisonResult(a, b, shared_tokenizer=False, kl=None)
    differences = _differences(model_a, model_b, documents, a, batch_size, progress, group)
    kl = torch.tensor([difference.kl for difference in differences], dtype=torch.float64)
    agreement = sum(difference.top_a == difference.top_b for difference in differences)
    summary = KLSummary(
        tokens=len(differences),
        mean=kl.mean().item(),
        percentiles={
            name: float(value)
            for name, value in zip(
                PERCENTILES, np.percentile(kl.numpy(), list(PERCENTILES.values())), strict=True
            )
        },
        top1_agreement=agreement / len(differences),
    )
    ranked = sorted(differences, key=lambda d: abs(d.nats_b - d.nats_a), reverse=True)
    return ComparisonResult(a, b, True, summary, ranked[:largest], differences)


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
    batch_size: int,
    progress: Progress | None,
    group: ProcessGroup | None,
) -> list[TokenDifference]:
    """Both models on the same windows: per scored token, both losses, the KL and top-1s."""
    _, prefix_id = prefix_token(model_a, a.prefix)
    stream = DocumentStream(
        model_a.tokenizer, documents, prefix_id, a.window, a.stride, offsets=False
    )
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
