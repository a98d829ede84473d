"""Text from a causal language model, one token at a time, with the model's loss on what it wrote.

:func:`sample` (and :func:`iter_samples`, which streams) continues a prompt with tokens drawn
from the model's next-token distribution, reshaped by three filters applied in this order, as
transformers' ``generate`` applies them:

1. **temperature** ``T``: logits divided by ``T``. ``T = 0`` means greedy decoding, the most
   probable token every time (the lowest id on a tie), with no randomness at all;
2. **top-k**: keep the tokens whose logit is at least the ``k``-th largest (more than ``k`` on a
   tie at the boundary, as nanoGPT and transformers do), the rest get probability 0;
3. **top-p** (nucleus): keep the smallest set of most probable tokens whose probability sums to
   at least ``p``, always the most probable one; the kept probabilities are renormalised.

:func:`next_token_probabilities` is that distribution, in float64, so it can be checked.

Each :class:`Sample` also carries the model's own cross-entropy of the tokens it generated:
``-ln p(token | context)`` under the model's plain distribution (temperature 1, no filter), in
nats, exactly the per-token loss ``crossent eval`` and training average. At temperature 1 with
no filter its mean estimates the model's entropy rate, the loss it would have on its own text;
lower temperatures and tighter filters pick likelier tokens, so the mean falls below that.

The :class:`~crossent.models.protocol.CausalLM` protocol offers no KV cache, so each step runs
the model on the whole context again, cropped to the model's context length as nanoGPT's
``sample.py`` does: exact for every kind of model crossent loads, quadratic in the length, and
quick enough for the few hundred tokens one reads to see what a loss means.

Before the prompt comes a prefix token, as :func:`crossent.evaluate` puts one before each
document (BOS, else EOS, unless ``prefix="none"``), so the prompt is read as a document's start.
Generation stops after ``max_new_tokens`` or at the EOS token (kept in the ids and nats, left out
of the text), unless ``stop_at_eos=False``.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from crossent.data.stream import Prefix, choose_prefix

if TYPE_CHECKING:
    from crossent.models.protocol import CausalLM, Tokenizer

__all__ = ["Sample", "iter_samples", "next_token_probabilities", "sample"]


@dataclass(frozen=True)
class Sample:
    """One continuation of the prompt.

    Attributes:
        prompt: The prompt it continues.
        text: The generated text alone (without the prompt, and without the EOS token).
        token_ids: The generated token ids, the EOS that stopped it included.
        nats: For each generated token, ``-ln p(token | context)`` under the model's own
            distribution (temperature 1, no filter), in nats.
        stopped_at_eos: Whether the EOS token ended it before ``max_new_tokens``.
    """

    prompt: str
    text: str
    token_ids: tuple[int, ...]
    nats: tuple[float, ...]
    stopped_at_eos: bool

    @property
    def mean_nats(self) -> float:
        """The model's mean cross-entropy of the generated tokens, nats per token."""
        return math.fsum(self.nats) / len(self.nats)


def next_token_probabilities(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> torch.Tensor:
    """The distribution the next token is drawn from: ``[..., V]`` logits -> float64 ``[..., V]``.

    Args:
        logits: The model's next-token logits, any float dtype.
        temperature: ``T >= 0``; the logits are divided by it, and 0 means greedy (a one-hot
            distribution on the largest logit, the lowest id on a tie).
        top_k: Keep only the tokens whose logit is at least the ``k``-th largest; ``None`` keeps
            all.
        top_p: Keep the smallest set of most probable tokens (after temperature and top-k) whose
            probability sums to at least ``p``, in ``(0, 1]``; ``None`` or 1 keeps all.

    Raises:
        ValueError: ``temperature``, ``top_k`` or ``top_p`` is out of range.

    Example:
        >>> probabilities = next_token_probabilities(torch.tensor([2.0, 1.0, 0.0]), top_k=2)
        >>> [round(p, 4) for p in probabilities.tolist()]  # softmax of [2, 1]; 0 is dropped
        [0.7311, 0.2689, 0.0]
    """
    _check_filters(temperature, top_k, top_p)
    logits = logits.double()
    if temperature == 0:
        greedy = logits.argmax(dim=-1, keepdim=True)
        return torch.zeros_like(logits).scatter_(-1, greedy, 1.0)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]  # (..., 1)
        logits = logits.masked_fill(logits < kth, -math.inf)
    probabilities = torch.softmax(logits, dim=-1)
    if top_p is not None and top_p < 1:
        ordered, order = torch.sort(probabilities, dim=-1, descending=True)
        before = torch.cumsum(ordered, dim=-1) - ordered  # the mass of the more probable ones
        dropped = torch.zeros_like(ordered, dtype=torch.bool).scatter(-1, order, before >= top_p)
        probabilities = probabilities.masked_fill(dropped, 0.0)
        probabilities = probabilities / probabilities.sum(dim=-1, keepdim=True)
    return probabilities


