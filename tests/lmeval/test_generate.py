"""``generate_until`` and ``batch_size=auto`` of the crossent model, against lm-eval's ``hf`` model.

The oracle is lm-eval's ``HFLM`` on the same weights, at batch size 1 (no padding), generating
with transformers' ``generate`` (a KV cache, its own stopping criteria): greedy answers must be
equal, string for string. The requests mix stop lists (none, a string, several, one that occurs
in the middle of what the model writes), token limits and a context longer than the room left
for it. A tiny random GPT-2 keeps this fast; the embedded SmolLM2 is checked on a few short ones.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config, PreTrainedModel

from crossent.models import HFCausalLM, train_bpe_tokenizer

pytestmark = pytest.mark.lm_eval

MAX_LENGTH = 32
TEXT = "the cat sat on the mat and the dog ran after it. "
TINY = GPT2Config(vocab_size=300, n_embd=32, n_layer=2, n_head=2, n_positions=MAX_LENGTH)
GENERATIVE_TASK = "crossent_generate_jsonl"
QUESTIONS = [
    {"question": "the cat sat", "answer": " on the mat"},
    {"question": "and the dog", "answer": " ran"},
    {"question": "the mat and", "answer": " the"},
]


@pytest.fixture(scope="module")
def gpt2_directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    torch.manual_seed(0)
    model: PreTrainedModel = AutoModelForCausalLM.from_config(TINY)  # type: ignore[no-untyped-call]
    with torch.no_grad():  # peaked distributions: clear greedy choices, no near ties
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.normal_(std=0.5)
    model.save_pretrained(folder)
    train_bpe_tokenizer([TEXT * 4] * 20, vocab_size=300).save_pretrained(folder)
    return folder


def _requests(arguments: Sequence[tuple[str, dict[str, Any]]]) -> list[Any]:
    from lm_eval.api.instance import Instance

    return [
        Instance(request_type="generate_until", doc={}, arguments=args, idx=number)
        for number, args in enumerate(arguments)
    ]


def _oracle(directory: Path) -> Any:
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=str(directory), batch_size=1, max_length=MAX_LENGTH, device="cpu")


def _generation_requests(theirs: Any) -> list[tuple[str, dict[str, Any]]]:
    """Requests of every kind; one stop string is taken from the middle of what the model
    writes freely, so that the answer must be cut there."""
    free = theirs.generate_until(_requests([("the dog", {"max_gen_toks": 12})]))[0]
    middle = free[len(free) // 2 : len(free) // 2 + 2]
    assert len(free) > 8, f"the model wrote too little: {free!r}"
    assert middle.strip()
    return [
        ("the dog", {"until": [middle], "max_gen_toks": 12}),
        ("the dog", {"max_gen_toks": 12}),
        ("the cat", {"until": ["\n\n", "zzz"], "max_gen_toks": 10, "do_sample": False}),
        ("on the mat", {"until": "the", "max_gen_toks": 10}),  # a string, not a list
        ("the cat sat", {"until": [" "], "max_gen_toks": 6, "temperature": 0.0}),
        (TEXT * 3, {"until": ["."], "max_gen_toks": 10}),  # context cut to 22 tokens, left
        ("ran after", {"max_new_tokens": 5, "do_sample": False, "temperature": 0.7}),
    ]


def test_greedy_answers_equal_lm_evals_hf_model(gpt2_directory: Path, offline: Path) -> None:
    from crossent.lm_eval import CrossentLM

    theirs = _oracle(gpt2_directory)
    arguments = _generation_requests(theirs)
    assert len(theirs.tok_encode(TEXT * 3)) > MAX_LENGTH
    expected = theirs.generate_until(_requests(arguments))
    assert expected[0] != expected[1]
    assert expected[1].startswith(expected[0])
    assert len({answer for answer in expected}) > 3
    for batch_size in (1, 3, "auto"):
        ours = CrossentLM(str(gpt2_directory), batch_size=batch_size, max_length=MAX_LENGTH)
        assert ours.generate_until(_requests(arguments)) == expected, batch_size


def test_the_embedded_model_generates_as_lm_evals_hf_model(
    smollm2: HFCausalLM, offline: Path
) -> None:
    from lm_eval.models.huggingface import HFLM

    from crossent.lm_eval import CrossentLM

    theirs = HFLM(
        pretrained=smollm2.model, tokenizer=smollm2.hf_tokenizer, max_length=64, device="cpu"
    )
    arguments: list[tuple[str, dict[str, Any]]] = [
        ("The capital of France is", {"until": ["."], "max_gen_toks": 8}),
        ("1, 2, 3, 4,", {"until": [" 7"], "max_gen_toks": 8}),  # stops after " 5, 6,"
        ("Question: what colour is the sky?\nAnswer:", {"max_gen_toks": 8, "do_sample": False}),
    ]
    expected = theirs.generate_until(_requests(arguments))
    assert expected[1] == " 5, 6,"
    ours = CrossentLM(smollm2, batch_size=2, max_length=64)
    assert ours.generate_until(_requests(arguments)) == expected


def test_sampling_is_reproducible_from_the_seed(gpt2_directory: Path) -> None:
    from crossent.lm_eval import CrossentLM

    settings = {"do_sample": True, "temperature": 3.0, "max_gen_toks": 8}
    arguments = [("the cat", settings), ("the dog ran", settings), ("the cat", settings)]

    def answers(batch_size: int, seed: int, order: Sequence[int] = (0, 1, 2)) -> list[str]:
        model = CrossentLM(str(gpt2_directory), batch_size=batch_size, seed=seed)
        written = model.generate_until(_requests([arguments[n] for n in order]))
        return [written[order.index(n)] for n in range(len(arguments))]

    first = answers(1, seed=7)
    assert answers(3, seed=7) == first
    assert answers(2, seed=7, order=(1, 0, 2)) == first
    assert answers(1, seed=8) != first
    assert first[0] != first[2]  # the same request repeated: another draw
    greedy = CrossentLM(str(gpt2_directory)).generate_until(
        _requests([("the cat", {"max_gen_toks": 8})])
    )
    assert greedy[0] not in first[::2]  # temperature 3 did sample


def test_a_generative_task_through_simple_evaluate_equals_the_hf_model(
    gpt2_directory: Path, tmp_path: Path, offline: Path
) -> None:
    import lm_eval
    from lm_eval.tasks import TaskManager

    import crossent.lm_eval  # noqa: F401  (registers "crossent")

    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps(row) + "\n" for row in QUESTIONS), encoding="utf-8")
    task = {
        "task": GENERATIVE_TASK,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(questions)}, "cache_dir": str(offline)},
        "output_type": "generate_until",
        "test_split": "test",
        "doc_to_text": "{{question}}",
        "doc_to_target": "{{answer}}",
        "generation_kwargs": {"until": ["."], "max_gen_toks": 6, "do_sample": False},
        "metric_list": [{"metric": "exact_match"}],
    }
    (tmp_path / f"{GENERATIVE_TASK}.yaml").write_text(json.dumps(task))

    def evaluate(model: Any, **options: Any) -> dict[str, Any]:
        output: dict[str, Any] = lm_eval.simple_evaluate(
            model, tasks=[GENERATIVE_TASK], log_samples=True, bootstrap_iters=0,
            task_manager=TaskManager(include_path=str(tmp_path), include_defaults=False),
            random_seed=None, numpy_random_seed=None, torch_random_seed=None, **options,
        )  # fmt: skip
        return output

    theirs = evaluate(_oracle(gpt2_directory))
    ours = evaluate("crossent", model_args=f"pretrained={gpt2_directory},max_length={MAX_LENGTH}")
    answers = [sample["resps"] for sample in ours["samples"][GENERATIVE_TASK]]
    assert answers == [sample["resps"] for sample in theirs["samples"][GENERATIVE_TASK]]
    assert len(answers) == len(QUESTIONS)
    assert all(answer[0][0] for answer in answers)
    assert ours["results"] == theirs["results"]


def test_batch_size_auto_fits_and_changes_no_result(gpt2_directory: Path) -> None:
    from lm_eval.api.instance import Instance

    from crossent.lm_eval import CrossentLM

    one = CrossentLM(str(gpt2_directory), batch_size=1, max_length=MAX_LENGTH)
    auto = CrossentLM(str(gpt2_directory), batch_size="auto", max_length=MAX_LENGTH)
    assert auto.batch_size == 64  # a tiny model: the memory holds the whole default cap
    capped = CrossentLM(str(gpt2_directory), batch_size="auto:4", max_batch_size=3)
    assert capped.batch_size == 3  # max_batch_size caps it
    pairs = [("the cat", " sat on"), ("", "the dog"), (TEXT * 3, " ran"), ("the mat", " and")]
    requests = [
        Instance(request_type="loglikelihood", doc={}, arguments=args, idx=number)
        for number, args in enumerate(pairs)
    ]
    rolling = [
        Instance(request_type="loglikelihood_rolling", doc={}, arguments=(text,), idx=number)
        for number, text in enumerate([TEXT * 4, "the cat", ""])
    ]
    expected = one.loglikelihood(requests)
    for model in (auto, capped):
        got = model.loglikelihood(requests)
        assert [greedy for _, greedy in got] == [greedy for _, greedy in expected]
        assert [log_p for log_p, _ in got] == pytest.approx([log_p for log_p, _ in expected])
        assert model.loglikelihood_rolling(rolling) == pytest.approx(
            one.loglikelihood_rolling(rolling)
        )


def test_batch_size_auto_follows_the_memory_estimate(gpt2_directory: Path) -> None:
    """Rows per batch from the documented estimate: (10 d + 4 I + 2 H T) numbers per token."""
    from crossent.lm_eval import CrossentLM
    from crossent.lm_eval.batching import MemoryBudget

    model = CrossentLM(str(gpt2_directory), batch_size="auto").model
    budget = MemoryBudget.of(model)
    d, mlp, heads = TINY.n_embd, 4 * TINY.n_embd, TINY.n_head
    assert (budget.width, budget.mlp_width, budget.heads, budget.element_size) == (d, mlp, heads, 4)
    row = 32 * (10 * d + 4 * mlp + 2 * heads * 32) * 4  # bytes of one row of 32 tokens
    tight = MemoryBudget(5 * row + row // 2, d, mlp, heads, 4, max_batch_size=64)
    assert (tight.rows(32), tight.rows(64) < 5, tight.rows(10**6)) == (5, True, 1)
    assert MemoryBudget(10**12, d, mlp, heads, 4, max_batch_size=64).rows(32) == 64


def test_bad_generation_settings_are_one_line_errors(gpt2_directory: Path) -> None:
    from crossent.lm_eval import CrossentLM

    model = CrossentLM(str(gpt2_directory), max_length=MAX_LENGTH)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"num_beams": 4}, "generation setting 'num_beams' is not supported"),
        ({"do_sample": True, "temperature": -1.0}, "temperature must be >= 0"),
        ({"max_gen_toks": 32}, "max_gen_toks 32 leaves no room for a context in max_length 32"),
    ]
    for settings, message in cases:
        with pytest.raises(ValueError, match=message):
            model.generate_until(_requests([("the cat", settings)]))
    for batch_size in ("auto:many", "0", "many"):
        with pytest.raises(ValueError, match="batch_size"):
            CrossentLM(str(gpt2_directory), batch_size=batch_size)
