"""Evaluation that wastes nothing (issue 14): no padding through the trunk, inference mode,
``--compile`` and ``--dtype auto``; the numbers stay those of one window at a time.

The oracles: transformers' own float64 log-probabilities of each document alone, the CPU flags
as ``lscpu`` reports them, and the eager trunk for the compiled one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import PreTrainedTokenizerFast

from crossent.data import Document
from crossent.evaluation import evaluate
from crossent.hardware import BF16_MATMUL_FLAGS, bf16_matmul_is_fast, cpu_flags
from crossent.models import HFCausalLM, load_model
from crossent.scoring import CPU_PASS_TOKENS, default_batch_size, score_batch
from tiny_lm import SAMPLE, bpe, save_llama, token_nats

WORDS = SAMPLE.split()


def _documents() -> list[Document]:
    """Documents of many lengths: one window each at window 64, two of equal length."""
    lengths = [3, 17, 9, 17, 30, 5, 12]
    return [Document(f"d{i}", " ".join(WORDS[:n])) for i, n in enumerate(lengths)]


def _oracle(model: HFCausalLM, folder: Path, text: str) -> torch.Tensor:
    """transformers' own ``-ln p`` of each token of ``text`` alone, float64."""
    tokenizer = model.hf_tokenizer
    assert isinstance(tokenizer, PreTrainedTokenizerFast)
    return token_nats(folder, tokenizer, text)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[HFCausalLM, Path]:
    folder = save_llama(tmp_path_factory.mktemp("tiny"), bpe([SAMPLE] * 20), seed=3)
    model = load_model(folder, device="cpu")
    assert isinstance(model, HFCausalLM)
    return model, folder


def test_a_batch_of_many_lengths_computes_no_padding_and_equals_float64(
    tiny: tuple[HFCausalLM, Path],
) -> None:
    model, folder = tiny
    documents = _documents()
    shapes: list[tuple[int, ...]] = []
    modes: list[bool] = []

    def trunk(input_ids: torch.Tensor) -> torch.Tensor:
        shapes.append(tuple(input_ids.shape))
        modes.append(torch.is_inference_mode_enabled())
        return model.hidden_states(input_ids)

    from crossent.data.stream import DocumentStream

    stream = DocumentStream(model.tokenizer, documents, model.tokenizer.bos_token_id, 64, 64, False)
    (batch,) = list(stream.batches(len(documents)))
    windows = [win for _, win in batch]
    with torch.inference_mode():
        sums, _ = score_batch(model, windows, 0, None, trunk)
    lengths = [len(win.tokens) for win in windows]
    # One pass per length, each row exactly its window's length: nothing padded.
    assert sorted(shapes) == sorted((lengths.count(n), n) for n in set(lengths))
    assert all(modes)
    for document, (nats, count, _, _) in zip(documents, sums, strict=True):
        oracle = _oracle(model, folder, document.text)
        assert count == oracle.numel()
        assert nats == pytest.approx(float(oracle.sum()), rel=1e-6)
    batched = evaluate(model, documents, window=64, batch_size=8)
    for document, score in zip(documents, batched.documents, strict=True):
        (alone,) = evaluate(model, [document], window=64, batch_size=1).documents
        assert score.nll_nats == pytest.approx(alone.nll_nats, rel=1e-6)


def test_the_default_batch_packs_a_cpu_pass_up_to_512_tokens(
    tiny: tuple[HFCausalLM, Path],
) -> None:
    cpu = torch.device("cpu")
    assert CPU_PASS_TOKENS == 512
    assert [default_batch_size(cpu, window) for window in (2048, 512, 300, 64, 1)] == [
        1, 1, 1, 8, 512,
    ]  # fmt: skip
    assert default_batch_size(torch.device("cuda", 0), 2048) == 4
    model, _ = tiny
    documents = _documents()
    default = evaluate(model, documents, window=64)
    assert default.provenance is not None
    assert default.provenance.batch_size == 8
    for score, document in zip(default.documents, documents, strict=True):
        (alone,) = evaluate(model, [document], window=64, batch_size=1).documents
        assert score.nll_nats == pytest.approx(alone.nll_nats, rel=1e-6)


