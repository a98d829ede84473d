"""One batch of windows through a model's trunk and LM head: the sums and per-token details.

Evaluation's inner step, kept apart from its bookkeeping. Nothing is computed that no result
needs:

* **no padding**: the windows of a batch that have the same length (all of them, for a long
  document) go through the trunk together as one ``(rows, T)`` input, and each other length
  through a pass of its own, so no position is padding; a causal model's hidden states at a
  position do not depend on what follows, so this equals one window at a time up to float
  rounding (tests/test_evaluation.py checks 1e-6 in float32);
* **only scored positions reach the head**: the hidden states of the positions a window
  scores (its last ``S`` of ``L``, or all of them) are gathered into one ``(M, d)`` matrix and go
  through :func:`crossent.linear_cross_entropy_with_stats` on the model's own head (no
  ``[tokens, V]`` logits held);
* **one copy to the host per batch**: the per-window sums are added up on the device and read
  back together.

When asked, the rank and top-k of each scored token are made a chunk of rows at a time, and
the calibration sums (:func:`calibration_sums`) are gathered from each chunk of logits while the
fused pass holds it.
:func:`compiled_trunk` is the trunk through ``torch.compile`` (``crossent eval --compile``), and
:func:`default_batch_size` the windows per pass when the caller does not say.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from crossent.calibration import TEMPERATURES, UNIT, CalibrationMeter
from crossent.data import Window
from crossent.data.tokens import ByteTokenizer, show_bytes
from crossent.kernels import ChunkLoss, default_chunk_rows
from crossent.losses.linear import linear_cross_entropy_with_stats

if TYPE_CHECKING:
    from crossent.models.protocol import CausalLM, Tokenizer

# What turns input ids (B, T) into final hidden states (B, T, d): a model's hidden_states.
Trunk = Callable[[torch.Tensor], torch.Tensor]

# Tokens per forward pass on a CPU. Measured on SmolLM2-135M (2-core AMD EPYC, fp32, windows
# interleaved in one process): a pass of 512 tokens ran 1.66-1.74 ms a token, 2048 tokens
# 1.88-2.2 and 8192 (four windows of 2048) 12 % slower than one window at a time; below 256 the
# per-operation overhead wins again (128 tokens: 2.6 ms). A layer's activations of a pass this
# size stay in cache from one operation to the next. bf16 was level (within 4 %) either way.
CPU_PASS_TOKENS = 512
# Windows per pass on a GPU, which wants large passes: the default from before the CPU was
# measured (no GPU has been measured).
GPU_BATCH_WINDOWS = 4


def default_batch_size(device: torch.device, window: int) -> int:
    """Full windows per forward pass when none is given: on a CPU as many as fit in
    :data:`CPU_PASS_TOKENS` tokens (at least one), elsewhere :data:`GPU_BATCH_WINDOWS`."""
    if device.type == "cpu":
        return max(1, CPU_PASS_TOKENS // window)
    return GPU_BATCH_WINDOWS


@dataclass(frozen=True, slots=True)
class TokenDetail:
    """One scored token: its id, ``-ln p`` in nats, rank, and the top-k ids and probabilities."""

    token_id: int
    nats: float
    rank: int
    top_ids: tuple[int, ...]
    top_probs: tuple[float, ...]


def score_batch(
    model: CausalLM,
    windows: Sequence[Window],
    top_k: int,
    by_position: PositionMeter | None = None,
    trunk: Trunk | None = None,
    calibration: CalibrationMeter | None = None,
) -> tuple[list[tuple[float, int, int, float]], list[list[TokenDetail]]]:
    """Per window of one batch: (summed nats, scored tokens, correct top-1, summed squared
    nats), and with ``top_k`` > 0 the details of each scored token. ``by_position``, given, is
    added each scored token's nats at its position in its window. ``trunk`` replaces
    ``model.hidden_states`` (a compiled one, :func:`compiled_trunk`); it must compute the same.
    ``calibration``, given, is added each scored token's sums (:func:`calibration_sums`).

    Windows of equal length go through the trunk together, so no padding is computed; only the
    scored positions' hidden states go through the head (the module docstring).
    """
    hidden, targets, where = _scored_hidden(model, windows, trunk or model.hidden_states)
    stats = linear_cross_entropy_with_stats(
        hidden, model.head_weight, targets, model.head_bias, reduction="sum",
        on_chunk=None if calibration is None else _observer(calibration),
    )  # fmt: skip
    token_loss = stats.token_loss.double()  # (M,): every row is a scored token
    counts = [len(win.targets) - win.score_from for win in windows]
    owner = where.row.to(token_loss.device)
    sums = torch.zeros(3, len(windows), dtype=torch.float64, device=token_loss.device)
    sums[0].index_add_(0, owner, token_loss)
    sums[1].index_add_(0, owner, stats.correct.double())
    sums[2].index_add_(0, owner, token_loss.square())
    nats, correct, squares = sums.tolist()  # one copy to the host for the whole batch
    if by_position is not None:
        position = where.position.to(token_loss.device)
        at = torch.zeros(by_position.window, dtype=torch.float64, device=token_loss.device)
        by_position.add(
            at.index_add(0, position, token_loss),
            torch.bincount(position, minlength=by_position.window),
        )
    rows = [
        (nats[row], counts[row], round(correct[row]), squares[row]) for row in range(len(windows))
    ]
    if top_k == 0:
        return rows, []
    return rows, _details(model, hidden, targets, token_loss, counts, top_k)


@dataclass(frozen=True, slots=True)
class _Where:
    """For each scored row of a batch: its window's index in the batch and its position in it."""

    row: torch.Tensor  # (M,) int64
    position: torch.Tensor  # (M,) int64


