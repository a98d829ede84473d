"""crossent.sample: greedy decoding against transformers' generate, the sampling distribution
against a float64 NumPy reference and observed frequencies, the nats against the model's loss."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from crossent.models import (
    GPT,
    GPTConfig,
    HFCausalLM,
    load_model,
    save_gpt,
    to_gpt2_state_dict,
    train_bpe_tokenizer,
)
from crossent.models.protocol import CausalLMBase
from crossent.sampling import Sample, iter_samples, next_token_probabilities, sample

TEXTS = ["The cat sat on the mat. Ça va? 日本語 🦊 and the dog ran. " * 4] * 20
TINY = LlamaConfig(
    vocab_size=300, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
    num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
)  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return train_bpe_tokenizer(TEXTS, vocab_size=300)


@pytest.fixture(scope="module")
def tiny_hf(tokenizer: PreTrainedTokenizerFast) -> HFCausalLM:
    torch.manual_seed(0)
    model: PreTrainedModel = AutoModelForCausalLM.from_config(TINY)  # type: ignore[no-untyped-call]
    # Init std 0.02 leaves logits within ~1e-3 of each other; a wider spread makes the
    # greedy choice stable beyond rounding.
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.normal_(std=0.5)
    return HFCausalLM(model, tokenizer, name="tiny")


def _numpy_probabilities(
    logits: np.ndarray, temperature: float, top_k: int | None, top_p: float | None
) -> np.ndarray:
    """The filters written from their definitions, one row at a time, in float64."""
    if temperature == 0:
        one_hot = np.zeros_like(logits)
        one_hot[np.argmax(logits)] = 1.0
        return one_hot
    scaled = logits / temperature
    if top_k is not None:
        kth = np.sort(scaled)[::-1][min(top_k, scaled.size) - 1]
        scaled = np.where(scaled >= kth, scaled, -np.inf)
    probabilities = np.exp(scaled - scaled.max())
    probabilities /= probabilities.sum()
    if top_p is not None:
        order = np.argsort(-probabilities, kind="stable")
        cumulative = np.cumsum(probabilities[order])
        kept = order[: int(np.argmax(cumulative >= top_p)) + 1]  # the smallest set reaching p
        nucleus = np.zeros_like(probabilities)
        nucleus[kept] = probabilities[kept]
        probabilities = nucleus / nucleus.sum()
    return np.asarray(probabilities, dtype=np.float64)


@pytest.mark.parametrize(
    ("temperature", "top_k", "top_p"),
    [
        (1.0, None, None),
        (0.7, None, None),
        (2.5, 5, None),
        (1.0, 1, None),
        (1.0, None, 0.9),
        (0.8, 40, 0.5),
        (1.3, 10, 0.99),
        (1.0, None, 1e-9),  # the most probable token alone
        (0.0, None, None),
        (0.0, 3, 0.5),
    ],
)
def test_the_distribution_matches_a_float64_reference(
    temperature: float, top_k: int | None, top_p: float | None
) -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 100, generator=generator) * 3  # (N, V)
    ours = next_token_probabilities(logits, temperature=temperature, top_k=top_k, top_p=top_p)
    assert ours.dtype == torch.float64
    for row, probabilities in zip(logits.double().numpy(), ours.numpy(), strict=True):
        expected = _numpy_probabilities(row, temperature, top_k, top_p)
        np.testing.assert_allclose(probabilities, expected, rtol=1e-12, atol=1e-15)
        if top_k is not None:
            assert np.count_nonzero(probabilities) <= top_k


class _Letters:
    """A tokenizer of single letters, without BOS; EOS is the last letter when asked for."""

    def __init__(self, letters: str, *, eos: bool) -> None:
        self.letters = letters
        self.eos = eos

    @property
    def bos_token_id(self) -> int | None:
        return None

    @property
    def eos_token_id(self) -> int | None:
        return len(self.letters) - 1 if self.eos else None

    def encode(self, text: str) -> list[int]:
        return [self.letters.index(letter) for letter in text]

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        return self.encode(text), [(at, at + 1) for at in range(len(text))]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.letters[token] for token in ids)


class _FixedLogits(CausalLMBase[_Letters]):
    """A model whose next-token logits are the same after any context: each draw is one
    independent draw from a known distribution."""

    def __init__(self, logits: list[float], *, eos: bool = False) -> None:
        super().__init__(name="fixed", tokenizer=_Letters("abcdefgh"[: len(logits)], eos=eos),
                         context_length=1, description="fixed logits")  # fmt: skip
        self._weight = torch.tensor(logits)[:, None]  # (V, 1): hidden state 1, logits = weight

    @property
    def head_weight(self) -> torch.Tensor:
        return self._weight

    @property
    def head_bias(self) -> torch.Tensor | None:
        return None

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:
        assert input_ids.shape[1] <= self.context_length  # the sampler crops the context
        return torch.ones(*input_ids.shape, 1)


@pytest.mark.parametrize(
    ("temperature", "top_k", "top_p"), [(1.0, None, None), (0.6, 4, None), (1.5, None, 0.8)]
)
def test_drawn_frequencies_follow_the_reference(
    temperature: float, top_k: int | None, top_p: float | None
) -> None:
    logits = [1.2, -0.3, 0.5, 2.0, 0.0, -1.0]
    model = _FixedLogits(logits)
    draws = 6000
    samples = sample(model, "a", max_new_tokens=draws, temperature=temperature, top_k=top_k,
                     top_p=top_p, seed=0)  # fmt: skip
    counts = Counter(samples[0].token_ids)
    expected = _numpy_probabilities(np.array(logits), temperature, top_k, top_p) * draws
    assert all(counts[int(token)] == 0 for token in np.flatnonzero(expected == 0))
    kept = [int(token) for token in np.flatnonzero(expected > 0)]
    chi_square = sum((counts[token] - expected[token]) ** 2 / expected[token] for token in kept)
    # scipy.stats.chi2.ppf(1 - 1e-6, df) for df = 1..5: a false alarm once in a million runs.
    critical = [23.93, 27.63, 30.66, 33.38, 35.89][len(kept) - 2]
    assert chi_square < critical, (counts, expected)


def test_nats_are_the_models_cross_entropy_of_the_text(tiny_hf: HFCausalLM) -> None:
    (result,) = sample(tiny_hf, "The cat", max_new_tokens=12, temperature=1.0, seed=3)
    start = [tiny_hf.tokenizer.bos_token_id, *tiny_hf.tokenizer.encode("The cat")]
    ids = torch.tensor([[*start, *result.token_ids]])
    with torch.no_grad():
        logits = tiny_hf.model(input_ids=ids).logits[0].double()  # (T, V)
    expected = torch.nn.functional.cross_entropy(
        logits[len(start) - 1 : -1], ids[0, len(start) :], reduction="none"
    )
    np.testing.assert_allclose(result.nats, expected.numpy(), rtol=1e-5)
    assert result.mean_nats == pytest.approx(expected.mean().item(), rel=1e-5)


def _hf_greedy(model: PreTrainedModel, start: list[int], tokens: int, eos: int | None) -> list[int]:
    ids = torch.tensor([start])
    with torch.no_grad():
        out = model.generate(  # type: ignore[operator]
            ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=tokens,
            eos_token_id=eos, pad_token_id=eos,
        )  # fmt: skip
    return [int(token) for token in out[0, len(start) :]]


def test_greedy_is_transformers_greedy_on_the_embedded_model(smollm2: HFCausalLM) -> None:
    prompt = "The capital of France is"
    (greedy,) = sample(smollm2, prompt, max_new_tokens=4, temperature=0)
    start = [1, *smollm2.tokenizer.encode(prompt)]  # BOS (<|im_start|>) first, as eval does
    assert list(greedy.token_ids) == _hf_greedy(smollm2.model, start, 4, eos=2)
    assert greedy.text == smollm2.tokenizer.decode(list(greedy.token_ids))


def test_greedy_is_transformers_greedy_on_a_tiny_random_model(tiny_hf: HFCausalLM) -> None:
    (greedy,) = sample(tiny_hf, "the dog", max_new_tokens=20, temperature=0)
    bos, eos = tiny_hf.tokenizer.bos_token_id, tiny_hf.tokenizer.eos_token_id
    assert bos is not None  # the BPE's <|endoftext|>, both BOS and EOS
    start = [bos, *tiny_hf.tokenizer.encode("the dog")]
    assert list(greedy.token_ids) == _hf_greedy(tiny_hf.model, start, 20, eos=eos)


def test_top_k_1_is_greedy_whatever_the_seed(tiny_hf: HFCausalLM) -> None:
    (greedy,) = sample(tiny_hf, "the dog", max_new_tokens=15, temperature=0)
    for seed in (0, 1):
        (drawn,) = sample(tiny_hf, "the dog", max_new_tokens=15, top_k=1, seed=seed)
        assert drawn.token_ids == greedy.token_ids


def test_a_seed_repeats_the_text_and_another_seed_changes_it(tiny_hf: HFCausalLM) -> None:
    def text(seed: int) -> list[str]:
        return [s.text for s in sample(tiny_hf, "the", max_new_tokens=20, num_samples=2, seed=seed)]

    first = text(7)
    assert first == text(7)
    assert first != text(8)
    assert first[0] != first[1]  # the samples of one call differ too


def test_a_crossent_checkpoint_samples_with_its_context_cropped(
    tmp_path: Path, tokenizer: PreTrainedTokenizerFast
) -> None:
    """A GPT with an 8-token context, 20 tokens generated: each step sees the last 8 only.
    The oracle is transformers' GPT-2 holding the same weights, fed the same cropped context."""
    torch.manual_seed(0)
    config = GPTConfig.preset("tiny", vocab_size=len(tokenizer), context_length=8)
    gpt = GPT(config)
    save_gpt(tmp_path / "run" / "best", gpt, tokenizer)
    model = load_model(tmp_path / "run" / "best", device="cpu")
    (greedy,) = sample(model, "the cat sat", max_new_tokens=20, temperature=0)
    oracle = GPT2LMHeadModel(GPT2Config(vocab_size=config.vocab_size, n_positions=8,
                                        n_embd=64, n_layer=2, n_head=4))  # fmt: skip
    oracle.load_state_dict(to_gpt2_state_dict(gpt), strict=False)
    oracle.train(False)
    ids = [tokenizer.bos_token_id, *tokenizer.encode("the cat sat", add_special_tokens=False)]
    generated: list[int] = []
    with torch.no_grad():
        while len(generated) < 20 and (not generated or generated[-1] != tokenizer.eos_token_id):
            logits = oracle(input_ids=torch.tensor([ids[-8:]])).logits[0, -1]
            generated.append(int(logits.argmax()))
            ids.append(generated[-1])
    assert list(greedy.token_ids) == generated
    assert greedy.text == tokenizer.decode(
        [t for t in generated if t != tokenizer.eos_token_id], clean_up_tokenization_spaces=False
    )


