"""The loops ``torch.compile`` fuses on a CPU (crossent.kernels.compiled), against float64.

``CROSSENT_KERNEL=compiled`` sends every chunk these loops cover through them whatever its size,
so the shapes here stay small; the oracle is PyTorch autograd in float64 on the composed loss (and
``torch.argmax``, the first maximal index, for top-1 correctness). Rows that are not finite must
leave the compiled path untouched and get the eager path's documented policy. The last test
breaks the C++ compiler for real (a compiler path that does not exist, a fresh inductor cache) in
a subprocess: the loss must warn once and still be right.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from crossent import linear_cross_entropy
from crossent.kernels import LossOptions, RowUpstream, add_into_, compiled, rows_loss, scaled_to
from crossent.kernels.compiled import compiled_rows
from oracles import composed_cross_entropy

# Errors against float64 of one rounding to the dtype, for values of size about one.
TOLERANCE = {torch.float32: 2e-6, torch.bfloat16: 8e-3, torch.float16: 1e-3}


@pytest.fixture(autouse=True)
def _compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROSSENT_KERNEL", "compiled")


def _rows(dtype: torch.dtype, num_rows: int = 9, num_classes: int = 300) -> torch.Tensor:
    generator = torch.Generator().manual_seed(11)
    return (torch.randn(num_rows, num_classes, generator=generator, dtype=torch.float64) * 3).to(
        dtype
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_rows_and_their_gradient_match_float64(dtype: torch.dtype) -> None:
    logits = _rows(dtype)
    values = logits.double()
    target = torch.tensor([3, -100, 299, 0, 17, 5, -100, 150, 42])
    upstream = torch.linspace(0.5, 2.0, 9)
    options = LossOptions(z_loss=1e-2)
    terms = compiled_rows(logits, target, options, RowUpstream(upstream, upstream))
    assert terms is not None, "finite rows must take the compiled loops"

    truth = values.clone().requires_grad_(True)
    token = composed_cross_entropy(truth, target, reduction="none", z_loss=1e-2)
    (token * upstream.double()).sum().backward()  # type: ignore[no-untyped-call]
    assert truth.grad is not None
    tolerance = TOLERANCE[dtype]
    torch.testing.assert_close(logits.double(), truth.grad, rtol=tolerance, atol=tolerance)
    expected = composed_cross_entropy(values, target, reduction="none")
    torch.testing.assert_close(terms.ce.double(), expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(terms.lse.double(), torch.logsumexp(values, -1), rtol=1e-6, atol=0)
    scored = target != -100
    assert terms.correct.tolist() == ((values.argmax(-1) == target) & scored).tolist()


def test_forward_only_leaves_the_logits_alone() -> None:
    logits = _rows(torch.bfloat16)
    before = logits.clone()
    target = torch.arange(9) * 7
    terms = rows_loss(logits, target, LossOptions())
    assert torch.equal(logits, before)
    expected = composed_cross_entropy(before.double(), target, reduction="none")
    torch.testing.assert_close(terms.ce.double(), expected, rtol=1e-6, atol=1e-6)


def test_a_tie_at_the_maximum_counts_the_first_maximal_index() -> None:
    logits = torch.zeros(4, 50)
    logits[:, 10] = logits[:, 30] = 5.0  # two maximal logits in every row
    logits[3, 30] = 4.0  # ... except the last, whose maximum is unique
    target = torch.tensor([10, 30, 7, 10])
    terms = compiled_rows(logits, target, LossOptions())
    assert terms is not None
    expected = logits.double().argmax(-1) == target  # torch.argmax: the first maximal index
    assert terms.correct.tolist() == expected.tolist() == [True, False, False, True]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "all -inf"])
def test_rows_that_are_not_finite_get_the_eager_policy(
    monkeypatch: pytest.MonkeyPatch, bad: float | str
) -> None:
    logits = _rows(torch.float32, num_rows=4, num_classes=20)
    if bad == "all -inf":
        logits[2] = float("-inf")
    else:
        logits[2, 5] = bad  # type: ignore[assignment]
    target = torch.tensor([1, 2, 3, 4])
    upstream = RowUpstream(torch.ones(4), torch.ones(4))
    untouched = logits.clone()
    assert compiled_rows(logits, target, LossOptions(), upstream) is None
    assert torch.equal(logits.nan_to_num(), untouched.nan_to_num()), "a refused chunk is unchanged"

    through_dispatch = logits.clone()
    terms = rows_loss(through_dispatch, target, LossOptions(), upstream=upstream)
    monkeypatch.setenv("CROSSENT_KERNEL", "torch")
    eager_logits = logits.clone()
    eager = rows_loss(eager_logits, target, LossOptions(), upstream=upstream)
    torch.testing.assert_close(terms.ce, eager.ce, equal_nan=True)
    torch.testing.assert_close(through_dispatch, eager_logits, equal_nan=True)
    # and the finite rows are right, against PyTorch in float64
    finite = torch.tensor([0, 1, 3])
    expected = torch.nn.functional.cross_entropy(
        untouched[finite].double(), target[finite], reduction="none"
    )
    torch.testing.assert_close(terms.ce[finite].double(), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("upstream", [1.0, 0.37])
def test_the_fused_loss_over_many_chunks_matches_float64(
    dtype: torch.dtype, upstream: float
) -> None:
    generator = torch.Generator().manual_seed(3)
    hidden = torch.randn(40, 16, generator=generator, dtype=torch.float64)
    weight = torch.randn(300, 16, generator=generator, dtype=torch.float64) * 0.3
    target = torch.randint(0, 300, (40,), generator=generator)
    target[::6] = -100
    ours_hidden = hidden.to(dtype).requires_grad_(True)
    ours_weight = weight.to(dtype).requires_grad_(True)
    loss = linear_cross_entropy(ours_hidden, ours_weight, target, z_loss=1e-3, chunk_rows=7)
    (loss * upstream).backward()  # type: ignore[no-untyped-call]

    truth_hidden = ours_hidden.detach().double().requires_grad_(True)
    truth_weight = ours_weight.detach().double().requires_grad_(True)
    logits = truth_hidden @ truth_weight.T
    truth = composed_cross_entropy(logits, target, z_loss=1e-3)
    (truth * upstream).backward()  # type: ignore[no-untyped-call]
    assert loss.dtype == torch.float32  # bf16 inputs: the loss unrounded (linear.loss_dtype)
    tolerance = TOLERANCE[dtype]  # bf16: the logits themselves are rounded to 8 bits
    torch.testing.assert_close(loss.double(), truth.detach(), rtol=tolerance, atol=tolerance)
    for ours, expected in ((ours_hidden, truth_hidden), (ours_weight, truth_weight)):
        assert ours.grad is not None
        assert expected.grad is not None
        assert ours.grad.dtype == dtype
        scale = expected.grad.abs().max()
        error = (ours.grad.double() - expected.grad).abs().max() / scale
        assert error < tolerance, f"gradient error {error:.2e} relative to its largest entry"


def test_the_widened_sum_and_the_one_rounding() -> None:
    generator = torch.Generator().manual_seed(8)
    total = torch.randn(64, 33, generator=generator)
    product = torch.randn(64, 33, generator=generator).bfloat16()
    expected = total.double() + product.double()
    add_into_(total, product)
    torch.testing.assert_close(total.double(), expected, rtol=1e-7, atol=1e-7)

    scale = torch.tensor(0.37)
    out = torch.empty(64, 33, dtype=torch.bfloat16)
    rounded = scaled_to(total, scale, torch.bfloat16, out=out)
    assert rounded.data_ptr() == out.data_ptr()
    assert torch.equal(rounded, (expected * 0.37).bfloat16()), "rounded once, from the exact sum"


def test_automatic_choice_waits_for_enough_work(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROSSENT_KERNEL", "auto")
    monkeypatch.setattr(compiled, "_handled", [0])
    assert not compiled.compiled_wanted(torch.empty(8, 1000)), "a small chunk stays eager"
    large = torch.empty(compiled.MIN_COMPILED_SIZE)  # never touched: no memory is used
    calls = compiled.WARMUP_ELEMENTS // large.numel()
    assert not any(compiled.compiled_wanted(large) for _ in range(calls))
    assert compiled.compiled_wanted(large), "past the warm-up, a large chunk compiles"
    assert not compiled.compiled_wanted(large.double()), "float64 is never compiled"
    monkeypatch.setenv("CROSSENT_KERNEL", "torch")
    assert not compiled.compiled_wanted(large)


@pytest.mark.slow
def test_a_broken_compiler_warns_once_and_the_loss_stays_right(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import os, warnings
        import torch
        from crossent import linear_cross_entropy
        generator = torch.Generator().manual_seed(0)
        hidden = torch.randn(30, 8, generator=generator, dtype=torch.float64)
        weight = torch.randn(200, 8, generator=generator, dtype=torch.float64)
        target = torch.randint(0, 200, (30,), generator=generator)
        truth = torch.nn.functional.cross_entropy(hidden @ weight.T, target)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            losses = [
                linear_cross_entropy(hidden.float(), weight.float(), target, chunk_rows=8)
                for _ in range(2)
            ]
        messages = [str(w.message) for w in caught if "torch.compile failed" in str(w.message)]
        print(len(messages), max(abs(loss.item() - truth.item()) for loss in losses))
        """
    )
    env = {
        **os.environ,
        "CROSSENT_KERNEL": "compiled",
        "CXX": str(tmp_path / "no-such-compiler"),
        "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"),
        "TORCHINDUCTOR_FX_GRAPH_CACHE": "0",
    }
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    warnings, error = done.stdout.split()
    assert int(warnings) == 1, f"one warning, then eager without asking again: {done.stdout}"
    assert float(error) < 1e-5