def _scored_hidden(
    model: CausalLM, windows: Sequence[Window], trunk: Trunk
) -> tuple[torch.Tensor, torch.Tensor, _Where]:
    """The final hidden states ``(M, d)`` and targets ``(M,)`` of the scored positions of the
    windows, window after window, each window's in order; the trunk sees each length once."""
    by_length: dict[int, list[int]] = {}
    for row, win in enumerate(windows):
        if win.score_from < len(win.targets):  # a window that scores nothing needs no pass
            by_length.setdefault(len(win.tokens), []).append(row)
    pieces: dict[int, torch.Tensor] = {}
    for rows in by_length.values():
        inputs = torch.tensor([windows[row].tokens for row in rows], dtype=torch.long)
        hidden = trunk(inputs.to(model.device))  # (rows, T, d)
        for at, row in enumerate(rows):
            pieces[row] = hidden[at, windows[row].score_from :]  # (scored, d)
    empty = model.head_weight.new_zeros(0, model.head_weight.shape[1])
    flat = torch.cat([pieces[row] for row in sorted(pieces)]) if pieces else empty  # (M, d)
    targets = [token for win in windows for token in win.targets[win.score_from :]]
    owner = [
        row for row, win in enumerate(windows) for _ in range(win.score_from, len(win.targets))
    ]
    positions = [i for win in windows for i in range(win.score_from, len(win.targets))]
    where = _Where(torch.tensor(owner, dtype=torch.long), torch.tensor(positions, dtype=torch.long))
    return flat, torch.tensor(targets, dtype=torch.long).to(model.device), where


def _details(
    model: CausalLM,
    hidden: torch.Tensor,
    targets: torch.Tensor,
    token_loss: torch.Tensor,
    counts: list[int],
    top_k: int,
) -> list[list[TokenDetail]]:
    """The :class:`TokenDetail` of every scored row, split into the windows' rows."""
    rank, top_ids, top_probs = ranks_and_top(
        hidden, model.head_weight, model.head_bias, targets, top_k
    )
    nats = token_loss.tolist()
    ids, ranks = targets.tolist(), rank.tolist()
    top_id_rows, top_prob_rows = top_ids.tolist(), top_probs.tolist()
    details: list[list[TokenDetail]] = []
    flat = 0
    for count in counts:
        details.append(
            [
                TokenDetail(
                    ids[i], nats[i], ranks[i], tuple(top_id_rows[i]), tuple(top_prob_rows[i])
                )
                for i in range(flat, flat + count)
            ]
        )
        flat += count
    return details