def sample(
    model: CausalLM,
    prompt: str = "",
    *,
    max_new_tokens: int = 100,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    num_samples: int = 1,
    seed: int | None = None,
    prefix: Prefix | None = None,
    stop_at_eos: bool = True,
) -> list[Sample]:
    """Continue ``prompt`` ``num_samples`` times with text the model generates.

    Args:
        model: Any model crossent loads (:func:`crossent.models.load_model`).
        prompt: The text to continue; may be empty when the model has a prefix token.
        max_new_tokens: The most tokens to generate per sample.
        temperature: ``T >= 0``; 0 is greedy decoding (see :func:`next_token_probabilities`).
        top_k: Sample among the ``k`` most probable tokens only; ``None`` for all.
        top_p: Sample from the nucleus of probability ``p`` in ``(0, 1]``; ``None`` for all.
        num_samples: How many continuations, generated one after the other.
        seed: Seeds the random draws, so the same seed, model and settings give the same text
            on the same device; ``None`` draws a fresh seed.
        prefix: The token before the prompt: ``"bos"``, ``"eos"`` or ``"none"`` (default BOS,
            else EOS), as :func:`crossent.evaluate` puts one before each document.
        stop_at_eos: Stop a sample when it generates the EOS token.

    Returns:
        One :class:`Sample` per continuation.

    Raises:
        ValueError: A setting is out of range, the model lacks the prefix token asked for, or
            the prompt is empty with no prefix token to start from.

    Example:
        >>> from crossent.models import load_model
        >>> model = load_model()  # doctest: +SKIP
        >>> prompt = "The capital of France is"
        >>> (greedy,) = sample(model, prompt, max_new_tokens=5, temperature=0)  # doctest: +SKIP
        >>> greedy.text, round(greedy.nats[0], 2), round(greedy.mean_nats, 2)  # doctest: +SKIP
        (' Paris.\n\nThe', 0.29, 1.07)
    """
    samples = iter_samples(
        model, prompt, max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
        top_p=top_p, num_samples=num_samples, seed=seed, prefix=prefix, stop_at_eos=stop_at_eos,
    )  # fmt: skip
    return list(samples)


