"""What :func:`crossent.evaluation.evaluate` returns: per-document sums, per-token scores, the
result with its provenance, and the JSON shape of each.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from crossent.calibration import CalibrationResult
from crossent.data.conventions import Convention, Tally, describe, llama_cpp_uncertainty
from crossent.data.stream import Prefix
from crossent.data.tokens import show_bytes
from crossent.metrics import NLLMeter, NLLResult
from crossent.scoring import PositionBucket
from crossent.uncertainty import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    DocumentBootstrap,
    bootstrap_documents,
)


@dataclass(frozen=True)
class DocumentScore:
    """One document's sums. ``nll_nats`` is its summed negative log-likelihood.

    ``bytes`` and ``words`` are those the scored tokens cover (:mod:`crossent.data.counts`);
    ``unscored_bytes`` and ``unscored_words`` are the first token's when it is context only (no
    prefix token), and ``truncated`` says the document was cut short by ``max_tokens``.
    ``tally`` says how the convention cut it (None for a score built by hand).
    """

    name: str
    tokens: int
    bytes: int
    words: int
    nll_nats: float
    correct: int
    unscored_bytes: int = 0
    unscored_words: int = 0
    truncated: bool = False
    nll_squared: float | None = None

    def meter(self) -> NLLMeter:
        """This document's sums as a meter, to merge into a total."""
        return NLLMeter(
            self.nll_nats, self.tokens, self.bytes, self.words, self.correct, self.nll_squared
        )

    tally: Tally | None = None

    def result(self) -> NLLResult:
        """This document's metrics in every unit."""
        return self.meter().result()

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of one document in ``crossent eval --json``: sums and metrics."""
        return {
            "name": self.name,
            **_metrics_dict(self.result()),
            "unscored_bytes": self.unscored_bytes,
            "unscored_words": self.unscored_words,
            "truncated": self.truncated,
            **(
                {"tokens_scored": self.tally.scored, "tokens_unscored": self.tally.unscored}
                if self.tally is not None
                else {}
            ),
        }


def bootstrap_scores(
    documents: Sequence[DocumentScore],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> DocumentBootstrap | None:
    """The seeded bootstrap over these documents (:func:`crossent.uncertainty.bootstrap_documents`);
    None with fewer than two."""
    return bootstrap_documents(
        [document.nll_nats for document in documents],
        [document.tokens for document in documents],
        [document.bytes for document in documents],
        resamples=resamples,
        seed=seed,
    )


def _metrics_dict(metrics: NLLResult) -> dict[str, Any]:
    return {key: value for key, value in metrics.to_dict().items() if key != "correct"}


@dataclass(frozen=True)
class Inputs:
    """Where the documents came from, for the record (:func:`evaluate` does not read them).

    Attributes:
        paths: the paths read; ``crossent eval`` records the default text by its name
            (:func:`crossent.data.sources.default_text_name`).
        max_chars: each text was cut to its first ``max_chars`` characters, or None.
    """

    paths: tuple[str, ...] = ()
    max_chars: int | None = None


@dataclass(frozen=True)
class Provenance:
    """What produced a result, so that its numbers can be told apart from others'.

    Attributes:
        crossent_version: the version of crossent that scored.
        model: the model as the user named it.
        description: what its weights are (:attr:`crossent.models.CausalLM.description`),
            e.g. the default's "SmolLM2-135M-Instruct, Q4_1 GGUF (...) dequantised to float32".
        quantisation: the GGUF file type the weights were dequantised from (``"Q4_1"``), or
            None when they were never quantised.
        dtype: the dtype the model ran in (``"float32"``).
        device: where it ran (``"cpu"``, ``"cuda:0"``).
        batch_size: the full windows per forward pass (bf16 numbers move with it).
        inputs: the documents' paths and character cut.
        max_tokens: the cap on scored tokens, or None.
        max_documents: the cap on documents read, or None.
    """

    crossent_version: str
    model: str
    description: str
    quantisation: str | None
    dtype: str
    device: str
    batch_size: int
    inputs: Inputs
    max_tokens: int | None
    max_documents: int | None

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``crossent eval --json``'s ``provenance``."""
        record = asdict(self)
        record["data"] = list(self.inputs.paths)
        record["max_chars"] = self.inputs.max_chars
        del record["inputs"]
        return record


def top_alternatives(
    ids: Sequence[int], texts: Sequence[str], probs: Sequence[float]
) -> list[dict[str, Any]]:
    """The top-k alternatives as every output writes them: ``{"id", "text", "prob"}`` each.

    The one place these keys are chosen, for ``crossent eval --per-token`` and
    ``crossent explain``'s JSON alike.

    Example:
        >>> top_alternatives([7], ["the"], [0.5])
        [{'id': 7, 'text': 'the', 'prob': 0.5}]
    """
    return [
        {"id": top_id, "text": text, "prob": prob}
        for top_id, text, prob in zip(ids, texts, probs, strict=True)
    ]


