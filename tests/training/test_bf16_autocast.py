"""bfloat16 autocast on the CPU (issue 14): ``autocast="bfloat16"`` trains there, its losses stay
near float32's, the fused head runs in bf16 as a plain ``F.linear`` head does under autocast,
``"auto"`` stays float32 on a CPU, and AdamW is the fused one on the CPU.

Oracles: the float32 run of the same configuration (the first logged losses, all under the same
initial weights or one or two updates from them, within bf16's rounding); for the head, float64
PyTorch on the bf16-rounded hidden states and weight.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from crossent.losses.linear import linear_cross_entropy_with_stats
from crossent.training import TrainConfig, train
from crossent.training.optimizer import autocast_dtype, head_in_autocast_dtype, make_optimizer

TEXT = "".join(
    f"Line {i}: the quick brown fox jumps over the lazy dog, and the cat sat on mat {i % 7}.\n"
    for i in range(60)
)
# bf16 keeps 8 bits of mantissa: activations round by up to 2**-9 relatively. The tiny model's
# loss (about ln 300 = 5.7 nats) moved by 5e-6 nats at step 0 and 5e-4 after three updates in
# the run measured; ten times that is the bound.
BF16_LOSS_TOLERANCE = 5e-3
FIRST_STEPS = 4


def _run(tmp_path: Path, autocast: str) -> list[float]:
    text = tmp_path / "text.txt"
    text.write_text(TEXT, encoding="utf-8")
    config = TrainConfig(
        data=(str(text),), preset="tiny", context_length=32, vocab_size=300, batch_size=8,
        max_steps=16, eval_every=16, warmup_steps=2, lr=3e-3, patience=None, log_every=1,
        device="cpu", autocast=autocast, out=str(tmp_path / autocast),  # type: ignore[arg-type]
    )  # fmt: skip
    return [record.train_loss for record in train(config).train_log]


def test_bf16_autocast_trains_on_the_cpu_near_float32(tmp_path: Path) -> None:
    fp32 = _run(tmp_path, "none")
    bf16 = _run(tmp_path, "bfloat16")
    assert len(bf16) == len(fp32) == 17  # step 0 and each of the 16 steps
    differences = [abs(a - b) for a, b in zip(bf16[:FIRST_STEPS], fp32[:FIRST_STEPS], strict=True)]
    assert max(differences) < BF16_LOSS_TOLERANCE
    assert all(math.isfinite(loss) for loss in bf16)
    # it learns: the last steps' loss is well below the untrained model's
    assert sum(bf16[-4:]) / 4 < bf16[0] - 1.0
    # and not because it is float32 after all: rounding shows
    assert max(differences) > 0


def test_auto_is_float32_on_a_cpu_and_bfloat16_is_asked_for() -> None:
    cpu = torch.device("cpu")
    assert autocast_dtype(TrainConfig(autocast="auto"), cpu) is None
    assert autocast_dtype(TrainConfig(autocast="none"), cpu) is None
    assert autocast_dtype(TrainConfig(autocast="bfloat16"), cpu) is torch.bfloat16


def test_the_head_under_autocast_is_the_bf16_head_of_f_linear() -> None:
    """The fused loss of the cast head against float64 on the bf16-rounded inputs, and its
    gradients, which reach the float32 weight through the cast."""
    torch.manual_seed(0)
    hidden = torch.randn(64, 32, requires_grad=True)
    weight = (torch.randn(500, 32) * 0.3).requires_grad_(True)
    target = torch.randint(0, 500, (64,))
    cast = head_in_autocast_dtype(hidden, weight, None, torch.bfloat16)
    assert cast[0].dtype == cast[1].dtype == torch.bfloat16
    assert cast[2] is None
    stats = linear_cross_entropy_with_stats(cast[0], cast[1], target, reduction="sum")
    stats.loss.float().backward()  # type: ignore[no-untyped-call]
    assert weight.grad is not None
    assert weight.grad.dtype == torch.float32

    exact_hidden = hidden.detach().bfloat16().double().requires_grad_(True)
    exact_weight = weight.detach().bfloat16().double().requires_grad_(True)
    exact = F.cross_entropy(exact_hidden @ exact_weight.T, target, reduction="none")
    exact.sum().backward()  # type: ignore[no-untyped-call]
    # the per-token losses stay float32: their sum is not rounded to bf16's 3 digits
    assert stats.token_loss.dtype == torch.float32
    assert stats.token_loss.double().sum().item() == pytest.approx(exact.sum().item(), rel=1e-5)
    # PyTorch's own bf16 head under autocast, for the error bf16 costs anyway
    torch_hidden = hidden.detach().clone().requires_grad_(True)
    torch_weight = weight.detach().clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = F.linear(torch_hidden, torch_weight)
        F.cross_entropy(logits, target, reduction="sum").backward()  # type: ignore[no-untyped-call]
    for ours, theirs, truth in (
        (hidden.grad, torch_hidden.grad, exact_hidden.grad),
        (weight.grad, torch_weight.grad, exact_weight.grad),
    ):
        assert ours is not None
        assert theirs is not None
        assert truth is not None
        error = (ours.double() - truth).abs().max().item()
        torch_error = (theirs.double() - truth).abs().max().item()
        assert error <= 2 * torch_error + 1e-6
    assert head_in_autocast_dtype(hidden, weight, None, None)[0] is hidden


def test_adamw_is_fused_on_the_cpu() -> None:
    module = torch.nn.Linear(4, 4)
    optimizer = make_optimizer(module, TrainConfig(), torch.device("cpu"))
    assert optimizer.defaults["fused"] is True
