"""The PyTorch arithmetic of a chunk of cross-entropy rows: the CPU path and the reference backend.

For ``[r, V]`` logits this turns the rows into their loss terms (forward) and, when asked,
overwrites them in place with the gradient of the loss (backward), block by block so that the
fp32 temporaries stay in cache. It handles every case the losses support: class-index and
probability targets, class weights, label smoothing, z-loss and soft-capping; the Triton kernel
(:mod:`crossent.kernels.triton_rows`) covers only the unweighted class-index case. The
conventions are those of :mod:`crossent.losses.cross_entropy`.

The loss of a row is ``-sum_c a_c * log p_c`` for a target mass ``a``: for a class-index target
``a = (1 - eps) * w_y * onehot(y) + eps / V * w`` (never materialised), for a probability target
``a = w * ((1 - eps) * q + eps / V)``. Its gradient in the logits is ``p * sum(a) - a``, and
z-loss adds ``2 * z_loss * lse * p``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from crossent.kernels import chunks
from crossent.kernels.options import ChunkLoss, LossOptions, RowUpstream, compute_dtype


def torch_rows(
    logits: Tensor,
    target: Tensor,
    options: LossOptions,
    weight: Tensor | None = None,
    upstream: RowUpstream | None = None,
) -> ChunkLoss:
    """Loss terms of ``[r, V]`` raw logits against ``[r]`` class ids or ``[r, V]`` probabilities.

    With ``upstream``, ``logits`` is overwritten in place by its gradient (in its own dtype).
    ``weight`` is ``[V]`` class weights or None.
    """
    num_rows, num_classes = logits.shape
    dtype = compute_dtype(logits.dtype)
    soft = torch.is_floating_point(target)
    class_weight = weight.to(dtype) if weight is not None else None
    ce = torch.empty(num_rows, dtype=dtype, device=logits.device)
    lse = torch.empty_like(ce)
    correct = torch.empty(num_rows, dtype=torch.bool, device=logits.device)
    fast = (
        upstream is not None
        and logits.dtype != torch.float64
        and not soft
        and weight is None
        and not options.label_smoothing
        and options.softcap is None
    )
    for block in chunks.row_chunks(num_rows, num_classes, chunks.LOGITS_PER_CACHE_BLOCK):
        if fast:
            assert upstream is not None
            terms = _softmax_grad_(logits[block], target[block], options, upstream, block)
            ce[block], lse[block], correct[block] = terms.ce, terms.lse, terms.correct
            continue
        z = capped(logits[block], options, dtype)
        block_target = target[block]
        terms, log_probs = _row_terms(z, block_target, class_weight, options, dtype)
        ce[block], lse[block], correct[block] = terms.ce, terms.lse, terms.correct
        if upstream is None:
            continue
        # The softmax goes straight into the logits when they are in the compute dtype (z, read
        # no more unless soft-capped, when it is a tensor of its own): no pass to copy it back.
        in_place = logits.dtype == dtype
        probs = torch.exp(log_probs, out=logits[block]) if in_place else log_probs.exp_()
        grad_ce_block = upstream.ce[block].to(dtype)
        # d(z_loss * lse^2)/dz = 2 * z_loss * lse * softmax(z)
        grad_softmax = 2 * options.z_loss * terms.lse * upstream.z[block].to(dtype)
        if not soft:
            scored = block_target != options.ignore_index
            grad_ce_block = grad_ce_block.where(scored, 0.0)
            grad_softmax = grad_softmax.where(scored, 0.0)
        _logit_grad_(probs, z, block_target, class_weight, options, grad_ce_block, grad_softmax)
        if not in_place:
            logits[block] = probs
    return ChunkLoss(ce, lse, correct)


def _softmax_grad_(
    logits: Tensor, target: Tensor, options: LossOptions, upstream: RowUpstream, block: slice
) -> ChunkLoss:
    """The loss terms of ``[r, V]`` logits (fp32, bf16 or fp16), overwritten by their gradient.

    The training case of a fused head (class targets, no smoothing, soft-cap or class weights)
    in fewer passes over the block than the general path, which keeps a log-softmax besides the
    softmax: here one softmax (in place for fp32 on a CPU, so no block-sized temporary; into an
    fp32 block for bf16/fp16), one scaling pass, and for bf16/fp16 one rounding back. The loss
    needs no log-softmax: the softmax at the row's maximum is ``1 / sum(exp(z - z_max))``, so
    ``log_norm = -log p_max`` and ``ce = (z_max - z_y) + log_norm``, the digits near the maximum
    kept as the log-softmax keeps them.
    """
    top_logit, top1 = logits.max(dim=-1)
    scored = target != options.ignore_index
    safe = target.masked_fill(~scored, 0)[:, None]
    top = top_logit.float()
    gap = torch.where(scored, top - logits.gather(-1, safe).squeeze(-1).float(), 0.0)
    if logits.dtype == torch.float32 and logits.device.type == "cpu":
        probs = torch.softmax(logits, dim=-1, out=logits)  # (r, V), row by row: safe in place
    else:
        probs = torch.softmax(logits, dim=-1, dtype=torch.float32)  # (r, V)
    log_norm = -probs.gather(-1, top1[:, None]).squeeze(-1).log()
    lse = top + log_norm
    grad_ce = upstream.ce[block].float().where(scored, 0.0)
    # d(z_loss * lse^2)/dz = 2 * z_loss * lse * softmax(z)
    grad_softmax = (2 * options.z_loss * lse * upstream.z[block].float()).where(scored, 0.0)
    row_scale = (grad_ce + grad_softmax)[:, None]
    at_target = probs.gather(-1, safe) * row_scale - grad_ce[:, None]  # (r, 1)
    probs.mul_(row_scale).scatter_(-1, safe, at_target)
    if probs is not logits:
        logits.copy_(probs)  # one rounding to the logits' dtype
    return ChunkLoss(torch.where(scored, gap + log_norm, 0.0), lse, (top1 == target) & scored)


def probability_target_grad(
    logits: Tensor, weight: Tensor | None, options: LossOptions, grad_ce: Tensor
) -> Tensor:
    """Gradient ``[r, V]`` of each row's loss in its probability target, in the compute dtype.

    ``d/dq_c`` of ``-sum_c w_c ((1 - eps) q_c + eps / V) log p_c`` for ``[r, V]`` raw logits,
    scaled by ``grad_ce`` (``[r]``, compute dtype); ``weight`` is ``[V]`` or None. Probability
    targets exist only on the PyTorch path, so this has no other backend.
    """
    dtype = compute_dtype(logits.dtype)
    class_weight = weight.to(dtype) if weight is not None else None
    factor = (1 - options.label_smoothing) * (class_weight if class_weight is not None else 1.0)
    log_probs = torch.log_softmax(capped(logits, options, dtype), dim=-1, dtype=dtype)
    return -grad_ce[:, None] * factor * log_probs


def capped(logits: Tensor, options: LossOptions, dtype: torch.dtype) -> Tensor:
    """The logits the loss sees: soft-capped in the compute dtype, else as given.

    Uncapped logits keep their dtype; the softmax kernels upcast them on the fly.
    """
    if options.softcap is None:
        return logits
    return torch.tanh(logits.to(dtype) / options.softcap) * options.softcap


def _soft_target_mass(target: Tensor, weight: Tensor | None, label_smoothing: float) -> Tensor:
    """``a`` for probability targets: smoothed towards uniform, then weighted per class."""
    num_classes = target.shape[-1]
    mass = target * (1 - label_smoothing) + label_smoothing / num_classes
    return mass * weight if weight is not None else mass


def _row_terms(
    logits: Tensor,
    target: Tensor,
    weight: Tensor | None,
    options: LossOptions,
    dtype: torch.dtype,
) -> tuple[ChunkLoss, Tensor]:
    """Loss terms of ``[r, V]`` (already soft-capped) logits, and their log-softmax.

    PyTorch's fused ``log_softmax`` does the heavy pass: it shifts by the row maximum, so the
    log-probabilities near the maximum, which decide the loss, keep every digit even for logits of
    size 1e4 (``logsumexp(z) - z_y`` would not). The caller makes the softmax from the
    log-softmax (one exponential).
    """
    num_classes = logits.shape[-1]
    eps = options.label_smoothing
    log_probs = torch.log_softmax(logits, dim=-1, dtype=dtype)
    top_logit, top1 = logits.max(dim=-1)
    # logsumexp = z_max - log p_max: exact, and finite whenever the row is.
    lse = top_logit.to(dtype) - log_probs.gather(-1, top1[:, None]).squeeze(-1)
    if torch.is_floating_point(target):
        mass = _soft_target_mass(target.to(dtype), weight, eps)
        # 0 * log 0 must be 0: a masked class the target gives no mass to.
        ce = -torch.where(mass == 0, 0.0, mass * log_probs).sum(-1)
        return ChunkLoss(ce, lse, top1 == target.argmax(dim=-1)), log_probs

    scored = target != options.ignore_index
    safe = target.masked_fill(~scored, 0)
    ce = -log_probs.gather(-1, safe[:, None]).squeeze(-1)
    if weight is not None:
        ce = ce * weight[safe]
    if eps:
        weighted = (
            log_probs if weight is None else torch.where(weight == 0, 0.0, log_probs * weight)
        )
        ce = (1 - eps) * ce - eps / num_classes * weighted.sum(-1)
    return ChunkLoss(torch.where(scored, ce, 0.0), lse, (top1 == target) & scored), log_probs


def _logit_grad_(
    probs: Tensor,
    logits: Tensor,
    target: Tensor,
    weight: Tensor | None,
    options: LossOptions,
    grad_ce: Tensor,
    grad_softmax: Tensor,
) -> Tensor:
    """Turn ``probs = softmax(logits)`` (``[r, V]``, compute dtype) into the logits' gradient.

    Works in place and returns ``probs``. ``grad_ce`` is the ``[r]`` upstream gradient of each
    row's cross-entropy, already 0 for ignored rows; ``grad_softmax`` is the ``[r]`` extra
    multiple of the softmax (z-loss's ``2 * z_loss * lse`` times its upstream gradient).
    ``logits`` (soft-capped) is only read for the soft-cap's chain rule.
    """
    num_classes = probs.shape[-1]
    eps = options.label_smoothing
    g = grad_ce[:, None]
    if torch.is_floating_point(target):
        mass = _soft_target_mass(target.to(probs.dtype), weight, eps)
        probs.mul_(g * mass.sum(-1, keepdim=True) + grad_softmax[:, None])
        probs.sub_(g * mass)
    else:
        safe = target.masked_fill(target == options.ignore_index, 0)
        w_target = weight[safe][:, None] if weight is not None else 1.0
        total_weight = weight.sum() if weight is not None else num_classes
        # Each row's target mass sums to (1 - eps) * w_y + eps / V * sum(w).
        target_total = (1 - eps) * w_target + eps / num_classes * total_weight
        probs.mul_(g * target_total + grad_softmax[:, None])
        probs.scatter_add_(-1, safe[:, None], -(1 - eps) * g * w_target)
        if eps:
            uniform = weight if weight is not None else probs.new_ones(num_classes)
            probs.addcmul_(g, uniform, value=-eps / num_classes)
    if options.softcap is not None:
        probs.mul_(1 - (logits.to(probs.dtype) / options.softcap).square())
    return probs
