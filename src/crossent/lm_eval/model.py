"""The ``crossent`` model of lm-evaluation-harness: log-likelihoods from the fused head.

:class:`CrossentLM` scores lm-eval's requests with any model :func:`crossent.models.load_model`
loads (the embedded SmolLM2, a Hugging Face directory, a ``.gguf`` file, a crossent checkpoint):
the final hidden states go through :func:`crossent.linear_cross_entropy_with_stats` on the
model's own head, so no ``[tokens, V]`` logits tensor is held, however large the vocabulary.

What it computes is what lm-eval's own ``hf`` model (``HFLM``) computes, request by request:

* ``loglikelihood``: the context and continuation are tokenized as lm-eval's ``TemplateLM``
  does (trailing spaces of the context move to the continuation, the pair is encoded whole and
  split at the context's length, an empty context becomes the prefix token), truncated from the
  left to ``max_length + 1`` tokens, and scored on the continuation's tokens: the sum of their
  log-probabilities (nats) and ``is_greedy``, true when each is the head's top-1.
* ``loglikelihood_rolling``: the document is cut into crossent's rolling windows
  (:mod:`crossent.data.windows`) with the window and stride equal to ``max_length`` and the
  prefix token before the first, which are lm-eval's disjoint rolling windows exactly.
* Text is encoded as ``HFLM`` encodes it: with a Hugging Face tokenizer, by
  ``tokenizer.encode`` with its own special-token default (so a tokenizer that adds BOS adds it
  here too), unless the text already starts with the prefix token's text; a crossent GPT's
  tokenizer adds no special token. The prefix token is BOS, else EOS.

* ``generate_until``: crossent's own decoding (:mod:`crossent.lm_eval.generation`), greedy
  unless a request asks to sample, with ``HFLM``'s reading of ``until``, ``max_gen_toks``,
  ``do_sample`` and ``temperature``; the context is encoded as a loglikelihood context is (an
  empty one becomes the prefix token) and truncated from the left to
  ``max_length - max_gen_toks`` tokens. Greedy answers equal ``HFLM``'s. A sampled answer
  comes from a generator of its own, seeded from ``seed``, the request and its repeat number
  (:func:`~crossent.lm_eval.generation.request_seed`): the same seed gives the same answers
  whatever the batch size or the order of the requests; the default seed is
  ``torch.initial_seed()``, which lm-eval's ``--seed`` sets (its fourth value, 1234 unless
  told), so the answers follow ``--seed`` as ``HFLM``'s do. The draws differ from
  ``HFLM``'s, whose generator is the global one, shared by every request in turn.

``batch_size`` is an integer, or ``auto`` (``auto:N`` alike): each batch then holds as many
rows as an estimate of the trunk's memory fits in half the memory available, at most
``max_batch_size`` (:mod:`crossent.lm_eval.batching` has the rule). It never changes a result.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import torch
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import postprocess_generated_text

from crossent.data import Window, rolling_windows
from crossent.lm_eval.batching import MemoryBudget, parse_batch_size
from crossent.lm_eval.generation import (
    DEFAULT_MAX_GEN_TOKS,
    generate_rows,
    read_settings,
    request_seed,
)
from crossent.losses.linear import linear_cross_entropy_with_stats
from crossent.models import load_model
from crossent.models.protocol import CausalLM

__all__ = ["DTYPES", "CrossentLM"]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DEFAULT_BATCH_SIZE = 1  # lm-eval's own default


@register_model("crossent")
class CrossentLM(TemplateLM):  # type: ignore[misc]  # lm-eval has no type hints
    """A crossent :class:`~crossent.models.CausalLM` seen through lm-eval's ``LM`` interface.

    Args:
        pretrained: What ``crossent eval --model`` takes (default: the embedded
            ``smollm2-135m``), or an already loaded :class:`~crossent.models.CausalLM`.
        dtype: ``float32`` (default), ``bfloat16`` or ``float16``, as a name or a torch dtype.
        device: ``cpu``, ``cuda``, ``cuda:1``...; default: CUDA when present. CUDA asked for
            on a machine without it means the CPU, as lm-eval's ``hf`` model does.
        batch_size: Requests (or rolling windows, or rows generated together) per forward
            pass: an integer, or ``auto`` / ``auto:N``, as many as fit (the module docstring).
        max_length: The most tokens one forward pass reads; default: the model's context.
        max_batch_size: The most rows ``batch_size=auto`` puts in a batch; default 64.
        add_bos_token: As ``HFLM``'s: force the Hugging Face tokenizer to add (or not add)
            its special tokens; default: the tokenizer's own choice.
        max_gen_toks: The most tokens ``generate_until`` writes for a request that does not
            say; default 256, as ``HFLM``'s.
        seed: Seeds the sampled answers of ``generate_until``; default
            ``torch.initial_seed()`` when generation starts.

    Raises:
        ValueError: an unknown ``dtype``, a ``batch_size`` that is not a positive integer,
            ``auto`` or ``auto:N``, or a ``max_length`` outside ``[1, the model's context]``.

    Example:
        >>> import lm_eval  # doctest: +SKIP
        >>> model = CrossentLM("path/to/model", batch_size=8)  # doctest: +SKIP
        >>> lm_eval.simple_evaluate(model=model, tasks=["lambada_openai"])  # doctest: +SKIP
    """

    def __init__(
        self,
        pretrained: str | CausalLM | None = None,
        *,
        dtype: str | torch.dtype = "float32",
        device: str | None = None,
        batch_size: int | str = DEFAULT_BATCH_SIZE,
        max_length: int | None = None,
        max_batch_size: int | None = None,
        add_bos_token: bool | None = None,
        max_gen_toks: int = DEFAULT_MAX_GEN_TOKS,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        fixed = parse_batch_size(batch_size)
        if isinstance(pretrained, CausalLM):
            self.model = pretrained
        else:
            self.model = load_model(pretrained, dtype=_dtype(dtype), device=_device(device))
        context = self.model.context_length
        self.max_length = context if max_length is None else int(max_length)
        if not 1 <= self.max_length <= context:
            raise ValueError(
                f"max_length {self.max_length} is outside [1, {context}] (the model's context)"
            )
        self.add_bos_token = add_bos_token
        self.max_gen_toks = int(max_gen_toks)
        self.seed = seed
        self._encode = _encoder(self.model, self.prefix_token_id, add_bos_token)
        self._budget = None if fixed else MemoryBudget.of(self.model, max_batch_size)
        self.batch_size = fixed or self.rows_per_batch(self.max_length)

    def rows_per_batch(self, length: int) -> int:
        """Rows of up to ``length`` tokens in one forward pass: ``batch_size``, or with
        ``auto`` what the memory estimate allows (:mod:`crossent.lm_eval.batching`)."""
        if self._budget is None:
            return self.batch_size
        return self._budget.rows(length)

    @property
    def eot_token_id(self) -> int:
        token = self.model.tokenizer.eos_token_id
        if token is None:
            raise ValueError(f"model {self.model.name} has no EOS token")
        return token

    @property
    def prefix_token_id(self) -> int:
        """BOS, else EOS, as ``HFLM`` (and ``crossent eval``) put before a text."""
        token = self.model.tokenizer.bos_token_id
        return self.eot_token_id if token is None else token

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def tokenizer_name(self) -> str:
        return self.model.name.replace("/", "__")

    def tok_encode(
        self, string: str, add_special_tokens: bool | None = None, **kwargs: Any
    ) -> list[int]:
        """The ids of ``string`` as ``HFLM.tok_encode`` makes them (the module docstring)."""
        return self._encode(string, add_special_tokens)

    def _loglikelihood_tokens(
        self, requests: list[tuple[Any, list[int], list[int]]], **kwargs: Any
    ) -> list[tuple[float, bool]]:
        """``(log p of the continuation, is greedy)`` per ``(key, context ids, continuation
        ids)``, the context truncated from the left to fit ``max_length``."""
        windows = [
            self._request_window(context, continuation) for _, context, continuation in requests
        ]
        results = []
        for nats, scored, correct in self._score(windows):
            results.append((-nats, correct == scored))
        return results

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        """The log-likelihood of each whole text (nats), through windows of ``max_length``."""
        owners: list[int] = []
        windows: list[Window] = []
        for number, request in enumerate(requests):
            (text,) = request.args
            ids = self.tok_encode(text)
            if ids:  # lm-eval gives an empty text no window and a log-likelihood of 0
                cut = rolling_windows(ids, self.prefix_token_id, self.max_length, self.max_length)
                windows.extend(cut)
                owners.extend([number] * len(cut))
        totals = [0.0] * len(requests)
        for owner, (nats, _, _) in zip(owners, self._score(windows), strict=True):
            totals[owner] -= nats
        for request, total in zip(requests, totals, strict=True):
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, total)
        return totals

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        """The answer to each ``(context, gen_kwargs)`` request (the module docstring).

        Requests with the same ``gen_kwargs`` are generated together, longest context first,
        as ``HFLM`` orders them; a batch's rows are counted from its longest context plus
        ``max_gen_toks``.

        Raises:
            ValueError: a generation setting the crossent model does not implement or that is
                out of range, or ``max_gen_toks`` that leaves no room for a context.
        """
        seed = torch.initial_seed() if self.seed is None else self.seed
        groups: dict[str, list[int]] = {}
        for number, request in enumerate(requests):
            settings_key = json.dumps(request.args[1], sort_keys=True, default=repr)
            groups.setdefault(settings_key, []).append(number)
        repeats: Counter[str] = Counter()
        answers = [""] * len(requests)
        for numbers in groups.values():
            gen_kwargs = requests[numbers[0]].args[1]
            settings = read_settings(gen_kwargs, self.max_gen_toks, self._eos_text)
            room = self.max_length - settings.max_gen_toks
            if room < 1:
                raise ValueError(
                    f"max_gen_toks {settings.max_gen_toks} leaves no room for a context in "
                    f"max_length {self.max_length}"
                )
            contexts = {n: self._context_ids(requests[n].args[0], room) for n in numbers}
            order = sorted(numbers, key=lambda n: -len(contexts[n]))
            start = 0
            while start < len(order):
                rows = self.rows_per_batch(len(contexts[order[start]]) + settings.max_gen_toks)
                batch = order[start : start + rows]
                start += len(batch)
                generators = None
                if settings.temperature > 0:
                    generators = self._generators([requests[n].args for n in batch], seed, repeats)
                new = generate_rows(self.model, [contexts[n] for n in batch], settings, generators)
                for n, ids in zip(batch, new, strict=True):
                    answers[n] = postprocess_generated_text(self._decode(ids), settings.until, None)
                    self.cache_hook.add_partial("generate_until", requests[n].args, answers[n])
        return answers

    def _generators(
        self, arguments: list[tuple[str, dict[str, Any]]], seed: int, repeats: Counter[str]
    ) -> list[torch.Generator]:
        """One generator per request, seeded by :func:`request_seed` (``repeats`` counts the
        requests seen before, so that a repeated request draws anew)."""
        generators = []
        for context, gen_kwargs in arguments:
            key = json.dumps([context, gen_kwargs], sort_keys=True, default=repr)
            generator = torch.Generator(self.device)
            generator.manual_seed(request_seed(seed, context, gen_kwargs, repeats[key]))
            repeats[key] += 1
            generators.append(generator)
        return generators

    @property
    def _eos_text(self) -> str:
        """The EOS token's text, a stop string of every request as in ``HFLM``."""
        return self.model.tokenizer.decode([self.eot_token_id])

    def _context_ids(self, context: str, room: int) -> list[int]:
        """A generation context's ids, the last ``room`` of them; an empty one is the prefix
        token."""
        return (self.tok_encode(context) or [self.prefix_token_id])[-room:]

    def _decode(self, ids: list[int]) -> str:
        """New ids as ``HFLM`` decodes them: the Hugging Face tokenizer's ``decode``, special
        tokens skipped; crossent's own decoding for a tokenizer without one."""
        hf_tokenizer = getattr(self.model.tokenizer, "hf_tokenizer", None)
        if hf_tokenizer is None:
            return self.model.tokenizer.decode(ids)
        return str(hf_tokenizer.decode(ids, skip_special_tokens=True))

    def _request_window(self, context: list[int], continuation: list[int]) -> Window:
        """The forward pass of one request: input ``(context + continuation)[:-1]`` at most
        ``max_length`` long, scoring the continuation's positions only."""
        if not context or not continuation:
            raise ValueError("a loglikelihood request needs context and continuation tokens")
        if len(continuation) > self.max_length:
            raise ValueError(
                f"a continuation of {len(continuation)} tokens exceeds max_length {self.max_length}"
            )
        tokens = (context + continuation)[-(self.max_length + 1) :]
        return Window(
            tokens=tokens[:-1],
            targets=tokens[1:],
            score_from=len(tokens) - 1 - len(continuation),
        )

    def _score(self, windows: Sequence[Window]) -> list[tuple[float, int, int]]:
        """(summed nats, scored tokens, top-1 hits) per window, in the windows' order.

        Windows with the same input (the choices of a multiple-choice question that differ in
        their last token only) share one forward pass, as ``HFLM``'s one-token-continuation
        cache shares one; batches hold ``batch_size`` distinct inputs of similar lengths
        (longest first, as lm-eval sorts), so little padding is computed.
        """
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, window in enumerate(windows):
            groups.setdefault(tuple(window.tokens), []).append(index)
        inputs = sorted(groups, key=lambda tokens: -len(tokens))
        sums: list[tuple[float, int, int]] = [(0.0, 0, 0)] * len(windows)
        start = 0
        with torch.inference_mode():
            while start < len(inputs):
                batch = inputs[start : start + self.rows_per_batch(len(inputs[start]))]
                start += len(batch)
                members = [[windows[index] for index in groups[tokens]] for tokens in batch]
                results = self._score_batch(batch, members)
                indices = [index for tokens in batch for index in groups[tokens]]
                for index, result in zip(indices, results, strict=True):
                    sums[index] = result
        return sums

    def _score_batch(
        self, inputs: list[tuple[int, ...]], members: list[list[Window]]
    ) -> list[tuple[float, int, int]]:
        """One forward pass of the distinct ``inputs`` (right-padded), then the fused head on
        the scored positions of every window sharing each input."""
        device = self.model.device
        padded = torch.zeros(len(inputs), max(map(len, inputs)), dtype=torch.long)
        for row, tokens in enumerate(inputs):
            padded[row, : len(tokens)] = torch.tensor(tokens)
        hidden = self.model.hidden_states(padded.to(device))  # (B, T, d)
        rows: list[int] = []
        positions: list[int] = []
        targets: list[int] = []
        counts: list[int] = []
        for row, windows in enumerate(members):
            for window in windows:
                scored = range(window.score_from, len(window.targets))
                rows += [row] * len(scored)
                positions += scored
                targets += window.targets[window.score_from :]
                counts.append(len(scored))
        stats = linear_cross_entropy_with_stats(
            hidden[torch.tensor(rows, device=device), torch.tensor(positions, device=device)],
            self.model.head_weight,
            torch.tensor(targets, device=device),
            self.model.head_bias,
            reduction="sum",
        )  # one row per scored token: no [tokens, V] logits held
        nats = torch.split(stats.token_loss.double(), counts)
        correct = torch.split(stats.correct, counts)
        return [
            (float(window_nats.sum()), len(hits), int(hits.sum()))
            for window_nats, hits in zip(nats, correct, strict=True)
        ]


def _encoder(
    model: CausalLM, prefix_token: int, add_bos_token: bool | None
) -> Callable[[str, bool | None], list[int]]:
    """``HFLM.tok_encode`` for ``model``'s tokenizer: the Hugging Face tokenizer's own
    ``encode`` where there is one, crossent's (no special tokens) otherwise."""
    hf_tokenizer = getattr(model.tokenizer, "hf_tokenizer", None)
    if hf_tokenizer is None:
        return lambda text, add_special_tokens: model.tokenizer.encode(text)
    prefix_text = hf_tokenizer.decode(prefix_token)

    def encode(text: str, add_special_tokens: bool | None) -> list[int]:
        if add_special_tokens is None:
            add_special_tokens = add_bos_token
            if text.startswith(prefix_text):
                add_special_tokens = False
        options = {} if add_special_tokens is None else {"add_special_tokens": add_special_tokens}
        return list(hf_tokenizer.encode(text, **options))

    return encode


def _device(device: str | None) -> str | None:
    """``device``, except that CUDA on a machine without it means the default (the CPU), as for
    ``HFLM``: lm-eval's command line passes ``cuda:0`` when no ``--device`` is given."""
    if device is not None and device.startswith("cuda") and not torch.cuda.is_available():
        return None
    return device


def _dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    return DTYPES[dtype]
