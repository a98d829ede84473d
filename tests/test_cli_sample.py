"""``crossent sample`` as a user runs it: text, its nats, seeds, and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedModel

from crossent.cli import main
from crossent.models import load_model, train_bpe_tokenizer
from crossent.sampling import Sample, sample

TINY = LlamaConfig(
    vocab_size=300, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
    num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
)  # fmt: skip


@pytest.fixture(scope="module")
def tiny_directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    model: PreTrainedModel = AutoModelForCausalLM.from_config(TINY)  # type: ignore[no-untyped-call]
    with torch.no_grad():  # logits far enough apart for samples to differ visibly
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.normal_(std=0.5)
    model.save_pretrained(folder)
    texts = ["the cat sat on the mat and the dog ran after it. " * 4] * 20
    train_bpe_tokenizer(texts, vocab_size=300).save_pretrained(folder)
    return folder


def _sample(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, str, str]:
    code = main(["sample", *arguments])
    out, err = capsys.readouterr()
    return code, out, err


def _expected(prompt: str, samples: list[Sample]) -> str:
    """What the command prints after its header: each text, then its length and nats."""
    return "".join(
        f"{prompt}{result.text}\n--- sample {number}: {len(result.token_ids)} tokens"
        f"{', stopped at EOS' if result.stopped_at_eos else ''}, the model's cross-entropy "
        f"{result.mean_nats:.4f} nats/token\n"
        for number, result in enumerate(samples, start=1)
    )


def test_it_prints_each_sample_with_the_models_nats(
    tiny_directory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _sample(
        capsys, "--model", str(tiny_directory), "--prompt", "the cat", "--num-samples", "2",
        "--max-new-tokens", "12", "--temperature", "1", "--top-k", "300", "--seed", "4",
    )  # fmt: skip
    assert code == 0, err
    assert err == ""  # no loading bar: stderr is not a terminal and --progress was not given
    header, body = out.split("\n", 1)
    assert (
        header
        == f"{tiny_directory}: temperature 1, top-k 300, top-p 1, seed 4, up to 12 new tokens"
    )
    model = load_model(tiny_directory, device="cpu")
    expected = sample(model, "the cat", max_new_tokens=12, top_k=300, num_samples=2, seed=4)
    assert body == _expected("the cat", expected)


def test_a_seed_repeats_the_text_and_another_seed_changes_it(
    tiny_directory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def run(*seed: str) -> str:
        code, out, err = _sample(capsys, "--model", str(tiny_directory), "--prompt", "the",
                                 "--max-new-tokens", "20", *seed)  # fmt: skip
        assert code == 0, err
        return out.split("\n", 1)[1]  # without the header, which names the seed

    assert run("--seed", "1") == run("--seed", "1")
    assert run("--seed", "1") != run("--seed", "2")
    assert run() != run()  # a fresh seed each run


def test_temperature_0_is_greedy_whatever_the_seed(
    tiny_directory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = load_model(tiny_directory, device="cpu")
    greedy = sample(model, "the", max_new_tokens=10, temperature=0)
    for seed in ("1", "2"):
        code, out, _ = _sample(
            capsys, "--model", str(tiny_directory), "--prompt", "the", "--temperature", "0",
            "--max-new-tokens", "10", "--seed", seed,
        )  # fmt: skip
        assert (code, out.split("\n", 1)[1]) == (0, _expected("the", greedy))


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        (("--temperature", "-1"), "argument --temperature: expected a number >= 0 (0: greedy)"),
        (("--temperature", "hot"), "argument --temperature: expected a number, got 'hot'"),
        (("--temperature", "inf"), "argument --temperature: expected a number >= 0"),
        (("--top-k", "0"), "argument --top-k: expected a positive integer, got 0"),
        (("--top-p", "0"), "argument --top-p: expected a probability in (0, 1], got '0'"),
        (("--top-p", "1.5"), "argument --top-p: expected a probability in (0, 1], got '1.5'"),
        (("--max-new-tokens", "0"), "argument --max-new-tokens: expected a positive integer"),
        (("--num-samples", "-2"), "argument --num-samples: expected a positive integer"),
        (("--seed", "x"), "argument --seed: invalid int value: 'x'"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_code_2(
    arguments: tuple[str, ...], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["sample", *arguments])
    assert exit_.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("crossent sample: error: " + complaint)


def test_an_empty_prompt_without_a_prefix_is_one_line(
    tiny_directory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _sample(capsys, "--model", str(tiny_directory), "--prefix", "none")
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"crossent sample: error: --prompt is empty and model {str(tiny_directory)!r} has no "
        "prefix token to start from: give --prompt TEXT"
    ]


def test_a_process_prints_no_loading_bar_unless_asked(tiny_directory: Path) -> None:
    def stderr(*extra: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "crossent", "sample", "--model", str(tiny_directory),
             "--max-new-tokens", "3", "--seed", "0", *extra],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        assert "nats/token" in done.stdout
        return done.stderr

    assert "Loading weights" not in stderr()
    assert "Loading weights" in stderr("--progress")
