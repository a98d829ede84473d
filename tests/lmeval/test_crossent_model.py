"""The ``crossent`` model of lm-evaluation-harness against lm-eval's own ``hf`` model (HFLM).

The oracle is lm-eval itself: the same model directory through ``HFLM``, which computes the full
logits and their ``log_softmax``. Both are given the same ``Instance`` requests (loglikelihood
with an empty context, trailing spaces, a context longer than ``max_length``; rolling texts
of several windows and an empty one), the same local tasks (a rolling task on text files, a
multiple-choice task in JSONL), and ``crossent lm-eval`` is run as a user runs it. A tiny random
Llama keeps this fast; the embedded SmolLM2 (a GGUF file) and a crossent GPT checkpoint (against
transformers' GPT-2 holding its weights) are checked on requests alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedModel

from crossent.models import HFCausalLM, train_bpe_tokenizer

# The folder is not tests/lm_eval: with tests/ on the import path (pytest's pythonpath, mypy's
# mypy_path), a folder of that name would be taken for lm-evaluation-harness itself.
pytestmark = pytest.mark.lm_eval

# Measured on the tiny model: about 1e-7 (the same float32 logits, summed in another order and
# precision). On SmolLM2 a request of a few tokens differs by up to 1.7e-5 nats (1.1e-6 relative):
# float32 log-probabilities over 49152 logits of magnitude ~20 are that noisy, as a float64 head
# shows: there both HFLM and crossent were off by up to 7e-6 relative, in the same direction.
REL = 1e-6
SMOLLM2_ABS = 3e-5
MAX_LENGTH = 16  # small, so that texts need several windows and long contexts are truncated
ROLLING_TASK = "crossent_rolling_text"
CHOICE_TASK = "crossent_choice_jsonl"
TEXT = "the cat sat on the mat and the dog ran after it. "
TINY = LlamaConfig(
    vocab_size=300, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
    num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
)  # fmt: skip
CONTEXTS_AND_CONTINUATIONS = [
    ("the cat", " sat"),
    ("the cat ", "sat on"),  # the trailing space moves to the continuation
    ("", "the dog ran"),  # an empty context: the prefix token stands for it
    ("", "\u2603 snow"),  # not in the tokenizer's training text: byte tokens
    (TEXT * 2, " and the mat"),  # longer than MAX_LENGTH: truncated from the left
    ("the dog ran after", " it."),
]
ROLLING_TEXTS = [TEXT * 5, "short one", "", "  tabs\tand  spaces \u00e9\u00e8"]
QUESTIONS = [
    {"question": "the cat sat on the", "choices": ["mat", "dog", "ran after"], "answer": 0},
    {"question": "the dog ran", "choices": ["after it.", "on the mat", "sat"], "answer": 0},
    {"question": "and the", "choices": ["cat", "dog", "mat", "it"], "answer": 1},
]


@pytest.fixture(scope="module")
def tiny_directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    model: PreTrainedModel = AutoModelForCausalLM.from_config(TINY)  # type: ignore[no-untyped-call]
    with torch.no_grad():  # peaked distributions, so that some continuations are greedy
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.normal_(std=0.6)
    model.save_pretrained(folder)
    train_bpe_tokenizer([TEXT * 4] * 20, vocab_size=300).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tasks(tmp_path_factory: pytest.TempPathFactory, offline: Path) -> Path:
    """A folder of two local tasks, each a YAML file (JSON is YAML, and quotes the paths)."""
    folder = tmp_path_factory.mktemp("tasks")
    texts = []
    for number, text in enumerate(ROLLING_TEXTS[:2] + ROLLING_TEXTS[3:]):  # no empty file
        texts.append(folder / f"text{number}.txt")
        texts[-1].write_text(text, encoding="utf-8", newline="")
    questions = folder / "questions.jsonl"
    questions.write_text("".join(json.dumps(row) + "\n" for row in QUESTIONS), encoding="utf-8")
    rolling = {
        "task": ROLLING_TASK,
        "dataset_path": "text",
        "dataset_kwargs": {
            "data_files": [str(file) for file in texts],
            "sample_by": "document",
            "cache_dir": str(offline),
        },
        "output_type": "loglikelihood_rolling",
        "test_split": "train",
        "doc_to_text": "",
        "doc_to_target": "text",
        "metric_list": [{"metric": "word_perplexity"}, {"metric": "bits_per_byte"}],
    }
    choice = {
        "task": CHOICE_TASK,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(questions)}, "cache_dir": str(offline)},
        "output_type": "multiple_choice",
        "test_split": "test",
        "doc_to_text": "{{question}}",
        "doc_to_choice": "choices",
        "doc_to_target": "answer",
        "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}],
    }
    for config in (rolling, choice):
        (folder / f"{config['task']}.yaml").write_text(json.dumps(config, indent=2))
    return folder


def _requests(kind: str, arguments: Sequence[tuple[str, ...]]) -> list[Any]:
    from lm_eval.api.instance import Instance

    return [
        Instance(request_type=kind, doc={}, arguments=args, idx=number)
        for number, args in enumerate(arguments)
    ]


def _same_loglikelihoods(ours: list[Any], theirs: list[Any], tolerance: float = 0.0) -> None:
    assert len(ours) == len(theirs)
    for (log_p, greedy), (their_log_p, their_greedy) in zip(ours, theirs, strict=True):
        assert log_p == pytest.approx(their_log_p, rel=REL, abs=tolerance)
        assert greedy == their_greedy


def _harness_pair(directory: Path, batch_size: int) -> tuple[Any, Any]:
    from lm_eval.models.huggingface import HFLM

    from crossent.lm_eval import CrossentLM

    theirs = HFLM(
        pretrained=str(directory), batch_size=batch_size, max_length=MAX_LENGTH, device="cpu"
    )
    ours = CrossentLM(str(directory), batch_size=batch_size, max_length=MAX_LENGTH)
    return ours, theirs


def test_each_request_equals_lm_evals_hf_model(tiny_directory: Path, offline: Path) -> None:
    ours, theirs = _harness_pair(tiny_directory, batch_size=4)
    requests = _requests("loglikelihood", CONTEXTS_AND_CONTINUATIONS)
    # Requests whose continuation is the model's own greedy choice: is_greedy must say so.
    greedy = theirs.tokenizer.decode(
        theirs.model.generate(
            torch.tensor([theirs.tok_encode("the cat")]), max_new_tokens=2, do_sample=False
        )[0, -2:]
    )
    requests += _requests("loglikelihood", [("the cat", greedy)])
    theirs_results = theirs.loglikelihood(requests)
    assert any(greedy for _, greedy in theirs_results), "no greedy continuation to compare"
    assert not all(greedy for _, greedy in theirs_results)
    _same_loglikelihoods(ours.loglikelihood(requests), theirs_results)

    rolling = _requests("loglikelihood_rolling", [(text,) for text in ROLLING_TEXTS])
    assert len(ours.tok_encode(ROLLING_TEXTS[0])) > 3 * MAX_LENGTH
    theirs_rolling = theirs.loglikelihood_rolling(rolling)
    assert theirs_rolling[2] == 0.0  # the empty text
    assert ours.loglikelihood_rolling(rolling) == pytest.approx(theirs_rolling, rel=REL)


def test_the_embedded_model_equals_lm_evals_hf_model(smollm2: HFCausalLM, offline: Path) -> None:
    from lm_eval.models.huggingface import HFLM

    from crossent.lm_eval import CrossentLM

    theirs = HFLM(
        pretrained=smollm2.model, tokenizer=smollm2.hf_tokenizer, max_length=32, device="cpu"
    )
    ours = CrossentLM(smollm2, batch_size=3, max_length=32)
    assert ours.prefix_token_id == theirs.prefix_token_id
    requests = _requests("loglikelihood", CONTEXTS_AND_CONTINUATIONS)
    _same_loglikelihoods(
        ours.loglikelihood(requests), theirs.loglikelihood(requests), tolerance=SMOLLM2_ABS
    )
    rolling = _requests("loglikelihood_rolling", [(text,) for text in ROLLING_TEXTS])
    assert ours.loglikelihood_rolling(rolling) == pytest.approx(
        theirs.loglikelihood_rolling(rolling), rel=REL
    )


def _evaluate(model: Any, tasks: Path, **options: Any) -> dict[str, Any]:
    import lm_eval
    from lm_eval.tasks import TaskManager

    output: dict[str, Any] = lm_eval.simple_evaluate(
        model,
        tasks=[ROLLING_TASK, CHOICE_TASK],
        task_manager=TaskManager(include_path=str(tasks), include_defaults=False),
        log_samples=True,
        bootstrap_iters=0,
        # simple_evaluate seeds the global generators by default; leave other tests' alone
        random_seed=None,
        numpy_random_seed=None,
        torch_random_seed=None,
        **options,
    )
    return output


def _metrics(output: dict[str, Any]) -> dict[str, float]:
    return {
        f"{task}/{name}": value
        for task, metrics in output["results"].items()
        for name, value in metrics.items()
        if isinstance(value, float) and "_stderr" not in name  # bootstrapped, when at all
    }


@pytest.fixture(scope="module")
def hf_output(tiny_directory: Path, tasks: Path) -> dict[str, Any]:
    from lm_eval.models.huggingface import HFLM

    return _evaluate(
        HFLM(pretrained=str(tiny_directory), max_length=MAX_LENGTH, device="cpu"), tasks
    )


def test_simple_evaluate_by_name_equals_the_hf_model(
    tiny_directory: Path, tasks: Path, hf_output: dict[str, Any]
) -> None:
    import crossent.lm_eval  # noqa: F401  (registers "crossent")

    ours = _evaluate(
        "crossent", tasks, model_args=f"pretrained={tiny_directory},max_length={MAX_LENGTH}"
    )
    assert _metrics(ours) == pytest.approx(_metrics(hf_output), rel=REL)
    assert set(_metrics(ours)) >= {f"{CHOICE_TASK}/acc,none", f"{ROLLING_TASK}/bits_per_byte,none"}
    for task in (ROLLING_TASK, CHOICE_TASK):
        theirs_samples = hf_output["samples"][task]
        assert len(ours["samples"][task]) == len(theirs_samples) > 0
        for mine, their in zip(ours["samples"][task], theirs_samples, strict=True):
            assert mine["doc"] == their["doc"]
            for answer, their_answer in zip(mine["resps"], their["resps"], strict=True):
                assert answer[0] == pytest.approx(their_answer[0], rel=REL)


def test_crossent_lm_eval_runs_lm_evals_command_line(
    tiny_directory: Path, tasks: Path, hf_output: dict[str, Any], tmp_path: Path
) -> None:
    done = subprocess.run(
        [
            sys.executable, "-m", "crossent", "lm-eval", "--tasks", ROLLING_TASK, CHOICE_TASK,
            "--include_path", str(tasks), "--model_args",
            f"pretrained={tiny_directory},max_length={MAX_LENGTH}", "--batch_size", "2",
            "--output_path", str(tmp_path / "out"),
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    [results] = (tmp_path / "out").rglob("results_*.json")
    written = json.loads(results.read_text())
    assert written["config"]["model"] == "crossent"
    assert _metrics(written) == pytest.approx(_metrics(hf_output), rel=REL)


def test_bad_model_arguments_are_one_line_errors(tiny_directory: Path) -> None:
    from crossent.lm_eval import CrossentLM

    with pytest.raises(ValueError, match="batch_size 'many' is not a positive integer, 'auto'"):
        CrossentLM(str(tiny_directory), batch_size="many")
    with pytest.raises(ValueError, match="dtype 'float8' is not one of float32"):
        CrossentLM(str(tiny_directory), dtype="float8")
    with pytest.raises(ValueError, match=r"max_length 65 is outside \[1, 64\]"):
        CrossentLM(str(tiny_directory), max_length=65)


def test_a_refused_model_argument_is_one_line_naming_it(
    tiny_directory: Path, tasks: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from crossent.cli import main

    code = main(
        [
            "lm-eval", "--tasks", CHOICE_TASK, "--include_path", str(tasks),
            "--model_args", f"pretrained={tiny_directory},dtype=float8",
        ]
    )  # fmt: skip
    assert code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "crossent: error: dtype 'float8' is not one of float32, bfloat16, float16"
    )


def test_a_crossent_checkpoint_equals_the_hf_model_holding_its_weights(
    tmp_path: Path, tiny_directory: Path, offline: Path
) -> None:
    """A GPT saved by crossent (what crossent train writes) against lm-eval's hf model on
    transformers' GPT-2 holding the same weights and tokenizer."""
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from crossent.lm_eval import CrossentLM
    from crossent.models import GPT, GPTConfig, save_gpt, to_gpt2_state_dict

    tokenizer = AutoTokenizer.from_pretrained(tiny_directory)
    torch.manual_seed(0)
    config = GPTConfig.preset("tiny", vocab_size=len(tokenizer), context_length=32)
    gpt = GPT(config)
    save_gpt(tmp_path / "run" / "best", gpt, tokenizer)
    oracle = GPT2LMHeadModel(
        GPT2Config(vocab_size=config.vocab_size, n_positions=32, n_embd=64, n_layer=2, n_head=4)
    )
    oracle.load_state_dict(to_gpt2_state_dict(gpt), strict=False)
    oracle.save_pretrained(tmp_path / "gpt2")
    tokenizer.save_pretrained(tmp_path / "gpt2")

    theirs = HFLM(pretrained=str(tmp_path / "gpt2"), max_length=MAX_LENGTH, device="cpu")
    ours = CrossentLM(str(tmp_path / "run" / "best"), batch_size=2, max_length=MAX_LENGTH)
    requests = _requests("loglikelihood", CONTEXTS_AND_CONTINUATIONS)
    _same_loglikelihoods(ours.loglikelihood(requests), theirs.loglikelihood(requests))
    rolling = _requests("loglikelihood_rolling", [(text,) for text in ROLLING_TEXTS])
    assert ours.loglikelihood_rolling(rolling) == pytest.approx(
        theirs.loglikelihood_rolling(rolling), rel=REL
    )
