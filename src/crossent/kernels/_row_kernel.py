"""The Triton source of the row kernel; imported only when the kernel is first launched.

Triton's interpreter (``TRITON_INTERPRET=1``) patches ``triton.language`` in the globals of the
module that defines a kernel, so the kernel lives at module level here, and this module is the
only one that imports Triton at import time. See :mod:`crossent.kernels.triton_rows` for what it
does.
"""

import triton
import triton.language as tl


@triton.jit  # type: ignore[untyped-decorator]
def row_kernel(  # type: ignore[no-untyped-def]
    logits_ptr,
    logits_stride,
    target_ptr,
    grad_ce_ptr,
    grad_z_ptr,
    ce_ptr,
    lse_ptr,
    correct_ptr,
    num_classes,
    ignore_index,
    label_smoothing,
    z_loss,
    softcap,
    has_softcap: tl.constexpr,
    write_grad: tl.constexpr,
    block: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    row_ptr = logits_ptr + row * logits_stride
    target = tl.load(target_ptr + row)
    scored = target != ignore_index

    running_max = -float("inf")
    running_sum = 0.0
    logit_sum = 0.0
    best = -float("inf")
    best_index = 0
    for start in range(0, num_classes, block):
        columns = start + tl.arange(0, block)
        inside = columns < num_classes
        z = tl.load(row_ptr + columns, mask=inside, other=-float("inf")).to(tl.float32)
        if has_softcap:
            z = softcap * (2 * tl.sigmoid(2 * z / softcap) - 1)  # softcap * tanh(z / softcap)
            z = tl.where(inside, z, -float("inf"))  # capping would lift the padding to -softcap
        block_max = tl.max(z, axis=0)
        new_max = tl.maximum(running_max, block_max)
        # A row of -inf so far: keep the sum at 0 instead of exp(-inf - -inf) = NaN.
        safe_max = tl.where(new_max == -float("inf"), 0.0, new_max)
        running_sum = running_sum * tl.exp(running_max - safe_max) + tl.sum(
            tl.exp(z - safe_max), axis=0
        )
        running_max = new_max
        logit_sum += tl.sum(tl.where(inside, z, 0.0), axis=0)
        # The first maximum wins, as in torch.max.
        best_index = tl.where(block_max > best, start + tl.argmax(z, axis=0), best_index)
        best = tl.maximum(best, block_max)

    safe_target = tl.where(scored, target, 0)
    z_target = tl.load(row_ptr + safe_target).to(tl.float32)
    if has_softcap:
        z_target = softcap * (2 * tl.sigmoid(2 * z_target / softcap) - 1)
    log_norm = tl.log(running_sum)
    lse = running_max + log_norm
    # (max - z_y) + log(sum): exact digits near the maximum, as log_softmax gives them.
    nll = (running_max - z_target) + log_norm
    # Without smoothing a masked (-inf) class must not bring in 0 * inf.
    smooth = tl.where(
        label_smoothing > 0,
        label_smoothing * ((running_max - logit_sum / num_classes) + log_norm),
        0.0,
    )
    ce = (1 - label_smoothing) * nll + smooth
    tl.store(ce_ptr + row, tl.where(scored, ce, 0.0))
    tl.store(lse_ptr + row, lse)
    tl.store(correct_ptr + row, scored & (best_index == target))

    if write_grad:
        grad_ce = tl.where(scored, tl.load(grad_ce_ptr + row), 0.0)
        grad_softmax = tl.where(scored, 2 * z_loss * lse * tl.load(grad_z_ptr + row), 0.0)
        for start in range(0, num_classes, block):
            columns = start + tl.arange(0, block)
            inside = columns < num_classes
            raw = tl.load(row_ptr + columns, mask=inside, other=0.0).to(tl.float32)
            z = raw
            if has_softcap:
                z = softcap * (2 * tl.sigmoid(2 * raw / softcap) - 1)
            probs = tl.exp(z - lse)
            grad = probs * (grad_ce + grad_softmax) - grad_ce * label_smoothing / num_classes
            grad -= tl.where(columns == target, grad_ce * (1 - label_smoothing), 0.0)
            if has_softcap:
                grad *= 1 - (z / softcap) * (z / softcap)
            tl.store(row_ptr + columns, grad.to(logits_ptr.dtype.element_ty), mask=inside)
