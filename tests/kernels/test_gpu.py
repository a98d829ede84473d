"""The Triton row kernel compiled for a real GPU, and the fused loss on it (issue 14).

Everything else checks the kernel in Triton's CPU interpreter; this module runs it where it is
meant to run. It is skipped, with the reason, on a machine without a CUDA device and when the
interpreter is on (tests/conftest.py turns it on unless ``TRITON_INTERPRET=0``):

    TRITON_INTERPRET=0 pytest tests/kernels/test_gpu.py

The oracle is PyTorch in float64 on the same rounded inputs, and the rule is the repository's:
no worse than PyTorch's own error at the dtype (tests/oracles.py).
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)
pytest.importorskip("triton", reason="Triton is an optional dependency (pip install triton)")
if os.environ.get("TRITON_INTERPRET") == "1":
    pytest.skip(
        "TRITON_INTERPRET=1 interprets the kernel: run with TRITON_INTERPRET=0 to compile it",
        allow_module_level=True,
    )

from crossent import linear_cross_entropy
from crossent.kernels import LossOptions, RowUpstream, rows_loss, use_triton
from oracles import assert_no_worse_than_torch


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("vocab", [1000, 50304])
def test_the_kernel_on_the_gpu_matches_float64(dtype: torch.dtype, vocab: int) -> None:
    generator = torch.Generator(device="cuda").manual_seed(0)
    logits64 = torch.randn(64, vocab, device="cuda", dtype=torch.float64, generator=generator)
    logits64 = logits64 * 3
    target = torch.randint(0, vocab, (64,), device="cuda", generator=generator)
    target[::7] = -100
    logits = logits64.to(dtype)
    assert use_triton(logits, weighted=False, soft=False)
    grad = logits.clone()
    upstream = RowUpstream(torch.ones(64, device="cuda"), torch.ones(64, device="cuda"))
    terms = rows_loss(grad, target, LossOptions(), upstream=upstream)

    exact = logits.double().requires_grad_(True)
    truth = F.cross_entropy(exact, target, reduction="none")
    truth.sum().backward()  # type: ignore[no-untyped-call]
    theirs = logits.clone().requires_grad_(True)
    torch_loss = F.cross_entropy(theirs.float(), target, reduction="none")
    torch_loss.sum().backward()  # type: ignore[no-untyped-call]
    assert exact.grad is not None
    assert theirs.grad is not None
    assert_no_worse_than_torch(terms.ce, torch_loss.detach(), truth.detach(), dtype, "ce")
    assert_no_worse_than_torch(grad, theirs.grad, exact.grad, dtype, "grad")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_the_fused_loss_on_the_gpu_matches_float64(dtype: torch.dtype) -> None:
    generator = torch.Generator(device="cuda").manual_seed(1)
    hidden = torch.randn(1024, 256, device="cuda", generator=generator).to(dtype)
    weight = (torch.randn(32000, 256, device="cuda", generator=generator) / 8).to(dtype)
    target = torch.randint(0, 32000, (1024,), device="cuda", generator=generator)

    def loss_and_grads(function: object, *inputs: torch.Tensor) -> list[torch.Tensor]:
        leaves = [t.detach().requires_grad_(True) for t in inputs]
        loss = function(leaves[0], leaves[1], target)  # type: ignore[operator]
        loss.backward()
        return [loss.detach(), *(leaf.grad for leaf in leaves)]

    ours = loss_and_grads(lambda h, w, t: linear_cross_entropy(h, w, t, chunk_rows=256),
                          hidden, weight)  # fmt: skip
    theirs = loss_and_grads(lambda h, w, t: F.cross_entropy(h @ w.T, t), hidden, weight)
    truth = loss_and_grads(lambda h, w, t: F.cross_entropy(h @ w.T, t), hidden.double(),
                           weight.double())  # fmt: skip
    names = ["loss", "hidden", "weight"]
    for name, got, torch_value, exact in zip(names, ours, theirs, truth, strict=True):
        assert_no_worse_than_torch(got, torch_value, exact, dtype, name)
