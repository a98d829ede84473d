"""Bad input fails early and clearly: a ValueError or TypeError raised by crossent itself.

Every test runs with the losses' arithmetic replaced by a tripwire, so a check that only fires
after (or inside) the computation fails the test, and every test asserts that the exception was
raised by crossent's own code, not from deep inside torch, and that its message names the value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import crossent
import crossent.losses.cross_entropy as ce_module
from crossent import binary_cross_entropy, cross_entropy, distillation_loss, kl_divergence

CROSSENT_DIR = Path(crossent.__file__).resolve().parent


def _tripwire(*_args: object, **_kwargs: object) -> Tensor:
    raise AssertionError("the loss started computing before its arguments were checked")


@pytest.fixture(autouse=True)
def no_arithmetic(monkeypatch: pytest.MonkeyPatch) -> None:
    """Trip on each loss's first arithmetic step: CE's kernel, KL's softmax, BCE's log-sigmoid."""
    monkeypatch.setattr(ce_module._CrossEntropyFunction, "apply", _tripwire)
    monkeypatch.setattr(torch, "log_softmax", _tripwire)
    monkeypatch.setattr(F, "logsigmoid", _tripwire)


def _raises(
    error: type[Exception], message: str, call: Callable[[], object]
) -> pytest.ExceptionInfo[Exception]:
    """``call`` raises ``error`` from crossent's own code, with ``message`` (literal) in it."""
    with pytest.raises(error, match=re.escape(message)) as info:
        call()
    raised_in = Path(info.traceback[-1].path).resolve()
    assert CROSSENT_DIR in raised_in.parents, f"raised in {raised_in}, not by crossent"
    return info


_GENERATOR = torch.Generator().manual_seed(0)
LOGITS = torch.randn(2, 3, 5, generator=_GENERATOR)
TARGET = torch.randint(0, 5, (2, 3), generator=_GENERATOR)


def test_target_outside_the_vocabulary_names_value_size_and_position() -> None:
    logits = torch.randn(2, 20, 11)
    target = torch.randint(0, 11, (2, 20))
    target[1, 17] = 11
    target[1, 18] = 12  # only the first offender is named
    _raises(
        ValueError,
        "target 11 is outside the vocabulary (size 11) at position (1, 17)",
        lambda: cross_entropy(logits, target),
    )


def test_negative_target_that_is_not_ignore_index() -> None:
    target = TARGET.clone()
    target[0, 2] = -1
    info = _raises(ValueError, "target -1 is outside", lambda: cross_entropy(LOGITS, target))
    assert "(0, 2)" in str(info.value)
    assert "ignore_index=-100" in str(info.value)


def test_invalid_target_is_caught_when_ignore_index_is_a_valid_class() -> None:
    logits = torch.randn(4, 11, dtype=torch.float64)
    target = torch.tensor([0, 11, 3, 5])
    _raises(
        ValueError,
        "target 11 is outside the vocabulary (size 11) at position (1,)",
        lambda: cross_entropy(logits, target, ignore_index=3),
    )


def test_ignore_index_inside_the_vocabulary_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """The other half of the test above: a valid target equal to ignore_index is not scored."""
    monkeypatch.undo()  # this test computes
    logits = torch.randn(4, 11, dtype=torch.float64)
    target = torch.tensor([0, 3, 3, 5])
    ours = cross_entropy(logits, target, ignore_index=3, reduction="none")
    expected = F.cross_entropy(logits, target, ignore_index=3, reduction="none")
    torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-12)
    assert ours[1].item() == 0.0
    mean = cross_entropy(logits, target, ignore_index=3)
    torch.testing.assert_close(mean, F.cross_entropy(logits, target, ignore_index=3))


def test_class_target_of_the_wrong_shape_names_both_shapes() -> None:
    info = _raises(
        ValueError, "got (2, 4)", lambda: cross_entropy(LOGITS, torch.zeros(2, 4, dtype=torch.long))
    )
    assert "(2, 3, 5)" in str(info.value)
    assert "(2, 3)" in str(info.value)


def test_probability_target_of_the_wrong_shape_names_both_shapes() -> None:
    _raises(
        ValueError,
        "got (2, 3, 5) and (2, 3, 4)",
        lambda: cross_entropy(LOGITS, torch.full((2, 3, 4), 0.25)),
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64], ids=str)
def test_class_indices_given_as_floats_are_read_as_a_misshapen_probability_target(
    dtype: torch.dtype,
) -> None:
    """Float targets are probabilities, so a ``[...]`` float target fails on its shape."""
    _raises(
        ValueError,
        "probability target must have the same shape, got (2, 3, 5) and (2, 3)",
        lambda: cross_entropy(LOGITS, TARGET.to(dtype)),
    )


