"""What a user asks ``crossent explain`` for, checked, and the one call that answers it.

An :class:`ExplainRequest` holds the options of the command, named as the command names them: a
text for a model to read, a toy distribution (``probs`` or ``logits`` against a ``target`` or a
``p``), or ``stability``; :func:`explain` picks the explanation they ask for. Error messages name
the options as the command spells them (``--probs``), since that is where users meet them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

# The explanations (and PyTorch with them) are imported by explain() once the options are known
# to be sound, so that a mistake on the command line is refused at once.
if TYPE_CHECKING:
    from crossent.evaluation import Prefix
    from crossent.explain.distributions import DistributionExplanation
    from crossent.explain.stability import StabilityCase, StabilityExplanation
    from crossent.explain.text import TextExplanation
    from crossent.models.protocol import CausalLM

Explanation: TypeAlias = "DistributionExplanation | TextExplanation | StabilityExplanation"

# The three animals (dog 0.2, cat 0.7, fish 0.1; the answer is cat), explained when nothing
# else is asked for.
ANIMAL_LABELS = ("dog", "cat", "fish")
ANIMAL_Q = (0.2, 0.7, 0.1)
ANIMAL_TARGET = "cat"

# The options of a toy distribution, by the names of the command's flags.
_TOY_OPTIONS = ("probs", "logits", "labels", "target", "p")


@dataclass(frozen=True)
class ExplainRequest:
    """The options of one explanation: a text, a toy distribution, or the stability table.

    Options that belong to another kind of explanation than the one asked for are refused here,
    at construction; what each kind needs is checked by :func:`explain`.

    Attributes:
        text: a text for a model to read (:func:`~crossent.explain.explain_text`).
        model: with a text: what the ``load_model`` given to :func:`explain` loads (None for its
            default).
        prefix: with a text: ``"bos"``, ``"eos"`` or ``"none"``; None picks BOS, else EOS.
        top_k: with a text: how many alternatives to list per position.
        probs: the predicted probabilities ``q`` of a toy distribution.
        logits: its logits instead of ``probs``; with ``stability``, one row of logits to show
            in float32 and float64.
        labels: one name per class (default ``"0"``, ``"1"``, ...).
        target: the label of the right answer (a one-hot ``p``).
        p: a target distribution instead of ``target``.
        label_smoothing: ``eps`` in [0, 1]; the target becomes ``(1 - eps) * p + eps / V``.
        stability: the naive loss against the log-space one
            (:func:`~crossent.explain.explain_stability`).
        temperature: with a text or a toy distribution, temperatures ``T`` to show it at too,
            the logits divided by ``T`` (:mod:`crossent.explain.temperature`); each a finite
            number above 0.

    Raises:
        ValueError: a text with toy-distribution options or ``stability``, ``model`` or
            ``prefix`` without a text, ``temperature`` with ``stability``, or a temperature
            that is not a finite number above 0.

    Example:
        >>> ExplainRequest().empty  # nothing asked: the three animals
        True
        >>> ExplainRequest(text="Every effort", probs=[0.5, 0.5])
        Traceback (most recent call last):
        ...
        ValueError: a text takes no --probs; explain one thing
    """

    text: str | None = None
    model: str | None = None
    prefix: Prefix | None = None
    top_k: int = 5
    probs: Sequence[float] | None = None
    logits: Sequence[float] | None = None
    labels: Sequence[str] | None = None
    target: str | None = None
    p: Sequence[float] | None = None
    label_smoothing: float = 0.0
    stability: bool = False
    temperature: Sequence[float] | None = None

    def __post_init__(self) -> None:
        toy = self.toy_options
        if self.text is not None and (toy or self.stability):
            raise ValueError(
                f"a text takes no --{toy[0] if toy else 'stability'}; explain one thing"
            )
        model = [name for name in ("model", "prefix") if getattr(self, name) is not None]
        if self.text is None and model:
            raise ValueError(f"--{model[0]} is for explaining a text; give one")
        if self.temperature and self.stability:
            raise ValueError("--stability takes no --temperature")
        for value in self.temperature or ():
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"--temperature must be a finite number > 0, got {value}")

    @property
    def toy_options(self) -> list[str]:
        """The toy-distribution options given (neither None nor empty nor 0), as flags name them."""
        given = [name for name in _TOY_OPTIONS if getattr(self, name)]
        return given + (["label-smoothing"] if self.label_smoothing else [])

    @property
    def empty(self) -> bool:
        """Whether nothing is asked for, so that :func:`explain` shows the three animals."""
        return not self.stability and self.text is None and not self.toy_options


def explain(
    request: ExplainRequest, *, load_model: Callable[[str | None], CausalLM] | None = None
) -> Explanation:
    """The explanation a request asks for, its numbers checked (see each explanation's checks).

    * ``stability``: :func:`~crossent.explain.explain_stability` of the default cases, or of the
      row ``logits`` with its ``target`` in float32 and in float64.
    * a text: :func:`~crossent.explain.explain_text` on ``load_model(request.model)``; the text
      is checked before the model is loaded.
    * a toy distribution: :func:`~crossent.explain.explain_distributions`; with nothing asked
      (:attr:`ExplainRequest.empty`), the three animals, ``q = (0.2, 0.7, 0.1)`` over
      ``(dog, cat, fish)`` with the target ``cat``.

    A text and a toy distribution are shown at each of ``request.temperature`` too.

    Args:
        request: the options.
        load_model: loads the model a text is read by, from ``request.model``; needed only for a
            text.

    Returns:
        A :class:`~crossent.explain.DistributionExplanation`,
        :class:`~crossent.explain.TextExplanation` or
        :class:`~crossent.explain.StabilityExplanation`, in nats.

    Raises:
        ValueError: options that do not make one explanation (a prediction without a target,
            ``stability`` with probabilities, a target that is not among the labels, ...), or
            whatever the explanation itself refuses.

    Example:
        >>> cat = explain(ExplainRequest(probs=[0.2, 0.7, 0.1], target="1"))
        >>> round(cat.nats, 6)
        0.356675
    """
    if request.stability:
        cases = _stability_cases(request)
        from crossent.explain.stability import explain_stability

        return explain_stability(cases)
    if request.text is not None:
        from crossent.explain.text import check_text, explain_text

        check_text(request.text)
        if load_model is None:
            raise ValueError("explaining a text needs a model: pass load_model")
        model = load_model(request.model)
        return explain_text(
            model,
            request.text,
            prefix=request.prefix,
            top_k=request.top_k,
            temperatures=request.temperature or (),
        )
    if not request.empty:
        if request.probs is None and request.logits is None:
            raise ValueError("give the prediction with --probs or --logits")
        if request.target is None and request.p is None:
            raise ValueError("give the right answer with --target LABEL, or a distribution --p")
    from crossent.explain.distributions import explain_distributions

    temperatures = request.temperature or ()
    if request.empty:
        return explain_distributions(
            ANIMAL_Q, labels=ANIMAL_LABELS, target=ANIMAL_TARGET, temperatures=temperatures
        )
    return explain_distributions(
        request.probs,
        logits=request.logits,
        labels=request.labels,
        target=request.target,
        p=request.p,
        label_smoothing=request.label_smoothing,
        temperatures=temperatures,
    )


def _stability_cases(request: ExplainRequest) -> list[StabilityCase]:
    """The default cases, or the request's row of logits in float32 and in float64."""
    if request.probs or request.p or request.label_smoothing:
        raise ValueError("--stability takes --logits, --labels and --target only")
    if not request.logits:
        toy = request.toy_options
        if toy:
            raise ValueError(f"--stability without --logits takes no --{toy[0]}")
        from crossent.explain.stability import DEFAULT_STABILITY_CASES

        return list(DEFAULT_STABILITY_CASES)
    if request.target is None:
        raise ValueError("--stability with --logits needs --target")
    labels = request.labels or [str(index) for index in range(len(request.logits))]
    if len(labels) != len(request.logits):
        raise ValueError(f"{len(labels)} labels for {len(request.logits)} logits")
    if request.target not in labels:
        raise ValueError(f"target {request.target!r} is not one of the labels: {', '.join(labels)}")
    row, index = tuple(request.logits), list(labels).index(request.target)
    from crossent.explain.stability import StabilityCase

    return [
        StabilityCase(f"your logits, {dtype}", row, index, dtype)
        for dtype in ("float32", "float64")
    ]
