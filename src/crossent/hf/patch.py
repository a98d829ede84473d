"""``patch(model)``: a transformers causal LM whose training loss is crossent's fused loss.

After :func:`patch`, ``model(input_ids, labels=labels, ...)`` returns transformers' loss (the
same value, to float noise, and the same gradients) computed by
:func:`crossent.linear_cross_entropy` on the hidden states the model feeds its output
embedding, so the ``[tokens, V]`` logits never exist. How, generically:

* The model's own forward still runs, unchanged, with ``labels=None``: whatever an architecture
  does to its arguments, its cache, its final norm or its hidden states stays its own.
* A pre-hook on the output embedding (``model.get_output_embeddings()``, a plain
  ``torch.nn.Linear``) takes the hidden states it is called with and hands the layer an empty
  sequence instead, so the projection costs nothing. The loss is then computed from those hidden
  states, the layer's weight and bias, and the logit transform of the config
  (:mod:`crossent.hf.transform`).
* Without ``labels`` nothing is intercepted: generation and evaluation run the original forward.

Conventions are transformers' ``ForCausalLMLoss``: ``labels`` are shifted left by one (the last
position scores nothing) unless ``shift_labels`` is given, ``-100`` (or ``ignore_index=``) is
not scored, and with ``num_items_in_batch`` the loss is the summed token loss over it (what
``Trainer`` passes so that gradient accumulation normalises by the step's token count). One
choice differs: with no token scored the loss is 0, crossent's convention, not transformers' NaN.

``patch`` checks the model before it returns: once with its head's output replaced by known
logits (the transform must reproduce the model's logits), once comparing its own loss on a few
tokens with the patched one. Anything it cannot reproduce is a one-line ``ValueError``.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import torch
from torch import Tensor

from crossent.hf.transform import LogitTransform, check_transform, logit_transform, tolerance
from crossent.losses._checks import check_loss_options, check_positive
from crossent.losses.linear import linear_cross_entropy_with_stats

__all__ = ["is_patched", "patch", "unpatch"]

Model = TypeVar("Model", bound=torch.nn.Module)

_STATE = "_crossent_patch"
_CAPTURE = "_crossent_hidden"


@dataclass(frozen=True)
class _Patch:
    transform: LogitTransform
    return_logits: bool
    label_smoothing: float
    z_loss: float
    chunk_rows: int | None
    # The instance's own ``forward`` found at patch time (another library's wrapper), if any.
    previous_forward: Callable[..., Any] | None

    def original(self, model: torch.nn.Module) -> Callable[..., Any]:
        if self.previous_forward is not None:
            return self.previous_forward
        forward: Callable[..., Any] = type(model).forward.__get__(model)
        return forward


def patch(
    model: Model,
    *,
    return_logits: bool = False,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    chunk_rows: int | None = None,
) -> Model:
    """Make ``model``'s loss crossent's fused linear cross-entropy; returns ``model`` itself.

    Args:
        model: A transformers ``...ForCausalLM`` (any architecture whose output embedding is a
            ``torch.nn.Linear``); patching it again replaces the options.
        return_logits: With ``labels``, also compute and return ``logits`` (``[B, T, V]``, as
            the model would). Default: ``logits`` is None whenever ``labels`` is given, which is
            the point of the patch; without ``labels`` the logits are always returned.
        label_smoothing: As in ``torch.nn.functional.cross_entropy``, in ``[0, 1]``.
        z_loss: Weight of the per-token ``logsumexp(logits) ** 2`` term added to the loss.
        chunk_rows: Tokens per chunk of the fused loss; default from the vocabulary size.

    Raises:
        ValueError: the model has no linear output embedding, transforms its logits in a way
            crossent does not know, adds a term to its loss (a MoE router's), or its own loss
            differs from the patched one on a few tokens.

    Example:
        >>> from transformers import AutoConfig, AutoModelForCausalLM
        >>> config = AutoConfig.for_model("llama", vocab_size=64, hidden_size=16,
        ...     intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
        >>> model = patch(AutoModelForCausalLM.from_config(config))
        >>> ids = torch.randint(0, 64, (2, 8))
        >>> output = model(ids, labels=ids)
        >>> output.logits is None, output.loss.shape
        (True, torch.Size([]))
    """
    check_loss_options("mean", label_smoothing, z_loss)
    if chunk_rows is not None:
        check_positive("chunk_rows", chunk_rows)
    if is_patched(model):
        unpatch(model)
    head = _output_embedding(model)
    if head._forward_hooks or head._forward_pre_hooks:
        raise ValueError(
            f"{type(model).__name__}'s output embedding has forward hooks, which the fused loss "
            "would bypass: remove them before crossent.hf.patch"
        )
    config = getattr(model, "config", None)
    if getattr(config, "output_router_logits", False):
        raise ValueError(
            f"{type(model).__name__} adds its router's auxiliary loss "
            "(config.output_router_logits=True), which crossent's patch does not compute"
        )
    state = _Patch(
        transform=logit_transform(config),
        return_logits=return_logits,
        label_smoothing=float(label_smoothing),
        z_loss=float(z_loss),
        chunk_rows=chunk_rows,
        previous_forward=model.__dict__.get("forward"),
    )
    # The check compares with transformers' own loss, which has neither option.
    setattr(model, _STATE, replace(state, label_smoothing=0.0, z_loss=0.0))
    head.register_forward_pre_hook(_capture_hidden)
    model.forward = types.MethodType(_forward_like(state.original(model)), model)
    try:
        _check(model, head, state)
    except BaseException:
        unpatch(model)
        raise
    setattr(model, _STATE, state)
    return model


def unpatch(model: Model) -> Model:
    """Undo :func:`patch`: ``model`` computes its loss from full logits again; returns it.

    Raises:
        ValueError: ``model`` is not patched.
    """
    state = model.__dict__.get(_STATE)
    if not isinstance(state, _Patch):
        raise ValueError(f"{type(model).__name__} is not patched by crossent.hf.patch")
    del model.__dict__["forward"]
    if state.previous_forward is not None:
        model.forward = state.previous_forward
    for module in model.modules():
        hooks = module._forward_pre_hooks
        for key in [key for key, hook in hooks.items() if hook is _capture_hidden]:
            del hooks[key]
    delattr(model, _STATE)
    return model


def is_patched(model: torch.nn.Module) -> bool:
    """Whether :func:`patch` has been applied to ``model`` (and not undone)."""
    return isinstance(model.__dict__.get(_STATE), _Patch)


def _output_embedding(model: torch.nn.Module) -> torch.nn.Linear:
    name = type(model).__name__
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    if head is None:
        raise ValueError(f"{name} has no output embedding (get_output_embeddings() gives None)")
    if not isinstance(head, torch.nn.Linear) or type(head).forward is not torch.nn.Linear.forward:
        raise ValueError(
            f"{name}'s output embedding is a {type(head).__name__}, not a torch.nn.Linear: "
            "crossent's fused loss needs logits = hidden @ weight.T + bias"
        )
    return head


def _capture_hidden(module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """While a patched forward with labels runs: keep the head's input, project nothing."""
    store = module.__dict__.get(_CAPTURE)
    if store is None:
        return None
    hidden = args[0]
    store.append(hidden)
    return (hidden[..., :0, :], *args[1:])  # (..., 0, d): logits (..., 0, V) cost nothing


def _forward_like(original: Callable[..., Any]) -> Callable[..., Any]:
    """A ``forward(self, ...)`` with ``original``'s signature, which ``Trainer`` inspects (its
    ``**kwargs`` is how Trainer decides to pass ``num_items_in_batch``)."""

    def forward(self: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        return _patched_forward(self, args, kwargs)

    signature = inspect.signature(original)
    first = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    forward.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[first, *signature.parameters.values()]
    )
    forward.__doc__ = original.__doc__
    return forward


def _patched_forward(model: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    state: _Patch = model.__dict__[_STATE]
    original = state.original(model)
    try:
        bound = inspect.signature(original).bind(*args, **kwargs)
    except TypeError:
        return original(*args, **kwargs)  # the model's own error for its own arguments
    arguments = _Arguments(bound)
    labels = arguments.get("labels")
    if labels is None:
        return original(*args, **kwargs)
    head = _output_embedding(model)
    if _capture_hidden not in head._forward_pre_hooks.values():
        raise ValueError(
            f"{type(model).__name__}'s output embedding changed since crossent.hf.patch: "
            "patch it again"
        )
    arguments.set("labels", None)
    return_dict = arguments.get("return_dict", getattr(model.config, "return_dict", True))
    arguments.set("return_dict", True)
    store: list[Tensor] = []
    setattr(head, _CAPTURE, store)
    try:
        output = original(*bound.args, **bound.kwargs)
    finally:
        setattr(head, _CAPTURE, None)
    if len(store) != 1:
        raise ValueError(
            f"{type(model).__name__}'s forward called its output embedding {len(store)} times, "
            "not once"
        )
    hidden = store[0]
    loss = _fused_loss(state, head, hidden, labels, arguments)
    logits = state.transform.apply(head(hidden)) if state.return_logits else None
    output = type(output)(**{**output, "loss": loss, "logits": logits})
    return output if return_dict else output.to_tuple()


class _Arguments:
    """A forward's bound arguments, whether named parameters or inside its ``**kwargs``."""

    def __init__(self, bound: inspect.BoundArguments) -> None:
        self.bound = bound
        parameters = bound.signature.parameters
        self.named = {n for n, p in parameters.items() if p.kind is not p.VAR_KEYWORD}
        var = [n for n, p in parameters.items() if p.kind is p.VAR_KEYWORD]
        self.extra: dict[str, Any] | None = None
        if var:
            self.extra = bound.arguments.setdefault(var[0], {})

    def get(self, name: str, default: Any = None) -> Any:
        if name in self.named:
            return self.bound.arguments.get(name, default)
        return default if self.extra is None else self.extra.get(name, default)

    def set(self, name: str, value: Any) -> None:
        if name in self.named:
            self.bound.arguments[name] = value
        elif self.extra is not None:
            self.extra[name] = value


def _fused_loss(
    state: _Patch, head: torch.nn.Linear, hidden: Tensor, labels: Tensor, arguments: _Arguments
) -> Tensor:
    """transformers' ``ForCausalLMLoss`` on ``transform(head(hidden))``, without the logits."""
    ignore_index = arguments.get("ignore_index", -100)
    target = arguments.get("shift_labels")
    if target is None:
        target = torch.nn.functional.pad(labels, (0, 1), value=ignore_index)[..., 1:]
    weight, bias = head.weight, head.bias
    flat = hidden.reshape(-1, hidden.shape[-1]).to(weight.device)  # (N, d)
    target = target.reshape(-1).to(weight.device)  # (N,)
    if target.numel() != flat.shape[0]:
        raise ValueError(
            f"labels give {target.numel()} targets but the output embedding is called on "
            f"{flat.shape[0]} positions (logits_to_keep with labels needs shift_labels to match)"
        )
    stats = linear_cross_entropy_with_stats(
        state.transform.scale(flat),
        weight,
        target,
        None if bias is None else state.transform.scale(bias),
        ignore_index=ignore_index,
        reduction="sum",
        label_smoothing=state.label_smoothing,
        z_loss=state.z_loss,
        softcap=state.transform.softcap,
        chunk_rows=state.chunk_rows,
    )
    total = stats.loss
    if total.dtype in (torch.float16, torch.bfloat16):
        # transformers reports a half model's loss in fp32; the fused sum is fp32 inside, so give
        # its value back unrounded (the gradient is the same).
        total = total.float()
        total = total + (stats.token_loss.sum().float() - total).detach()
    num_items = arguments.get("num_items_in_batch")
    if num_items is None:
        return total / max(stats.count, 1)
    if isinstance(num_items, Tensor):
        num_items = num_items.to(total.device)
    scaled: Tensor = total / num_items
    return scaled


def _check(model: torch.nn.Module, head: torch.nn.Linear, state: _Patch) -> None:
    """Run the model on a few tokens: its logits must be the transform's, its loss ours."""
    name = type(model).__name__
    embedding = getattr(model, "get_input_embeddings", lambda: None)()
    device = embedding.weight.device if embedding is not None else head.weight.device
    input_ids = (torch.arange(1, 7, device=device) * 31 % head.weight.shape[0])[None]  # (1, 6)
    training = {module: module.training for module in model.modules()}
    devices = [device] if device.type == "cuda" else []
    model.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            check_transform(model, head, state.transform, input_ids)
            theirs = state.original(model)(input_ids=input_ids, labels=input_ids).loss
            ours = model(input_ids=input_ids, labels=input_ids).loss
    except (RuntimeError, TypeError, AttributeError, KeyError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"crossent could not run {name} to check it: {first}") from None
    finally:
        for module, mode in training.items():
            module.training = mode
    difference = abs(float(theirs) - float(ours))
    if difference > tolerance(head.weight.dtype) * max(1.0, abs(float(theirs))):
        raise ValueError(
            f"{name}'s own loss ({float(theirs):.6g}) differs from the cross-entropy of its "
            f"logits ({float(ours):.6g}): it computes its loss in a way crossent does not know"
        )
