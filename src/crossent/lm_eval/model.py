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

``generate_until`` is not supported: it raises ``NotImplementedError`` in one line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model

from crossent.data import Window, rolling_windows
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
        batch_size: Requests (or rolling windows) per forward pass; an integer.
        max_length: The most tokens one forward pass reads; default: the model's context.
        max_batch_size: Accepted because lm-eval always passes it; used with
            ``batch_size=auto`` only, which is not supported.
        add_bos_token: As ``HFLM``'s: force the Hugging Face tokenizer to add (or not add)
            its special tokens; default: the tokenizer's own choice.

    Raises:
        ValueError: an unknown ``dtype``, a ``batch_size`` that is not a positive integer,
            or a ``max_length`` outside ``[1, the model's context]``.

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
    ) -> None:
        super().__init__()
        del max_batch_size  # only for batch_size=auto
        self.batch_size = _batch_size(batch_size)
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
        self._encode = _encoder(self.model, self.prefix_token_id, add_bos_token)

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
        raise NotImplementedError(
            "the crossent model scores text (loglikelihood, loglikelihood_rolling) but does not "
            "generate: run generative tasks with lm-eval's hf model"
        )

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
        with torch.inference_mode():
            for start in range(0, len(inputs), self.batch_size):
                batch = inputs[start : start + self.batch_size]
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


def _batch_size(batch_size: int | str) -> int:
    try:
        value = int(batch_size)
    except ValueError:
        raise ValueError(
            f"batch_size {batch_size!r} is not supported by the crossent model: give a "
            "positive integer (it holds no logits, so a large batch fits)"
        ) from None
    if value < 1:
        raise ValueError(f"batch_size {value} is not a positive integer")
    return value
