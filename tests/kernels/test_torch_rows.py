"""The PyTorch rows writing their gradient straight into the logits they are given.

In fp32 the softmax is exponentiated into the caller's logits block by block (no copy back), so
the gradient must land right whatever the logits' strides, with and without soft-capping (where
the capped logits are a tensor of their own, read after the block is overwritten). The oracle is
PyTorch autograd in float64 on the composed loss.
"""

from __future__ import annotations

import pytest
import torch

from crossent.kernels import LossOptions, RowUpstream, chunks, rows_loss
from oracles import composed_cross_entropy


@pytest.mark.parametrize("softcap", [None, 4.0])
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "column slice"])
def test_gradient_lands_in_the_logits_in_place(
    monkeypatch: pytest.MonkeyPatch, softcap: float | None, layout: str
) -> None:
    monkeypatch.setenv("CROSSENT_KERNEL", "torch")
    monkeypatch.setattr(chunks, "LOGITS_PER_CACHE_BLOCK", 3 * 40)  # 3 rows a block: 3 blocks
    generator = torch.Generator().manual_seed(5)
    values = torch.randn(7, 40, generator=generator, dtype=torch.float64) * 3
    if layout == "transposed":
        logits = values.float().T.contiguous().T  # [7, 40], column stride 7
    elif layout == "column slice":
        logits = torch.cat([values.float(), torch.zeros(7, 9)], dim=1)[:, :40]
    else:
        logits = values.float().clone()
    target = torch.tensor([3, -100, 39, 0, 17, 5, -100])
    upstream = torch.linspace(0.5, 2.0, 7)
    options = LossOptions(z_loss=1e-2, softcap=softcap)
    terms = rows_loss(logits, target, options, upstream=RowUpstream(upstream, upstream))

    truth = values.clone().requires_grad_(True)
    token = composed_cross_entropy(truth, target, reduction="none", z_loss=1e-2, softcap=softcap)
    (token * upstream.double()).sum().backward()  # type: ignore[no-untyped-call]
    assert truth.grad is not None
    torch.testing.assert_close(logits.double(), truth.grad, rtol=1e-5, atol=1e-6)
    expected = composed_cross_entropy(values, target, reduction="none", softcap=softcap)
    torch.testing.assert_close(terms.ce.double(), expected, rtol=1e-5, atol=1e-6)
