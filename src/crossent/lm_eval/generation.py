"""``generate_until`` for the ``crossent`` model: lm-eval generation requests, decoded by crossent.

A request is ``(context, gen_kwargs)``; its answer is the text the model writes after the context,
cut before the first stop string. The settings are read as lm-eval's ``hf`` model (``HFLM``)
reads them, with lm-eval's own helpers (``normalize_gen_kwargs``, ``handle_stop_sequences``):

* ``until``: a stop string or a list of them; the EOS token's text is added, as in ``HFLM``;
* ``max_gen_toks`` (or its aliases ``max_new_tokens``, ``max_tokens``...): the most new tokens,
  by default the model's ``max_gen_toks`` (256, as ``HFLM``'s);
* ``do_sample`` and ``temperature``: greedy decoding (the head's top-1 at each step, the lowest
  id on a tie) unless ``do_sample`` is true and the temperature above 0; ``do_sample`` without a
  temperature means temperature 1, transformers' default;
* ``top_k`` and ``top_p``: :func:`crossent.sampling.next_token_probabilities`' filters. Absent,
  nothing is filtered (transformers' ``generate`` would keep its default top 50).

Any other setting (``num_beams``, ``repetition_penalty``...) is refused in one line rather than
silently ignored. A row stops at the model's EOS token (and, for a Hugging Face model, the other
EOS ids of its generation config) or as soon as its text holds a stop string; the answer is the
new tokens decoded as ``HFLM`` decodes them (special tokens skipped) and cut before the first stop
string (``postprocess_generated_text``). Each step runs the model on the whole row again (the
:class:`~crossent.models.protocol.CausalLM` protocol has no KV cache), as
:func:`crossent.sample` does: exact for every model crossent loads, quadratic in the length.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs

from crossent.models import HFCausalLM
from crossent.models.protocol import CausalLM
from crossent.sampling import next_token_probabilities

__all__ = ["DEFAULT_MAX_GEN_TOKS", "Settings", "generate_rows", "read_settings", "request_seed"]

DEFAULT_MAX_GEN_TOKS = 256  # HFLM's
_SETTINGS = ("until", "max_gen_toks", "do_sample", "temperature", "top_k", "top_p")


@dataclass(frozen=True)
class Settings:
    """One request's generation settings, read from its ``gen_kwargs``.

    Attributes:
        until: The stop strings, the EOS token's text included.
        max_gen_toks: The most new tokens.
        temperature: 0 for greedy decoding, else the sampling temperature.
        top_k: Sample among the ``k`` most probable tokens only; ``None`` for all.
        top_p: Sample from the nucleus of probability ``p``; ``None`` for all.
    """

    until: tuple[str, ...]
    max_gen_toks: int
    temperature: float
    top_k: int | None
    top_p: float | None


def read_settings(
    gen_kwargs: Mapping[str, Any], default_max_gen_toks: int, eos_text: str | None
) -> Settings:
    """``gen_kwargs`` as ``HFLM.generate_until`` reads them (the module docstring).

    Raises:
        ValueError: a setting the crossent model does not implement, or one out of range.

    Example:
        >>> read_settings({"until": ["\\n"], "do_sample": False}, 256, "<eos>")
        Settings(until=('\\n', '<eos>'), max_gen_toks=256, temperature=0.0, top_k=None, top_p=None)
    """
    kwargs = dict(normalize_gen_kwargs(dict(gen_kwargs), default_max_gen_toks))
    unknown = sorted(set(kwargs) - set(_SETTINGS))
    if unknown:
        raise ValueError(
            f"generation setting {unknown[0]!r} is not supported by the crossent model (it "
            f"takes {', '.join(_SETTINGS)} and aliases of max_gen_toks)"
        )
    until = tuple(handle_stop_sequences(kwargs["until"], eos=eos_text))
    temperature = float(kwargs.get("temperature", 1.0)) if kwargs["do_sample"] else 0.0
    top_k = None if kwargs.get("top_k") is None else int(kwargs["top_k"])
    top_p = None if kwargs.get("top_p") is None else float(kwargs["top_p"])
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"generation setting temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"generation setting top_k must be at least 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"generation setting top_p must be in (0, 1], got {top_p}")
    if kwargs["max_gen_toks"] < 1:
        raise ValueError(f"max_gen_toks must be at least 1, got {kwargs['max_gen_toks']}")
    return Settings(until, int(kwargs["max_gen_toks"]), temperature, top_k, top_p)


def request_seed(seed: int, context: str, gen_kwargs: Mapping[str, Any], repeat: int) -> int:
    """The seed of one request's generator: a hash of ``seed``, the request and its repeat
    number (0 for its first occurrence), so that a request's sample depends on nothing else
    (not the batch size, not the other requests, not their order).

    >>> request_seed(1234, "Q: 2+2=", {"do_sample": True}, 0) == request_seed(
    ...     1234, "Q: 2+2=", {"do_sample": True}, 0)
    True
    """
    key = json.dumps([seed, context, gen_kwargs, repeat], sort_keys=True, default=repr)
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") >> 1


def stop_ids(model: CausalLM) -> frozenset[int]:
    """The tokens that end a row: EOS, and a Hugging Face model's generation-config EOS ids
    (``generate`` stops at those, so ``HFLM`` does)."""
    ids = {model.tokenizer.eos_token_id}
    if isinstance(model, HFCausalLM) and model.model.generation_config is not None:
        configured = model.model.generation_config.eos_token_id
        ids.update(configured if isinstance(configured, list) else [configured])
    return frozenset(token for token in ids if token is not None)


def generate_rows(
    model: CausalLM,
    contexts: Sequence[Sequence[int]],
    settings: Settings,
    generators: Sequence[torch.Generator] | None,
) -> list[list[int]]:
    """The new ids after each context, the rows generated together.

    Rows are right-padded: a causal model's position ``t`` reads positions ``<= t`` only, so
    padding after a row's last token changes nothing of it, and each row's next token comes
    from its own last position. A row leaves the batch when it ends (a stop id, or its text,
    decoded with special tokens, holds a stop string); the others go on.

    Args:
        model: Any model crossent loads.
        contexts: The rows' context ids; each at most ``context_length - max_gen_toks`` long.
        settings: The settings shared by every row.
        generators: One seeded generator per row for sampling; ``None`` when greedy.
    """
    ends = stop_ids(model)
    new: list[list[int]] = [[] for _ in contexts]
    active = list(range(len(contexts)))
    device = model.device
    for _ in range(settings.max_gen_toks):
        rows = [[*contexts[index], *new[index]] for index in active]
        padded = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)  # (B, T)
        for number, row in enumerate(rows):
            padded[number, : len(row)] = torch.tensor(row)
        last = torch.tensor([len(row) - 1 for row in rows], device=device)
        with torch.inference_mode():
            hidden = model.hidden_states(padded.to(device))  # (B, T, d)
            hidden = hidden[torch.arange(len(rows), device=device), last]  # (B, d)
            logits = torch.nn.functional.linear(hidden, model.head_weight, model.head_bias)
        chosen = None if generators is None else [generators[index] for index in active]
        tokens = _next_tokens(logits.float(), settings, chosen)
        for index, token in zip(active, tokens, strict=True):
            new[index].append(token)
        active = [
            index
            for index in active
            if new[index][-1] not in ends
            and not _stopped(model.tokenizer.decode, new[index], settings)
        ]
        if not active:
            break
    return new


def _next_tokens(
    logits: torch.Tensor, settings: Settings, generators: Sequence[torch.Generator] | None
) -> list[int]:
    """One next token per row of ``[B, V]`` logits: the top-1, or a draw from each row's own
    generator."""
    if generators is None:
        return [int(token) for token in logits.argmax(dim=-1).tolist()]
    probabilities = next_token_probabilities(
        logits, temperature=settings.temperature, top_k=settings.top_k, top_p=settings.top_p
    )  # (B, V) float64
    return [
        int(torch.multinomial(row, 1, generator=generator).item())
        for row, generator in zip(probabilities, generators, strict=True)
    ]


def _stopped(decode: Callable[[Sequence[int]], str], ids: list[int], settings: Settings) -> bool:
    text = decode(ids)
    return any(stop and stop in text for stop in settings.until)
