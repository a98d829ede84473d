"""``--convention hf-stride`` and ``llama.cpp`` against each tool's own procedure.

``hf-stride`` is checked against the Transformers guide's code run as written (the model called
with ``labels``, its ``outputs.loss`` weighted as the guide weights it); ``llama.cpp`` against a
check written from ``tools/perplexity/perplexity.cpp``'s loop (per chunk: the first token set to
BOS, logits ``first .. n_ctx - 2`` scoring tokens ``first + 1 .. n_ctx - 1``). Each test also
shows that an off-by-one in the scored positions would be caught.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from crossent.data import Document
from crossent.evaluation import evaluate
from crossent.models import HFCausalLM
from crossent.models.bpe import train_bpe_tokenizer
from tiny_hf import ARCHS, Arch, build

TEXT = (
    "The tide came in slowly over the flats, and the birds rose in one grey cloud. "
    "Nobody on the pier said a word; the fishermen coiled their lines and waited. "
    "By noon the water had reached the old posts, and the children ran back to the dunes. "
) * 3


def guide_perplexity(
    model: PreTrainedModel, ids: torch.Tensor, max_length: int, stride: int
) -> float:
    """The guide's loop, as written in docs/source/en/perplexity.md (``encodings.input_ids``)."""
    seq_len = ids.size(1)
    nll_sum = 0.0
    n_tokens = 0
    prev_end_loc = 0
    for begin_loc in range(0, seq_len, stride):
        end_loc = min(begin_loc + max_length, seq_len)
        trg_len = end_loc - prev_end_loc
        input_ids = ids[:, begin_loc:end_loc]
        target_ids = input_ids.clone()
        target_ids[:, :-trg_len] = -100
        with torch.no_grad():
            outputs = model(input_ids, labels=target_ids)
            neg_log_likelihood = outputs.loss
        num_valid_tokens = int((target_ids != -100).sum().item())
        batch_size = target_ids.size(0)
        num_loss_tokens = num_valid_tokens - batch_size
        nll_sum += neg_log_likelihood.item() * num_loss_tokens
        n_tokens += num_loss_tokens
        prev_end_loc = end_loc
        if end_loc == seq_len:
            break
    return math.exp(nll_sum / n_tokens)


def _guide_ids(model: HFCausalLM, text: str) -> torch.Tensor:
    ids: torch.Tensor = model.hf_tokenizer(text, return_tensors="pt").input_ids
    return ids


@pytest.fixture(scope="module")
def tiny_gpt2() -> HFCausalLM:
    tokenizer = train_bpe_tokenizer([TEXT], vocab_size=300)
    gpt2 = ARCHS["gpt2"]
    model = build(Arch(gpt2.model_type, {**gpt2.settings, "vocab_size": 300}))
    return HFCausalLM(model, tokenizer, name="tiny-gpt2")


@pytest.mark.parametrize(("window", "stride"), [(32, 32), (32, 16), (32, 7), (48, 48)])
def test_hf_stride_equals_the_guide_code_on_smollm2(
    smollm2: HFCausalLM, window: int, stride: int
) -> None:
    ids = _guide_ids(smollm2, TEXT)
    assert ids.size(1) % window not in (0, 1)  # a last window shorter than the others
    expected = guide_perplexity(smollm2.model, ids, window, stride)
    result = evaluate(
        smollm2, [Document("t", TEXT)], window=window, stride=stride, convention="hf-stride"
    )
    assert result.prefix == "none"  # SmolLM2's tokenizer adds no BOS, so tokenizer(text) has none
    assert result.totals.perplexity == pytest.approx(expected, rel=2e-5)
    block = result.convention_block()
    assert block["tokens_counted"] == result.totals.tokens
    assert block["tokens_scored"] + block["tokens_unscored"] == ids.size(1)


@pytest.mark.parametrize(("window", "stride"), [(16, 16), (16, 8), (16, 5), (16, 1), (24, 24)])
def test_hf_stride_equals_the_guide_code_on_a_tiny_gpt2(
    tiny_gpt2: HFCausalLM, window: int, stride: int
) -> None:
    ids = _guide_ids(tiny_gpt2, TEXT)
    expected = guide_perplexity(tiny_gpt2.model, ids, window, stride)
    result = evaluate(
        tiny_gpt2, [Document("t", TEXT)], window=window, stride=stride, convention="hf-stride"
    )
    assert result.totals.perplexity == pytest.approx(expected, rel=2e-5)
    # The guide's number is not lm-eval's: the check can tell the conventions apart.
    lm_eval = evaluate(tiny_gpt2, [Document("t", TEXT)], window=window, stride=stride)
    assert not math.isclose(lm_eval.totals.perplexity, expected, rel_tol=1e-3)


