"""``evaluate(calibration=True)`` against float64 computations on materialised logits, written here
from the definitions of crossent.calibration: the ECE of both binnings and the reliability bins,
confidence, accuracy, entropy, the loss at every grid temperature, and T* against a brute-force
grid; on tiny models, a bigram model whose calibration is known, and the real SmolLM2."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from crossent.calibration import TEMPERATURES, CalibrationResult, fit_temperature
from crossent.data import Document
from crossent.evaluation import evaluate
from crossent.models import CausalLM, HFCausalLM, Tokenizer
from crossent.models.bpe import train_bpe_tokenizer
from crossent.models.protocol import CausalLMBase
from crossent.models.tokenizer import HFTokenizer
from tiny_hf import ARCHS, Arch, build

TEXTS = [
    "the cat sat on the mat and looked at the dog, who looked back at the cat " * 3,
    "a bird in the hand is worth two in the bush, or so the saying goes. A cat sat.",
]
WINDOW = 64


class ScaledHead(CausalLMBase[Tokenizer]):
    """Another model with its head (weight and bias) multiplied by ``scale``: its logits too."""

    def __init__(self, inner: CausalLM, scale: float) -> None:
        super().__init__(
            name=f"{inner.name} x{scale}",
            tokenizer=inner.tokenizer,
            context_length=inner.context_length,
            description=f"{inner.description}, head x{scale}",
        )
        self.inner = inner
        self.weight = inner.head_weight * scale
        self.bias = None if inner.head_bias is None else inner.head_bias * scale

    @property
    def head_weight(self) -> torch.Tensor:
        return self.weight

    @property
    def head_bias(self) -> torch.Tensor | None:
        return self.bias

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.inner.hidden_states(input_ids)


class Bigram(CausalLMBase[HFTokenizer]):
    """The smoothed bigram model of a text: hidden state the one-hot previous token, head the
    log-probabilities of the next. On its own text it is calibrated (maximum likelihood: the
    loss's slope in 1/T at T = 1 is the smoothing's alone), so its T* is close to 1."""

    def __init__(self, tokenizer: HFTokenizer, text: str) -> None:
        super().__init__(
            name="bigram", tokenizer=tokenizer, context_length=4096, description="bigram"
        )
        vocab = len(tokenizer.hf_tokenizer)
        bos = tokenizer.bos_token_id
        assert bos is not None
        ids = [bos, *tokenizer.encode(text)]
        counts = torch.full((vocab, vocab), 1e-3, dtype=torch.float64)  # [previous, next]
        for previous, following in itertools.pairwise(ids):
            counts[previous, following] += 1
        log_probs = counts.log() - counts.sum(dim=1, keepdim=True).log()
        self.weight = log_probs.T.float().contiguous()  # (V next, d = V previous)

    @property
    def head_weight(self) -> torch.Tensor:
        return self.weight

    @property
    def head_bias(self) -> torch.Tensor | None:
        return None

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:
        return F.one_hot(input_ids, self.weight.shape[1]).float()


@pytest.fixture(scope="module")
def tokenizer() -> HFTokenizer:
    return HFTokenizer(train_bpe_tokenizer(TEXTS, vocab_size=300))


@pytest.fixture(scope="module")
def tiny(tokenizer: HFTokenizer) -> HFCausalLM:
    llama = ARCHS["llama-tied"]
    model = build(Arch(llama.model_type, {**llama.settings, "vocab_size": 300}))
    return HFCausalLM(model, tokenizer.hf_tokenizer, name="tiny")  # head x60: tens of nats


def _logits(model: CausalLM, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Float64 logits (N, V) and targets (N,) of every token of the texts, each BOS + text in
    one window, and the texts' bytes."""
    bos = model.tokenizer.bos_token_id
    assert bos is not None
    rows, targets = [], []
    for text in texts:
        ids = model.tokenizer.encode(text)
        assert len(ids) < WINDOW
        with torch.no_grad():
            hidden = model.hidden_states(torch.tensor([[bos, *ids[:-1]]]))[0].double()
        weight = model.head_weight.double()
        bias = model.head_bias
        rows.append(hidden @ weight.T + (0 if bias is None else bias.double()))
        targets.append(torch.tensor(ids))
    return torch.cat(rows), torch.cat(targets), sum(len(text.encode()) for text in texts)


def _mean_ce(logits: torch.Tensor, target: torch.Tensor, temperature: float) -> float:
    return float(F.cross_entropy(logits / temperature, target))