def test_inference_mode_keeps_per_token_and_by_position(tiny: tuple[HFCausalLM, Path]) -> None:
    model, folder = tiny
    documents = _documents()
    result = evaluate(model, documents, window=8, stride=4, per_token=True, by_position=True)
    assert result.by_position is not None
    for index, document in enumerate(documents):
        oracle = _oracle(model, folder, document.text)
        tokens = [token for token in result.tokens if token.document == index]
        assert [token.position for token in tokens] == list(range(oracle.numel()))
        # Windows of 8 see less context than the oracle's one window: only the first 8 agree.
        for token, nats in zip(tokens[:8], oracle[:8].tolist(), strict=True):
            assert token.nats == pytest.approx(nats, rel=1e-5, abs=1e-6)
    assert sum(bucket.tokens for bucket in result.by_position) == result.totals.tokens
    assert sum(bucket.nll_nats for bucket in result.by_position) == pytest.approx(
        result.totals.nll_nats, rel=1e-9
    )
    assert sum(token.nats for token in result.tokens) == pytest.approx(
        result.totals.nll_nats, rel=1e-9
    )


def test_the_compiled_trunk_gives_eager_numbers(tiny: tuple[HFCausalLM, Path]) -> None:
    model, _ = tiny
    documents = _documents()
    eager = evaluate(model, documents, window=16, batch_size=2)
    compiled = evaluate(model, documents, window=16, batch_size=2, compile=True)
    for ours, theirs in zip(compiled.documents, eager.documents, strict=True):
        assert ours.tokens == theirs.tokens
        assert ours.nll_nats == pytest.approx(theirs.nll_nats, rel=1e-5)


SAMPLE_CPUINFO = """processor\t: 0
flags\t\t: fpu vme avx2 avx512f amx_tile amx_bf16
bugs\t\t: spectre_v1

processor\t: 1
flags\t\t: fpu vme avx2 avx512f amx_tile amx_bf16
"""


def test_cpu_flags_are_read_from_cpuinfo_and_match_lscpu() -> None:
    assert cpu_flags(SAMPLE_CPUINFO) == {"fpu", "vme", "avx2", "avx512f", "amx_tile", "amx_bf16"}
    assert cpu_flags("processor\t: 0\n") == frozenset()
    lscpu = shutil.which("lscpu")
    if lscpu is None or not Path("/proc/cpuinfo").is_file():
        pytest.skip("needs Linux's /proc/cpuinfo and lscpu to compare with")
    listed = subprocess.run([lscpu], capture_output=True, text=True, check=True).stdout
    (line,) = [row for row in listed.splitlines() if row.startswith("Flags:")]
    flags = set(line.removeprefix("Flags:").split())
    assert bf16_matmul_is_fast("cpu") == bool(flags & BF16_MATMUL_FLAGS)


def test_dtype_auto_picks_bf16_only_where_fast(
    tiny: tuple[HFCausalLM, Path], tmp_path: Path
) -> None:
    _, folder = tiny
    text = tmp_path / "text.txt"
    text.write_text(SAMPLE, encoding="utf-8")
    out = tmp_path / "out.json"
    done = subprocess.run(
        [sys.executable, "-m", "crossent", "eval", "--model", str(folder), "--data", str(text),
         "--dtype", "auto", "--device", "cpu", "--json", str(out)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    fast = bool(cpu_flags() & BF16_MATMUL_FLAGS)
    expected = "bfloat16" if fast else "float32"
    assert f"--dtype auto: {expected} (cpu " in done.stderr
    assert json.loads(out.read_text())["provenance"]["dtype"] == expected


def test_compile_and_dtype_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "crossent", "eval", "--help"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    text = " ".join(done.stdout.split())
    assert "--compile " in text
    assert "equal eager's to float32 rounding (default: off)" in text
    assert "{float32,bfloat16,auto}" in text