@dataclass(frozen=True, slots=True)
class TokenScore:
    """One scored token, with what the model would have predicted instead.

    Attributes:
        document: index of the document in the order it was evaluated.
        position: index of the token among the document's token ids (0 is the first; without a
            prefix token the first is never scored, so positions start at 1).
        token_id: the token's id.
        text: the document's characters from the end of the previous token to the end of this
            one, so the texts of a document's tokens, in order, concatenate to the document (a
            token that covers only part of a character, such as one byte of an emoji, gets the
            character with its first byte and "" after; :attr:`shown` shows its bytes).
        start: character offset in the document where ``text`` starts (for a token that
            covers part of a character, where that character starts).
        nats: ``-ln p(token)`` given its window's context.
        rank: 1 when the token was the model's top prediction; 1 + the number of vocabulary
            entries with a strictly higher logit otherwise.
        top_ids: the ``k`` most likely next tokens, most likely first.
        top_texts: their texts, as :attr:`shown` writes them.
        top_probs: their probabilities.
        utf8: the document's bytes this token covers (see :mod:`crossent.data.tokens`); None
            when not recorded, then ``text``'s UTF-8.
    """

    document: int
    position: int
    token_id: int
    text: str
    start: int
    nats: float
    rank: int
    top_ids: tuple[int, ...]
    top_texts: tuple[str, ...]
    top_probs: tuple[float, ...]
    utf8: bytes | None = None

    @property
    def probability(self) -> float:
        """``p(token) = e ** -nats``."""
        return math.exp(-self.nats)

    @property
    def num_bytes(self) -> int:
        """How many bytes of the document this token covers."""
        return len(self.utf8) if self.utf8 is not None else len(self.text.encode("utf-8"))

    @property
    def shown(self) -> str:
        """The token for people: its bytes as UTF-8, each byte of an incomplete character
        written ``<0xNN>`` (:func:`crossent.data.tokens.show_bytes`)."""
        return show_bytes(self.utf8) if self.utf8 is not None else self.text


@dataclass(frozen=True)
class EvaluationResult:
    """What :func:`evaluate` measured: per document, and the totals in every unit.

    ``tokens`` holds one :class:`TokenScore` per scored token, in document order, when
    :func:`evaluate` was asked for per-token details; otherwise it is empty. ``stopped_early``
    says that ``max_tokens`` or ``max_documents`` left text unscored; ``provenance`` is None
    only for a result built by hand. ``bootstrap`` is the seeded bootstrap over documents
    (:func:`bootstrap_scores`), None with one document; the per-token standard errors are
    ``totals``' ``*_se`` fields (:mod:`crossent.uncertainty`). ``convention`` is how tokens
    were chosen for scoring (:mod:`crossent.data.conventions`), and :meth:`convention_block`
    says what it did. ``by_position``, when asked for, is the mean loss by context length,
    in power-of-two buckets (:class:`crossent.scoring.PositionMeter`); ``calibration``, when
    asked for, how well the model's confidence matched the text and its best temperature
    (:mod:`crossent.calibration`; None also when no token was scored).
    """

    model: str
    window: int
    stride: int
    prefix: Prefix
    documents: list[DocumentScore]
    totals: NLLResult
    tokens: list[TokenScore] = field(default_factory=list)
    provenance: Provenance | None = None
    stopped_early: bool = False
    bootstrap: DocumentBootstrap | None = None
    convention: Convention = "lm-eval"
    by_position: list[PositionBucket] | None = None
    calibration: CalibrationResult | None = None

    @property
    def unscored_bytes(self) -> int:
        """The bytes of the documents' first tokens left unscored (no prefix token)."""
        return sum(document.unscored_bytes for document in self.documents)

    def convention_block(self) -> dict[str, Any]:
        """How the numbers were made, as every output shows it: the convention and its rules,
        prefix, window, stride, forward passes, tokens scored and left unscored, and the tokens
        the totals count (``hf-stride``'s weighting makes them fewer than those scored); for
        ``llama.cpp`` also its perplexity and its ``+/-`` (``PPL = x +/- y``)."""
        tallies = [document.tally for document in self.documents if document.tally is not None]
        if len(tallies) == len(self.documents):
            scored = sum(tally.scored for tally in tallies)
            unscored = sum(tally.unscored for tally in tallies)
        else:  # built by hand: every token scored but a first one without a prefix
            scored = self.totals.tokens
            unscored = len(self.documents) if self.prefix == "none" else 0
        block: dict[str, Any] = {
            "name": self.convention,
            "rules": describe(self.convention, self.window, self.stride),
            "prefix": self.prefix,
            "window": self.window,
            "stride": self.stride,
            "windows": sum(tally.windows for tally in tallies),
            "tokens_scored": scored,
            "tokens_unscored": unscored,
            "tokens_counted": self.totals.tokens,
        }
        if self.convention == "llama.cpp":
            squared = sum(tally.nll_squared for tally in tallies)
            block["scored_chunk_positions"] = [self.window // 2 + 1, self.window - 1]
            block["perplexity"] = self.totals.perplexity
            block["perplexity_uncertainty"] = llama_cpp_uncertainty(
                self.totals.nll_nats, squared, self.totals.tokens
            )
        return block

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``crossent eval --json``."""
        return {
            "model": self.model,
            "convention": self.convention_block(),
            "window": self.window,
            "stride": self.stride,
            "prefix": self.prefix,
            "provenance": self.provenance.to_dict() if self.provenance is not None else None,
            "scoring": {
                "first_token_scored": self.prefix != "none",
                "unscored_bytes": self.unscored_bytes,
                "unscored_words": sum(document.unscored_words for document in self.documents),
                "stopped_early": self.stopped_early,
                "counts": "bytes and words are those the scored tokens cover",
            },
            "documents": [document.to_dict() for document in self.documents],
            "totals": _metrics_dict(self.totals),
            "uncertainty": {
                "per_token": "standard errors (*_se in totals) of the mean token loss, and by "
                "the delta method of perplexity and bits per byte",
                "documents": None if self.bootstrap is None else self.bootstrap.to_dict(),
            },
            **(
                {"by_position": [bucket.to_dict() for bucket in self.by_position]}
                if self.by_position is not None
                else {}
            ),
            **({"calibration": self.calibration.to_dict()} if self.calibration else {}),
        }