def iter_samples(
    model: CausalLM,
    prompt: str = "",
    *,
    max_new_tokens: int = 100,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    num_samples: int = 1,
    seed: int | None = None,
    prefix: Prefix | None = None,
    stop_at_eos: bool = True,
    on_text: Callable[[str], None] | None = None,
) -> Iterator[Sample]:
    """:func:`sample`, one :class:`Sample` at a time as each is done, its text streamed.

    The arguments are :func:`sample`'s; they are checked before the first sample is generated.

    Args:
        on_text: Called with each new piece of the current sample's text as it grows, for
            streaming; a piece never ends inside a character that later tokens complete, and
            a sample's pieces add up to its ``text``.

    Raises:
        ValueError: As :func:`sample`, when the first sample is asked for.
    """
    _check_filters(temperature, top_k, top_p)
    for name, value in (("max_new_tokens", max_new_tokens), ("num_samples", num_samples)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    prompt_ids = model.tokenizer.encode(prompt)
    start = _prefix_ids(model, prefix) + prompt_ids
    if not start:
        raise ValueError(
            f"the prompt is empty and model {model.name!r} has no prefix token to start from "
            "(prefix 'none', or no BOS or EOS token): give a prompt"
        )
    generator = torch.Generator(model.device)
    generator.manual_seed(secrets.randbits(63) if seed is None else seed)
    eos = model.tokenizer.eos_token_id if stop_at_eos else None
    filters = (temperature, top_k, top_p)
    for _ in range(num_samples):
        stream = None if on_text is None else _Stream(model.tokenizer, prompt_ids, on_text)
        grow = None if stream is None else stream.grow
        ids, nats = _generate(model, start, max_new_tokens, filters, generator, eos, grow)
        stopped = eos is not None and ids[-1] == eos
        text_ids = ids[:-1] if stopped else ids
        text = _continuation(model.tokenizer, prompt_ids, text_ids)
        if stream is not None:
            stream.send(text)
        yield Sample(prompt, text, tuple(ids), tuple(nats), stopped)


def _generate(
    model: CausalLM,
    start: list[int],
    max_new_tokens: int,
    filters: tuple[float, int | None, float | None],
    generator: torch.Generator,
    eos: int | None,
    on_token: Callable[[list[int]], None] | None,
) -> tuple[list[int], list[float]]:
    """Generate up to ``max_new_tokens`` after ``start``: the new ids and their nats."""
    temperature, top_k, top_p = filters
    context = torch.tensor([start], dtype=torch.long, device=model.device)  # (1, T)
    ids: list[int] = []
    nats: list[float] = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            hidden = model.hidden_states(context[:, -model.context_length :])[:, -1]  # (1, d)
            logits = torch.nn.functional.linear(hidden, model.head_weight, model.head_bias)
            probabilities = next_token_probabilities(
                logits, temperature=temperature, top_k=top_k, top_p=top_p
            )  # (1, V) float64
            if temperature == 0:
                token = probabilities.argmax(dim=-1, keepdim=True)  # (1, 1)
            else:
                token = torch.multinomial(probabilities, 1, generator=generator)  # (1, 1)
            log_probabilities = torch.log_softmax(logits.double(), dim=-1)  # (1, V)
            ids.append(int(token.item()))
            nats.append(-float(log_probabilities[0, ids[-1]].item()))
            if ids[-1] == eos:
                break
            if on_token is not None:
                on_token(ids)
            context = torch.cat([context, token], dim=1)
    return ids, nats


def _prefix_ids(model: CausalLM, prefix: Prefix | None) -> list[int]:
    chosen, token = choose_prefix(model.tokenizer, prefix)
    if token is None and chosen != "none" and prefix is not None:
        raise ValueError(f"model {model.name!r} has no {chosen.upper()} token; use another prefix")
    return [] if token is None else [token]


def _continuation(tokenizer: Tokenizer, prompt_ids: Sequence[int], ids: Sequence[int]) -> str:
    """The text ``ids`` add to the prompt's, decoded in context (a tokenizer may decode a
    token differently at the start of a text)."""
    head = tokenizer.decode(prompt_ids)
    whole = tokenizer.decode([*prompt_ids, *ids])
    return whole[len(head) :] if whole.startswith(head) else tokenizer.decode(ids)


class _Stream:
    """Hands out a sample's text as it grows, holding back an unfinished character."""

    def __init__(
        self, tokenizer: Tokenizer, prompt_ids: list[int], on_text: Callable[[str], None]
    ) -> None:
        self._tokenizer = tokenizer
        self._prompt_ids = prompt_ids
        self._on_text = on_text
        self._sent = ""

    def grow(self, ids: Sequence[int]) -> None:
        text = _continuation(self._tokenizer, self._prompt_ids, ids)
        self.send(text.rstrip("\ufffd"))  # U+FFFD: the bytes of a character still to come

    def send(self, text: str) -> None:
        """Hand out what ``text`` adds to the text sent so far."""
        if text.startswith(self._sent) and len(text) > len(self._sent):
            self._on_text(text[len(self._sent) :])
            self._sent = text


def _check_filters(temperature: float, top_k: int | None, top_p: float | None) -> None:
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