def compiled_trunk(model: CausalLM) -> Trunk:
    """``model.hidden_states`` through ``torch.compile`` (Inductor), for :func:`score_batch`.

    The first call of each new input shape compiles (minutes for SmolLM2-135M on a 2-core CPU;
    a second shape recompiles once with a dynamic batch and length, which later shapes reuse),
    so it pays only on long texts: ``benchmarks/eval_floor.py`` measures the compile time and the
    length at which compiling plus scoring beats eager scoring. The numbers equal eager's to
    float32 rounding (fused element-wise kernels round in another order).
    """
    compiled: Trunk = torch.compile(model.hidden_states)
    return compiled


def ranks_and_top(
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


# Elements of the [rows, temperatures, V] exponentials per block of a chunk: 32 MiB of float32,
# large enough that the block's few passes, each a parallel region, are not spent in barriers.
CALIBRATION_BLOCK = 1 << 23


def _observer(meter: CalibrationMeter) -> Callable[[torch.Tensor, torch.Tensor, ChunkLoss], None]:
    def observe(logits: torch.Tensor, target: torch.Tensor, terms: ChunkLoss) -> None:
        calibration_sums(logits, target, terms.correct, meter)

    return observe


def calibration_sums(
    logits: torch.Tensor, target: torch.Tensor, correct: torch.Tensor, meter: CalibrationMeter
) -> None:
    """Add a chunk of scored tokens to ``meter``: confidence, entropy, and at every temperature
    of :data:`crossent.calibration.TEMPERATURES` the cross-entropy and its derivatives.

    Shapes: ``logits`` (r, V) raw, any float dtype; ``target`` (r,) ids; ``correct`` (r,) bool.
    With ``s`` the logits minus their row maximum and ``w = exp(beta * s)``, the row sums
    ``S_j = sum_v w_v s_v ** j`` for ``j = 0, 1, 2`` at every ``beta = 1 / T`` give
    ``CE = log S_0 - beta s_t``, ``CE' = S_1 / S_0 - s_t`` and ``CE'' = S_2 / S_0 - (S_1 /
    S_0) ** 2`` (:mod:`crossent.calibration.temperature`); at ``beta = 1`` they also give the
    confidence ``1 / S_0`` and the entropy ``log S_0 - S_1 / S_0``. The exponentials are made in
    float32 a block of rows at a time (:data:`CALIBRATION_BLOCK`, one buffer reused), in place,
    and summed by PyTorch's pairwise sums (a matrix product's float32 accumulation over V terms
    loses about 1e-5); the sums are then carried in float64.
    """
    rows, vocab = logits.shape
    count = len(TEMPERATURES)
    betas = torch.tensor([1 / t for t in TEMPERATURES], dtype=torch.float32, device=logits.device)
    block = max(1, min(rows, CALIBRATION_BLOCK // (count * vocab)))
    buffer = torch.empty(block, count, vocab, dtype=torch.float32, device=logits.device)
    for start in range(0, rows, block):
        z = logits[start : start + block].float()  # (b, V)
        shifted = (z - z.max(dim=1, keepdim=True).values)[:, None, :]  # (b, 1, V), <= 0
        at_target = shifted[:, 0].gather(1, target[start : start + block, None]).double()
        weights = buffer[: z.shape[0]]  # (b, K, V)
        torch.mul(shifted, betas[None, :, None], out=weights).exp_()
        total = weights.sum(dim=2).double()  # (b, K)
        first = weights.mul_(shifted).sum(dim=2).double()
        second = weights.mul_(shifted).sum(dim=2).double()
        log_total, mean = total.log(), first / total
        grid = torch.stack(
            (
                log_total - betas.double() * at_target,
                mean - at_target,
                (second / total - mean.square()).clamp_min(0.0),
            ),
            dim=2,
        )
        meter.add(
            1 / total[:, UNIT],
            correct[start : start + block],
            log_total[:, UNIT] - mean[:, UNIT],
            grid,
        )


class TokenTexts:
    """Token id to the text :attr:`crossent.TokenScore.top_texts` shows, remembered: the same
    few thousand ids recur among the top-k.

    A token whose bytes the tokenizer knows is shown by them (a byte of an emoji as ``<0xF0>``
    rather than decoded to U+FFFD), others by their decoded text.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.texts: dict[int, str] = {}

    def __call__(self, token: int) -> str:
        text = self.texts.get(token)
        if text is None:
            text = self.texts[token] = self._show(token)
        return text

    def _show(self, token: int) -> str:
        if isinstance(self.tokenizer, ByteTokenizer):
            [data] = self.tokenizer.token_bytes([token])
            if data is not None:
                return show_bytes(data)
        return self.tokenizer.decode([token])


class PositionMeter:
    """Summed nats and token counts at each position of the window: memory ``O(L)``, whatever
    the number of tokens.

    Position ``i`` is the input position whose logits score the target, so a token scored there
    was predicted from ``i + 1`` tokens of its window (the prefix token included). Buckets
    (:meth:`buckets`) are powers of two of that context: 1, 2-3, 4-7, 8-15, ..., so each bucket
    doubles the context of the one before, and the model's gain from longer context reads off
    evenly at any window length.

    Args:
        window: ``L``, the most positions a window has.
    """

    def __init__(self, window: int) -> None:
        self.nats = torch.zeros(window, dtype=torch.float64)
        self.tokens = torch.zeros(window, dtype=torch.int64)

    @property
    def window(self) -> int:
        """``L``, the positions counted."""
        return int(self.nats.shape[0])

    def add(self, nats: torch.Tensor, tokens: torch.Tensor) -> None:
        """Add a batch's summed nats ``(T,)`` and scored counts ``(T,)`` per position."""
        length = nats.shape[0]
        self.nats[:length] += nats.detach().double().cpu()
        self.tokens[:length] += tokens.detach().long().cpu()

    def buckets(self) -> list[PositionBucket]:
        """The non-empty buckets, shortest context first (the class docstring)."""
        out = []
        low = 1
        window = self.nats.shape[0]
        while low <= window:
            high = min(2 * low - 1, window)  # contexts low .. high: positions low-1 .. high-1
            count = int(self.tokens[low - 1 : high].sum())
            if count:
                nats = float(self.nats[low - 1 : high].sum())
                out.append(PositionBucket(low, high, count, nats))
            low *= 2
        return out


@dataclass(frozen=True)
class PositionBucket:
    """The tokens scored with a context of ``first`` to ``last`` tokens of their window.

    Attributes:
        first: the shortest context in the bucket, in tokens (1 is the first position).
        last: the longest.
        tokens: how many tokens were scored there.
        nll_nats: their summed negative log-likelihood, in nats.
    """

    first: int
    last: int
    tokens: int
    nll_nats: float

    @property
    def nats_per_token(self) -> float:
        """The bucket's mean loss, in nats."""
        return self.nll_nats / self.tokens

    def to_dict(self) -> dict[str, float | int]:
        """The JSON shape of one bucket of ``crossent eval --by-position``."""
        return {
            "first": self.first,
            "last": self.last,
            "tokens": self.tokens,
            "nll_nats": self.nll_nats,
            "nats_per_token": self.nats_per_token,
            "bits_per_token": self.nats_per_token / math.log(2.0),
        }
