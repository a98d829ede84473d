"""What ``crossent lm-eval`` hands lm-eval: the arguments unchanged, plus two defaults.

The oracle is lm-eval's own command-line grammar: without a subcommand it means ``run``, and
``--model`` (``-M``) or a ``--config`` file names the model; only when neither does is
``--model crossent`` added.
"""

from __future__ import annotations

import pytest

from crossent.lm_eval.harness import harness_arguments


@pytest.mark.parametrize(
    ("given", "handed"),
    [
        (["--tasks", "a"], ["run", "--tasks", "a", "--model", "crossent"]),
        (["run", "--tasks", "a", "b"], ["run", "--tasks", "a", "b", "--model", "crossent"]),
        (["--model", "hf", "--tasks", "a"], ["run", "--model", "hf", "--tasks", "a"]),
        (["-M", "hf"], ["run", "-M", "hf"]),
        (["--model=hf"], ["run", "--model=hf"]),
        (["--config", "c.yaml"], ["run", "--config", "c.yaml"]),
        (["-C", "c.yaml"], ["run", "-C", "c.yaml"]),
        (["run", "--help"], ["run", "--help"]),
        (["ls", "tasks"], ["ls", "tasks"]),
        (["validate", "--tasks", "a"], ["validate", "--tasks", "a"]),
        # --model_args is not --model: the crossent model is still added
        (["--model_args", "x=1"], ["run", "--model_args", "x=1", "--model", "crossent"]),
    ],
)  # fmt: skip
def test_the_arguments_reach_lm_eval_with_crossent_as_the_default_model(
    given: list[str], handed: list[str]
) -> None:
    assert harness_arguments(given) == handed
