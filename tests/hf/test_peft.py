"""A PEFT LoRA model (attention projections adapted, the head frozen) through the patch.

Oracle: the same LoRA model unpatched, its loss and the LoRA weights' gradients. Both orders
work: patching the model before ``get_peft_model`` wraps it, and patching the wrapper.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from transformers import PreTrainedModel

from crossent.hf import patch
from tiny_hf import ARCHS, assert_same, batch, build, loss_and_grads

peft = pytest.importorskip("peft", reason="PEFT comes with the dev extra")


def _lora(model: PreTrainedModel) -> PreTrainedModel:
    torch.manual_seed(5)  # LoRA weights not at their zero init, so that every gradient is live
    config = peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    wrapped: PreTrainedModel = peft.get_peft_model(model, config)
    return wrapped


ORDERS: dict[str, Callable[[PreTrainedModel], PreTrainedModel]] = {
    "patch then wrap": lambda model: _lora(patch(model)),
    "wrap then patch": lambda model: patch(_lora(model)),
}


@pytest.mark.parametrize("order", sorted(ORDERS))
def test_lora_loss_and_gradients_equal_unpatched(order: str) -> None:
    ids = batch()
    theirs = loss_and_grads(_lora(build(ARCHS["llama-untied"])), input_ids=ids, labels=ids)
    model = ORDERS[order](build(ARCHS["llama-untied"]))
    output = model(input_ids=ids, labels=ids)
    assert output.logits is None
    ours = loss_and_grads(model, input_ids=ids, labels=ids)
    assert sorted(ours[1]) == sorted(theirs[1])
    assert all("lora_" in name for name in ours[1])  # the head and the base stay frozen
    assert_same(ours, theirs)