def test_bool_class_target_is_a_type_error() -> None:
    _raises(
        TypeError,
        "integer dtype, got torch.bool",
        lambda: cross_entropy(LOGITS, torch.zeros(2, 3, dtype=torch.bool)),
    )


@pytest.mark.parametrize(
    "dtype",
    [
        torch.int8,
        torch.uint8,
        torch.int16,
        torch.int32,
        torch.int64,
    ],
    ids=str,
)
def test_every_integer_target_dtype_is_accepted(
    dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check accepts any integer dtype, so the computation must too (the reference does)."""
    monkeypatch.undo()  # this test computes
    logits = torch.randn(3, 5, dtype=torch.float64)
    target = torch.tensor([0, 4, 2])
    torch.testing.assert_close(
        cross_entropy(logits, target.to(dtype)), F.cross_entropy(logits, target)
    )


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool], ids=str)
def test_integer_logits_are_a_type_error(dtype: torch.dtype) -> None:
    logits = torch.zeros(2, 3, 5, dtype=dtype)
    _raises(
        TypeError, "logits must be a floating-point tensor", lambda: cross_entropy(logits, TARGET)
    )
    _raises(
        TypeError,
        "student_logits must be a floating-point tensor",
        lambda: kl_divergence(logits, LOGITS),
    )
    _raises(
        TypeError,
        "logits must be a floating-point tensor",
        lambda: binary_cross_entropy(logits, torch.rand(2, 3, 5)),
    )


def test_scalar_logits() -> None:
    scalar = torch.tensor(1.5)
    _raises(ValueError, "got a scalar", lambda: cross_entropy(scalar, torch.tensor(0)))
    _raises(ValueError, "got a scalar", lambda: kl_divergence(scalar, scalar))


@pytest.mark.parametrize("smoothing", [-0.1, 1.5, float("nan")])
def test_label_smoothing_outside_zero_one(smoothing: float) -> None:
    _raises(
        ValueError,
        f"label_smoothing must be in [0.0, 1.0], got {smoothing}",
        lambda: cross_entropy(LOGITS, TARGET, label_smoothing=smoothing),
    )


@pytest.mark.parametrize(
    "call",
    [
        lambda: cross_entropy(LOGITS, TARGET, reduction="avg"),  # type: ignore[arg-type]
        lambda: kl_divergence(LOGITS, LOGITS, reduction="avg"),  # type: ignore[arg-type]
        lambda: binary_cross_entropy(LOGITS, LOGITS.sigmoid(), reduction="avg"),  # type: ignore[arg-type]
        lambda: cross_entropy(LOGITS, TARGET, reduction="batchmean"),  # type: ignore[arg-type]
    ],
    ids=["cross_entropy", "kl_divergence", "binary", "batchmean"],
)
def test_unknown_reduction_lists_the_valid_ones(call: Callable[[], object]) -> None:
    info = _raises(ValueError, "unknown reduction", call)
    for valid in ("none", "mean", "sum"):
        assert valid in str(info.value)


@pytest.mark.parametrize("shape", [(4,), (6,), (1, 5), ()])
def test_class_weight_of_the_wrong_shape(shape: tuple[int, ...]) -> None:
    _raises(
        ValueError,
        f"weight must have one entry per class, shape (5,), got {shape}",
        lambda: cross_entropy(LOGITS, TARGET, torch.ones(shape)),
    )


@pytest.mark.parametrize("z_loss", [-1e-4, float("nan")])
def test_negative_z_loss(z_loss: float) -> None:
    _raises(
        ValueError,
        f"z_loss must be non-negative, got {z_loss}",
        lambda: cross_entropy(LOGITS, TARGET, z_loss=z_loss),
    )


@pytest.mark.parametrize("softcap", [0.0, -30.0, float("nan")])
def test_softcap_not_positive(softcap: float) -> None:
    _raises(
        ValueError,
        f"softcap must be positive, got {softcap}",
        lambda: cross_entropy(LOGITS, TARGET, softcap=softcap),
    )


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan")])
def test_kl_temperature_not_positive(temperature: float) -> None:
    _raises(
        ValueError,
        f"temperature must be positive, got {temperature}",
        lambda: kl_divergence(LOGITS, LOGITS, temperature),
    )


def test_kl_logits_of_different_shapes() -> None:
    _raises(
        ValueError,
        "got (2, 3, 5) and (2, 3, 6)",
        lambda: kl_divergence(LOGITS, torch.randn(2, 3, 6)),
    )


@pytest.mark.parametrize("shape", [(2,), (3, 2), (2, 3, 5)])
def test_kl_mask_of_the_wrong_shape(shape: tuple[int, ...]) -> None:
    _raises(
        ValueError,
        f"mask must have the logits' shape without the class dimension, (2, 3), got {shape}",
        lambda: kl_divergence(LOGITS, LOGITS, mask=torch.ones(shape, dtype=torch.bool)),
    )


def test_kl_mask_that_is_not_bool() -> None:
    _raises(
        TypeError,
        "mask",
        lambda: kl_divergence(LOGITS, LOGITS, mask=torch.ones(2, 3, dtype=torch.long)),
    )


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan")])
def test_distillation_alpha_outside_zero_one(alpha: float) -> None:
    _raises(
        ValueError,
        f"alpha must be in [0.0, 1.0], got {alpha}",
        lambda: distillation_loss(LOGITS, LOGITS, TARGET, alpha=alpha),
    )


def test_distillation_target_outside_the_vocabulary() -> None:
    target = TARGET.clone()
    target[1, 0] = 5
    _raises(
        ValueError,
        "target 5 is outside the vocabulary (size 5) at position (1, 0)",
        lambda: distillation_loss(LOGITS, LOGITS, target),
    )


@pytest.mark.parametrize(
    ("error", "message", "call"),
    [
        (
            ValueError,
            "temperature must be positive, got 0.0",
            lambda: distillation_loss(LOGITS, LOGITS, TARGET, temperature=0.0),
        ),
        (
            ValueError,
            "got (2, 3, 5) and (2, 3, 6)",
            lambda: distillation_loss(LOGITS, torch.randn(2, 3, 6), TARGET),
        ),
        (
            TypeError,
            "teacher_logits must be a floating-point tensor",
            lambda: distillation_loss(LOGITS, LOGITS.long(), TARGET),
        ),
    ],
    ids=["temperature", "teacher-shape", "teacher-dtype"],
)
def test_distillation_checks_the_teacher_before_computing(
    error: type[Exception], message: str, call: Callable[[], object]
) -> None:
    _raises(error, message, call)


@pytest.mark.parametrize("value", [-0.5, 1.5, float("nan"), float("inf")])
def test_binary_target_outside_zero_one(value: float) -> None:
    target = torch.full((2, 3, 5), 0.5)
    target[1, 2, 0] = value
    _raises(
        ValueError,
        f"binary target must be a probability in [0, 1], got {value} at position (1, 2, 0)",
        lambda: binary_cross_entropy(LOGITS, target),
    )


def test_binary_target_of_another_shape() -> None:
    _raises(
        ValueError,
        "got (2, 3, 5) and (3, 5)",
        lambda: binary_cross_entropy(LOGITS, torch.rand(3, 5)),
    )


@pytest.mark.parametrize("name", ["weight", "pos_weight"])
@pytest.mark.parametrize(
    "shape",
    [
        (4,),
        (2, 2, 5),
        (2, 5, 1),
        # Broadcasts with the logits, but to a larger shape than theirs (PyTorch refuses it).
        (3, 1, 1, 1),
    ],
)
def test_binary_weight_that_does_not_broadcast(name: str, shape: tuple[int, ...]) -> None:
    extra = {name: torch.ones(shape)}
    _raises(
        ValueError,
        f"{name} of shape {shape} does not broadcast to the logits' shape (2, 3, 5)",
        lambda: binary_cross_entropy(LOGITS, torch.rand(2, 3, 5), **extra),  # type: ignore[arg-type]
    )


def test_binary_integer_target_is_a_type_error() -> None:
    _raises(
        TypeError,
        "target must be a floating-point tensor",
        lambda: binary_cross_entropy(LOGITS, torch.ones(2, 3, 5, dtype=torch.long)),
    )


def test_distillation_target_of_probabilities_is_a_type_error() -> None:
    _raises(
        TypeError,
        "distillation target must be class indices",
        lambda: distillation_loss(LOGITS, LOGITS, torch.softmax(LOGITS, -1)),
    )