def test_a_sample_stops_at_eos_which_counts_but_is_not_text() -> None:
    model = _FixedLogits([0.0, 1.0, 5.0], eos=True)  # "c" is EOS and the most probable
    (stopped,) = sample(model, "a", max_new_tokens=10, temperature=0)
    assert stopped == Sample("a", "", (2,), stopped.nats, stopped_at_eos=True)
    assert stopped.nats[0] == pytest.approx(-np.log(np.exp(5) / (1 + np.e + np.exp(5))))
    (through,) = sample(model, "a", max_new_tokens=3, temperature=0, stop_at_eos=False)
    assert (through.text, through.stopped_at_eos) == ("ccc", False)


def test_streamed_pieces_add_up_to_the_text(tiny_hf: HFCausalLM) -> None:
    """Byte-level tokens of a random model split characters: no piece but a sample's last
    ends inside one, and each sample's pieces are its text."""
    pieces: list[str] = []
    samples = iter_samples(tiny_hf, "Ça", max_new_tokens=30, num_samples=3, seed=5,
                           on_text=pieces.append)  # fmt: skip
    for result in samples:
        assert "".join(pieces) == result.text
        assert not any(piece.endswith("\ufffd") for piece in pieces[:-1])
        pieces.clear()


@pytest.mark.parametrize(
    ("settings", "complaint"),
    [
        ({"temperature": -0.1}, "temperature must be a finite number >= 0, got -0.1"),
        ({"temperature": float("nan")}, "temperature must be a finite number >= 0, got nan"),
        ({"top_k": 0}, "top_k must be at least 1, got 0"),
        ({"top_p": 0.0}, r"top_p must be in \(0, 1\], got 0.0"),
        ({"top_p": 1.5}, r"top_p must be in \(0, 1\], got 1.5"),
        ({"max_new_tokens": 0}, "max_new_tokens must be at least 1, got 0"),
        ({"num_samples": 0}, "num_samples must be at least 1, got 0"),
        ({"prompt": ""}, "the prompt is empty and model 'fixed' has no prefix token"),
        ({"prefix": "bos"}, "model 'fixed' has no BOS token; use another prefix"),
    ],
)
def test_bad_settings_are_refused_in_one_line(settings: dict[str, object], complaint: str) -> None:
    arguments: dict[str, object] = {"prompt": "a", **settings}
    with pytest.raises(ValueError, match=complaint):
        sample(_FixedLogits([0.0, 1.0]), **arguments)  # type: ignore[arg-type]
