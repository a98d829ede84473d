"""crossent.hf.patch against the oracle of each model's own, unpatched loss and gradients.

Every model is a tiny one built offline from its config (``tests/tiny_hf.py``): random weights,
float32, the logits spanning tens of nats.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from typing import Any

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, LlamaForCausalLM, PreTrainedModel

from crossent.hf import is_patched, patch, unpatch
from tiny_hf import ARCHS, SEQ, SMALL, VOCAB, assert_same, batch, build, loss_and_grads


@pytest.fixture
def patched_llama() -> PreTrainedModel:
    return patch(build(ARCHS["llama-untied"]))


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_loss_and_gradients_equal_the_models_own(name: str) -> None:
    arch = ARCHS[name]
    model = build(arch)
    ids = batch()
    theirs = loss_and_grads(model, input_ids=ids, labels=ids)
    if arch.neutralise is not None:
        plain = build(arch)
        arch.neutralise(plain)
        with torch.no_grad():
            untransformed = plain(input_ids=ids, labels=ids).loss
        assert abs(untransformed - theirs[0]) > 0.05 * theirs[0]  # the transform matters
    patch(model)
    output = model(input_ids=ids, labels=ids)
    assert output.logits is None
    assert_same(loss_and_grads(model, input_ids=ids, labels=ids), theirs)


@pytest.mark.parametrize("name", ["phi-biased-head", "gptj-biased-head"])
def test_the_biased_head_is_used(name: str) -> None:
    model = build(ARCHS[name])
    bias = model.get_output_embeddings().bias  # type: ignore[no-untyped-call]
    assert bias is not None
    ids = batch()
    _, grads = loss_and_grads(patch(model), input_ids=ids, labels=ids)
    assert grads["lm_head.bias"].abs().max() > 0


def test_real_smollm2_loss(smollm2: Any) -> None:
    model = smollm2.model
    ids = torch.tensor([[1, 504, 3458, 282, 260, 1326, 314, 253, 2472, 30]])
    with torch.no_grad():
        theirs = model(input_ids=ids, labels=ids).loss
        patch(model)
        try:
            ours = model(input_ids=ids, labels=ids)
        finally:
            unpatch(model)
    assert ours.logits is None
    torch.testing.assert_close(ours.loss, theirs, rtol=1e-5, atol=0)


def test_num_items_in_batch_is_the_summed_loss_over_it(patched_llama: PreTrainedModel) -> None:
    ids = batch()
    labels = ids.clone()
    labels[0, :5] = -100
    count = torch.tensor(57)
    unpatched = build(ARCHS["llama-untied"])
    theirs = loss_and_grads(unpatched, input_ids=ids, labels=labels, num_items_in_batch=count)
    ours = loss_and_grads(patched_llama, input_ids=ids, labels=labels, num_items_in_batch=count)
    assert_same(ours, theirs)
    mean = unpatched(input_ids=ids, labels=labels).loss
    scored = 2 * (SEQ - 1) - 4  # labels[0, 0] is never a target
    assert abs(ours[0] - mean * scored / 57) < 1e-5  # the sum over num_items


def test_shift_labels_ignored_tokens_and_padding(patched_llama: PreTrainedModel) -> None:
    ids = batch()
    mask = torch.ones_like(ids)
    mask[1, -4:] = 0  # right padding
    labels = ids.masked_fill(mask == 0, -100)
    shifted = torch.roll(labels, -1, dims=1)
    shifted[:, -1] = -100
    shifted[0, 3:7] = -100
    unpatched = build(ARCHS["llama-untied"])
    for inputs in (
        {"labels": labels, "attention_mask": mask},
        {"labels": labels, "shift_labels": shifted, "attention_mask": mask},
    ):
        theirs = loss_and_grads(unpatched, input_ids=ids, **inputs)
        assert_same(loss_and_grads(patched_llama, input_ids=ids, **inputs), theirs)


def test_kept_logits_with_shift_labels(patched_llama: PreTrainedModel) -> None:
    ids = batch()
    keep = torch.zeros_like(ids, dtype=torch.bool)
    keep[:, 8:] = True  # packed-style: a boolean mask of the scored positions
    shifted = torch.roll(ids, -1, dims=1)[keep]
    inputs = {"labels": ids, "shift_labels": shifted, "logits_to_keep": keep}
    theirs = loss_and_grads(build(ARCHS["llama-untied"]), input_ids=ids, **inputs)
    assert_same(loss_and_grads(patched_llama, input_ids=ids, **inputs), theirs)


def test_without_labels_the_model_is_unchanged(patched_llama: PreTrainedModel) -> None:
    unpatched = build(ARCHS["llama-untied"])
    ids = batch()
    with torch.no_grad():
        for keep in (0, 1):
            ours = patched_llama(input_ids=ids, logits_to_keep=keep).logits
            assert torch.equal(ours, unpatched(input_ids=ids, logits_to_keep=keep).logits)
        settings = {"max_new_tokens": 6, "do_sample": False}
        assert torch.equal(
            patched_llama.generate(ids[:, :4], **settings),  # type: ignore[operator]
            unpatched.generate(ids[:, :4], **settings),  # type: ignore[operator]
        )


def test_return_logits_and_tuples() -> None:
    arch = ARCHS["gemma2"]
    ids = batch()
    with torch.no_grad():
        theirs = build(arch)(input_ids=ids, labels=ids)
        model = patch(build(arch), return_logits=True)
        ours = model(input_ids=ids, labels=ids)
        torch.testing.assert_close(ours.logits, theirs.logits, rtol=1e-6, atol=1e-6)
        loss, logits = model(input_ids=ids, labels=ids, return_dict=False)[:2]
    torch.testing.assert_close(loss, theirs.loss)
    torch.testing.assert_close(logits, theirs.logits, rtol=1e-6, atol=1e-6)


def test_label_smoothing_and_z_loss_pass_through() -> None:
    ids = batch()
    with torch.no_grad():
        logits = build(ARCHS["granite"])(input_ids=ids).logits[:, :-1].flatten(0, 1).double()
    target = ids[:, 1:].flatten()
    for smoothing, z_loss in ((0.1, 0.0), (0.0, 1e-3), (0.2, 1e-2)):
        expected = torch.nn.functional.cross_entropy(logits, target, label_smoothing=smoothing)
        expected = expected + z_loss * logits.logsumexp(-1).square().mean()
        model = patch(build(ARCHS["granite"]), label_smoothing=smoothing, z_loss=z_loss)
        loss = model(input_ids=ids, labels=ids).loss
        torch.testing.assert_close(loss.double(), expected, rtol=1e-6, atol=0)


def test_unpatch_restores_the_model() -> None:
    model = build(ARCHS["llama-tied"])
    ids = batch()
    theirs = model(input_ids=ids, labels=ids)
    patch(model)
    patch(model, z_loss=0.1)  # patching again replaces the options
    assert is_patched(model)
    unpatch(model)
    assert not is_patched(model)
    assert "forward" not in model.__dict__
    assert not model.get_output_embeddings()._forward_pre_hooks  # type: ignore[no-untyped-call]
    again = model(input_ids=ids, labels=ids)
    assert torch.equal(again.loss, theirs.loss)
    assert torch.equal(again.logits, theirs.logits)
    with pytest.raises(ValueError, match="not patched"):
        unpatch(model)


class _DoubledLogits(LlamaForCausalLM):  # type: ignore[no-untyped-call]
    """A causal LM that doubles its logits with no config field saying so."""

    def forward(self, input_ids: Any = None, labels: Any = None, **kwargs: Any) -> Any:
        output = super().forward(input_ids=input_ids, **kwargs)
        output.logits = output.logits * 2.0
        if labels is not None:
            output.loss = self.loss_function(output.logits, labels, self.config.vocab_size)
        return output


def _refusals() -> dict[str, tuple[Callable[[], PreTrainedModel], str]]:
    def no_linear_head() -> PreTrainedModel:
        model = build(ARCHS["llama-untied"])
        head = model.get_output_embeddings()  # type: ignore[no-untyped-call]
        model.set_output_embeddings(torch.nn.Sequential(head))  # type: ignore[no-untyped-call]
        return model

    def doubled() -> PreTrainedModel:
        config = AutoConfig.for_model("llama", **SMALL)
        return _DoubledLogits(config).eval()  # type: ignore[arg-type, no-untyped-call, no-any-return]

    def router() -> PreTrainedModel:
        settings = {**SMALL, "num_local_experts": 2, "output_router_logits": True}
        config = AutoConfig.for_model("mixtral", **settings)
        return AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call, no-any-return]

    def hooked() -> PreTrainedModel:
        model = build(ARCHS["llama-untied"])
        head = model.get_output_embeddings()  # type: ignore[no-untyped-call]
        head.register_forward_hook(lambda module, args, output: output * 2)
        return model

    return {
        "no linear head": (no_linear_head, "not a torch.nn.Linear"),
        "unknown transform": (doubled, "transforms its logits in a way crossent does not know"),
        "router loss": (router, "output_router_logits=True"),
        "head hooks": (hooked, "hooks"),
    }


@pytest.mark.parametrize("case", sorted(_refusals()))
def test_unsupported_models_are_refused_in_one_line(case: str) -> None:
    make, message = _refusals()[case]
    model = make()
    with pytest.raises(ValueError, match=message) as error:
        patch(model)
    assert "\n" not in str(error.value)
    assert not is_patched(model)
    assert "forward" not in model.__dict__


@pytest.mark.parametrize(
    ("options", "message"),
    [({"label_smoothing": 1.5}, "label_smoothing"), ({"z_loss": -1.0}, "z_loss")],
)
def test_bad_options_are_refused(options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        patch(build(ARCHS["llama-tied"]), **options)  # type: ignore[arg-type]


def test_no_logits_are_computed_with_labels(patched_llama: PreTrainedModel) -> None:
    shapes: list[torch.Size] = []
    head = patched_llama.get_output_embeddings()  # type: ignore[no-untyped-call]
    handle = head.register_forward_hook(lambda module, args, output: shapes.append(output.shape))
    ids = batch()
    try:
        patched_llama(input_ids=ids, labels=ids).loss.backward()
        patched_llama(input_ids=ids)
    finally:
        handle.remove()
    assert shapes == [torch.Size([2, 0, VOCAB]), torch.Size([2, SEQ, VOCAB])]


def test_a_deep_copy_is_patched_on_its_own(patched_llama: PreTrainedModel) -> None:
    copied = copy.deepcopy(patched_llama)
    assert copied.forward.__self__ is copied  # type: ignore[attr-defined]
    ids = batch()
    theirs = loss_and_grads(build(ARCHS["llama-untied"]), input_ids=ids, labels=ids)
    assert_same(loss_and_grads(copied, input_ids=ids, labels=ids), theirs)
    unpatch(copied)
    assert is_patched(patched_llama)


def test_the_forward_keeps_its_signature(patched_llama: PreTrainedModel) -> None:
    # Trainer reads it: the columns to keep, and **kwargs to pass num_items_in_batch.
    ours = inspect.signature(patched_llama.forward)
    assert ours == inspect.signature(LlamaForCausalLM.forward.__get__(patched_llama))
    assert any(p.kind is p.VAR_KEYWORD for p in ours.parameters.values())


def test_a_bfloat16_model_reports_its_loss_in_float32() -> None:
    arch = ARCHS["gemma2"]
    ids = batch()
    with torch.no_grad():
        theirs = build(arch, dtype=torch.bfloat16)(input_ids=ids, labels=ids).loss
        ours = patch(build(arch, dtype=torch.bfloat16))(input_ids=ids, labels=ids).loss
    assert ours.dtype == theirs.dtype == torch.float32  # transformers upcasts the logits
    torch.testing.assert_close(ours, theirs, rtol=1e-2, atol=0)  # bf16 logits round theirs


def test_gradient_checkpointing() -> None:
    arch = ARCHS["qwen3"]
    ids = batch()
    models = [build(arch).train(), patch(build(arch).train())]
    for model in models:
        model.activation_checkpointing_enable({"use_reentrant": False})
    theirs, ours = (
        loss_and_grads(model, input_ids=ids, labels=ids, use_cache=False) for model in models
    )
    assert_same(ours, theirs)


def test_labels_given_by_position(patched_llama: PreTrainedModel) -> None:
    ids = batch()
    theirs = loss_and_grads(build(ARCHS["llama-untied"]), input_ids=ids, labels=ids)
    patched_llama.zero_grad(set_to_none=True)
    # forward(input_ids, attention_mask, position_ids, cache, inputs_embeds, labels)
    output = patched_llama(ids, None, None, None, None, ids)
    assert output.logits is None
    torch.testing.assert_close(output.loss, theirs[0], rtol=1e-6, atol=1e-6)


def test_a_model_that_cannot_run_is_refused_in_one_line() -> None:
    model = build(ARCHS["llama-untied"])
    model.get_input_embeddings().weight.data = torch.zeros(VOCAB, 7)
    with pytest.raises(ValueError, match="could not run LlamaForCausalLM to check it") as error:
        patch(model)
    assert "\n" not in str(error.value)
    assert not is_patched(model)


def test_reachable_from_the_package() -> None:
    import crossent

    assert crossent.hf.patch is patch
    assert "hf" in dir(crossent)