def _brute_force_best(logits: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    """T* by brute force: 97 temperatures over [1/16, 16], then 401 across the best's
    neighbours."""
    coarse = torch.logspace(math.log10(1 / 16), math.log10(16), 97, dtype=torch.float64).tolist()
    losses = [_mean_ce(logits, target, t) for t in coarse]
    best = min(range(len(coarse)), key=losses.__getitem__)
    low, high = coarse[max(best - 1, 0)], coarse[min(best + 1, len(coarse) - 1)]
    fine = torch.logspace(math.log10(low), math.log10(high), 401, dtype=torch.float64).tolist()
    value, temperature = min((_mean_ce(logits, target, t), t) for t in fine)
    return temperature, value


def _ece(confidence: torch.Tensor, correct: torch.Tensor, groups: torch.Tensor) -> float:
    total = 0.0
    for group in torch.unique(groups).tolist():
        members = groups == group
        total += abs(float(correct[members].sum()) - float(confidence[members].sum()))
    return total / confidence.numel()


def _width_groups(confidence: torch.Tensor) -> torch.Tensor:
    return (confidence * 15).floor().clamp(max=14)


def _mass_groups(confidence: torch.Tensor) -> torch.Tensor:
    fine = (confidence * 10_000).floor().clamp(max=9_999)
    below = torch.searchsorted(fine.sort().values, fine, right=False)  # tokens in lower bins
    return (below * 15 // confidence.numel()).clamp(max=14)


def _check(
    result: CalibrationResult | None, logits: torch.Tensor, target: torch.Tensor, num_bytes: int
) -> None:
    """Every number of ``result`` against the float64 oracle of the module docstring."""
    assert result is not None
    log_probs = logits.log_softmax(dim=1)
    probs = log_probs.exp()
    confidence, top = probs.max(dim=1)
    correct = (top == target).double()
    entropy = -(probs * log_probs).sum(dim=1)
    count = target.numel()
    assert result.tokens == count
    assert result.bytes == num_bytes
    assert result.mean_confidence == pytest.approx(float(confidence.mean()), rel=1e-5)
    assert result.accuracy == pytest.approx(float(correct.mean()), abs=1e-12)
    assert result.mean_entropy == pytest.approx(float(entropy.mean()), rel=1e-5, abs=1e-6)
    loss = F.cross_entropy(logits, target, reduction="none")
    assert result.nats_per_token == pytest.approx(float(loss.mean()), rel=1e-5)
    gap = loss - entropy
    assert result.gap_se == pytest.approx(float(gap.std() / math.sqrt(count)), rel=1e-3, abs=1e-6)
    # Equal-width: bin floor(15 c); equal-mass: fine bin floor(1e4 c) to min(15 * below // n, 14).
    # A confidence within float32 noise of a bin edge may fall on either side: each such token
    # can move the ECE by at most 2 / n, and the bins' counts are compared when there is none.
    for groups, edges, ece, bins in (
        (_width_groups(confidence), 15, result.ece, result.bins),
        (_mass_groups(confidence), 10_000, result.ece_equal_mass, result.equal_mass_bins),
    ):
        scaled = confidence * edges
        near = int(((scaled - scaled.round()).abs() < 1e-5 * edges).sum())
        assert ece == pytest.approx(_ece(confidence, correct, groups), abs=1e-5 + 2 * near / count)
        assert sum(item.tokens for item in bins) == count
        if near == 0:
            assert [item.tokens for item in bins] == [
                int((groups == group).sum()) for group in torch.unique(groups).tolist()
            ]
    for point in result.temperature.curve:
        assert point.nats_per_token == pytest.approx(
            _mean_ce(logits, target, point.temperature), rel=1e-5, abs=1e-6
        )
    fit = result.temperature
    best, least = _brute_force_best(logits, target)
    if fit.temperature is None:
        side = "above" if best > TEMPERATURES[-1] else "below"
        assert fit.outside == side
        assert not TEMPERATURES[0] <= best <= TEMPERATURES[-1]
        return
    assert fit.bracket[0] <= best <= fit.bracket[1]
    assert fit.temperature == pytest.approx(best, rel=3e-3)
    assert fit.nats_per_token == pytest.approx(least, abs=2e-4)  # the interpolation error
    assert fit.loss_bounds[0] <= least + 1e-6
    assert least <= fit.loss_bounds[1] + 1e-6
    bits_per_byte = fit.nats_per_token * count / num_bytes / math.log(2)  # lm-eval's conversion
    assert result.bits_per_byte(fit.nats_per_token) == pytest.approx(bits_per_byte, rel=1e-12)


def _calibration(model: CausalLM, texts: list[str]) -> CalibrationResult | None:
    documents = [Document(f"d{i}", text) for i, text in enumerate(texts)]
    return evaluate(model, documents, window=WINDOW, calibration=True).calibration


def test_a_tiny_model_against_float64(tiny: HFCausalLM) -> None:
    model = ScaledHead(tiny, 1 / 30)  # logits of a few nats: confidences across the bins
    _check(_calibration(model, TEXTS), *_logits(model, TEXTS))


def test_a_far_too_sure_model_has_its_best_temperature_beyond_the_grid(tiny: HFCausalLM) -> None:
    result = _calibration(tiny, TEXTS)
    _check(result, *_logits(tiny, TEXTS))
    assert result is not None
    assert result.temperature.outside == "above"
    assert result.temperature.temperature is None
    assert result.verdict == "over-confident"


@pytest.mark.parametrize("scale", [5.0, 0.2])
def test_a_bigram_model_scaled_up_is_over_confident_and_down_under(
    tokenizer: HFTokenizer, scale: float
) -> None:
    bigram = Bigram(tokenizer, "\n".join(TEXTS))
    base = _calibration(bigram, TEXTS)
    model = ScaledHead(bigram, scale)
    result = _calibration(model, TEXTS)
    _check(result, *_logits(model, TEXTS))
    assert base is not None
    assert result is not None
    # Logits x s at temperature T are the logits at T / s: T* scales by s exactly.
    assert base.temperature.temperature is not None
    assert result.temperature.temperature is not None
    best = result.temperature.temperature
    assert best == pytest.approx(scale * base.temperature.temperature, rel=3e-3)
    if scale > 1:
        assert result.verdict == "over-confident"
        assert best > 1
    else:
        assert result.verdict == "under-confident"
        assert best < 1


def test_smollm2_against_float64(smollm2: HFCausalLM) -> None:
    texts = ["The quick brown fox jumps over the lazy dog. Cross-entropy is a loss in nats."]
    _check(_calibration(smollm2, texts), *_logits(smollm2, texts))


def test_smollm2_with_its_head_scaled_up_is_over_confident(smollm2: HFCausalLM) -> None:
    texts = ["The quick brown fox jumps over the lazy dog. Cross-entropy is a loss in nats."]
    result = _calibration(ScaledHead(smollm2, 5.0), texts)
    assert result is not None
    assert result.verdict == "over-confident"
    assert result.temperature.temperature is not None
    assert result.temperature.temperature > 1


def test_without_calibration_nothing_is_measured(tiny: HFCausalLM) -> None:
    result = evaluate(tiny, [Document("d", TEXTS[0])], window=WINDOW)
    assert result.calibration is None
    assert "calibration" not in result.to_dict()


def test_the_hf_stride_convention_is_refused(tiny: HFCausalLM) -> None:
    with pytest.raises(ValueError, match="hf-stride"):
        evaluate(tiny, [Document("d", TEXTS[0])], convention="hf-stride", calibration=True)


def test_fit_temperature_finds_a_known_minimum() -> None:
    # f(beta) = exp(beta) - 3 beta is convex with its minimum at beta = ln 3.
    betas = [1 / t for t in TEMPERATURES]
    fit = fit_temperature(
        TEMPERATURES,
        [math.exp(b) - 3 * b for b in betas],
        [math.exp(b) - 3 for b in betas],
        [math.exp(b) for b in betas],
    )
    assert fit.temperature == pytest.approx(1 / math.log(3), rel=1e-4)
    assert fit.nats_per_token == pytest.approx(3 - 3 * math.log(3), abs=1e-6)
    assert fit.loss_bounds[0] <= 3 - 3 * math.log(3) <= fit.loss_bounds[1]
    assert fit.bracket == (TEMPERATURES[5], TEMPERATURES[6])  # 0.71 < T* = 0.91 < 1


def test_fit_temperature_does_not_extrapolate() -> None:
    rising = fit_temperature(TEMPERATURES, [1.0] * 13, [0.5] * 13, [0.0] * 13)
    assert (rising.temperature, rising.outside, rising.bracket[1]) == (None, "above", math.inf)
    falling = fit_temperature(TEMPERATURES, [1.0] * 13, [-0.5] * 13, [0.0] * 13)
    assert (falling.temperature, falling.outside, falling.bracket[0]) == (None, "below", 0.0)