def test_the_guide_check_catches_a_window_moved_by_one(tiny_gpt2: HFCausalLM) -> None:
    ids = _guide_ids(tiny_gpt2, TEXT)
    result = evaluate(
        tiny_gpt2, [Document("t", TEXT)], window=16, stride=16, convention="hf-stride"
    )
    shifted = guide_perplexity(tiny_gpt2.model, ids[:, 1:], 16, 16)
    assert not math.isclose(result.totals.perplexity, shifted, rel_tol=1e-3)


def llama_cpp_reference(
    model: HFCausalLM, text: str, n_ctx: int, bos: int | None, first: int | None = None
) -> tuple[float, float, int]:
    """perplexity.cpp's ``perplexity()``: (PPL, its +/-, tokens scored), in float64 sums."""
    tokens = ([bos] if bos is not None else []) + model.tokenizer.encode(text)
    first = n_ctx // 2 if first is None else first
    nll = nll2 = 0.0
    count = 0
    for chunk in range(len(tokens) // n_ctx):
        start = chunk * n_ctx
        batch = list(tokens[start : start + n_ctx])
        if bos is not None:
            batch[0] = bos
        with torch.no_grad():
            logits = model.model(torch.tensor([batch])).logits[0].double()
        log_probs = F.log_softmax(logits, dim=-1)
        for j in range(first, n_ctx - 1):
            value = -log_probs[j, tokens[start + j + 1]].item()
            nll += value
            nll2 += value * value
            count += 1
    mean, mean2 = nll / count, nll2 / count
    ppl = math.exp(mean)
    return ppl, math.sqrt((mean2 - mean * mean) / (count - 1)) * ppl, count


@pytest.mark.parametrize("prefix", ["none", "bos"])
def test_llama_cpp_equals_the_check_from_its_source(smollm2: HFCausalLM, prefix: str) -> None:
    bos = smollm2.tokenizer.bos_token_id if prefix == "bos" else None
    ppl, uncertainty, count = llama_cpp_reference(smollm2, TEXT, 64, bos)
    result = evaluate(
        smollm2,
        [Document("t", TEXT)],
        window=64,
        convention="llama.cpp",
        prefix=None if prefix == "none" else "bos",
    )
    assert result.prefix == prefix  # none by default: SmolLM2's GGUF sets add_bos_token false
    block = result.convention_block()
    n_tokens = len(smollm2.tokenizer.encode(TEXT)) + (bos is not None)
    assert block["windows"] == n_tokens // 64 >= 2
    assert result.totals.tokens == block["tokens_scored"] == count == (n_tokens // 64) * 31
    assert block["tokens_unscored"] == n_tokens - (bos is not None) - count
    assert result.totals.perplexity == pytest.approx(ppl, rel=2e-5)
    assert block["perplexity_uncertainty"] == pytest.approx(uncertainty, rel=1e-4)
    # An off-by-one in the scored positions, either way, is far outside the tolerance.
    for moved in (31, 33):
        assert not math.isclose(
            result.totals.perplexity, llama_cpp_reference(smollm2, TEXT, 64, bos, moved)[0],
            rel_tol=1e-3,
        )  # fmt: skip


def test_llama_cpp_bytes_are_those_of_the_scored_tokens(smollm2: HFCausalLM) -> None:
    ids = smollm2.tokenizer.encode(TEXT)
    scored = [
        ids[chunk * 64 + j] for chunk in range(len(ids) // 64) for j in range(33, 64)
    ]  # no prefix: P is the text's ids
    expected = sum(len(smollm2.tokenizer.decode([token]).encode("utf-8")) for token in scored)
    result = evaluate(smollm2, [Document("t", TEXT)], window=64, convention="llama.cpp")
    assert result.totals.bytes == expected
    assert result.documents[0].unscored_bytes == len(TEXT.encode()) - expected
    assert result.totals.words == 0
    assert result.totals.word_perplexity is None


def test_a_document_without_a_whole_chunk_is_named(smollm2: HFCausalLM) -> None:
    with pytest.raises(ValueError, match=r"document short: .* fewer than one llama\.cpp chunk"):
        evaluate(smollm2, [Document("short", "A few words.")], window=64, convention="llama.cpp")
    with pytest.raises(ValueError, match="stride 32 does not apply"):
        evaluate(smollm2, [Document("t", TEXT)], window=64, stride=32, convention="llama.cpp")
