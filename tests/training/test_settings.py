"""What a run says about its settings: the vocabulary it built, the settings that contradict
each other (issue 11, item 7), and ``crossent train --help`` (item 10).

Oracles: the saved tokenizer loaded by transformers itself for the vocabulary size; the
settings' arithmetic for the warnings; for the help, the parser's own actions, TrainConfig's
defaults and GPTConfig.PRESETS.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from crossent.cli import build_parser, main
from crossent.cli.train import PRESETS
from crossent.models.gpt import GPTConfig
from crossent.training import TrainConfig
from crossent.training.config import setting_conflicts
from training.tiny_runs import write_text

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def test_a_run_reports_the_vocabulary_it_built_and_warns_of_contradictions(
    tmp_path: Path,
) -> None:
    text = write_text(tmp_path)
    run = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "crossent", "train", "--data", str(text), "--preset", "tiny",
         "--context-length", "32", "--max-steps", "2", "--eval-every", "5", "--log-every", "1",
         "--patience", "0", "--device", "cpu", "--out", str(run)],
        capture_output=True, text=True, check=False, env=ENV,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    built = len(AutoTokenizer.from_pretrained(run / "best"))
    assert 257 < built < 4096  # a BPE of the default 4096 on a 5 kB text is smaller
    assert f"vocabulary {built:,} tokens (--vocab-size 4096 is an upper bound" in done.stdout
    page = (run / "report.html").read_text(encoding="utf-8")
    assert f"{built} tokens" in page
    assert f"4096 asked for, {built} built" in page
    # each contradiction is one line on stderr; the default warm-up of 16 exceeds 2 steps
    warnings = [line for line in done.stderr.splitlines() if "warning" in line]
    assert warnings == [
        "crossent train: warning: --warmup-steps 16 is not below --max-steps 2: the learning "
        "rate warms up for the whole run and never decays",
        "crossent train: warning: --eval-every 5 exceeds --max-steps 2: the validation text is "
        "evaluated only at step 0 and at the end",
    ]


@pytest.mark.parametrize(
    ("changes", "starts"),
    [
        ({}, []),  # the default run contradicts nothing
        ({"max_steps": 16, "eval_every": 2}, ["--warmup-steps 16 is not below --max-steps 16"]),
        ({"max_steps": 100, "decay_steps": 60}, ["steps 61-100 run at the minimum learning"]),
        ({"eval_every": 200}, ["--eval-every 200 exceeds --max-steps 160"]),
        ({"eval_every": 40}, []),  # a patience the run cannot use up costs nothing
        ({"log_every": 161}, []),  # logged at step 0 and at the end: nothing is defeated
    ],
)
def test_contradicting_settings_are_named(changes: dict[str, object], starts: list[str]) -> None:
    lines = setting_conflicts(TrainConfig(**changes))  # type: ignore[arg-type]
    assert len(lines) == len(starts)
    for line, start in zip(lines, starts, strict=True):
        assert line.startswith(start)
        assert "\n" not in line


def _train_parser() -> argparse.ArgumentParser:
    commands = next(
        action
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    parser: argparse.ArgumentParser = commands.choices["train"]
    return parser


def _help_text(monkeypatch: pytest.MonkeyPatch) -> str:
    """``crossent train --help`` as printed on a terminal wide enough not to wrap lines (argparse
    breaks words at hyphens)."""
    monkeypatch.setenv("COLUMNS", "1000")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exited:
        main(["train", "--help"])
    assert exited.value.code == 0
    return out.getvalue()


def _help_entries(text: str) -> dict[str, str]:
    """Each option's first flag in the help's options section, and the help text after it."""
    options = text[text.index("options:\n") + len("options:\n") :]
    entries = {}
    for entry in re.split(r"\n(?=  -)", options.strip("\n")):
        first, *rest = entry.splitlines()
        # the invocation, then (after two spaces or more) the help's first line, if it fits
        match = re.fullmatch(r"  (\S.*?)(?: {2,}(.*))?", first)
        assert match is not None, first
        flag = match.group(1).split()[0].rstrip(",")
        entries[flag] = " ".join([match.group(2) or "", *(line.strip() for line in rest)])
    return entries


def test_train_help_gives_every_option_a_line_and_its_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entries = _help_entries(_help_text(monkeypatch))
    actions = [action for action in _train_parser()._actions if action.option_strings]
    assert sorted(entries) == sorted(action.option_strings[0] for action in actions)
    for flag, described in entries.items():
        assert described.strip(), f"{flag} has no help"
    defaults = TrainConfig()
    # The command's own defaults: a dated folder, a time cap for the default run only, and
    # CPython's documentation for no data.
    own = {"out": "runs/<date-time>", "max_minutes": "none, but 4.25 minutes", "data": "CPy"}
    for action in actions:
        value = own.get(action.dest, getattr(defaults, action.dest, None))
        if value is not None:
            shown = re.sub(r"\s+", " ", entries[action.option_strings[0]])
            assert f"(default: {value}" in shown, action.option_strings[0]


def test_train_help_lists_every_preset(monkeypatch: pytest.MonkeyPatch) -> None:
    assert tuple(GPTConfig.PRESETS) == PRESETS
    text = re.sub(r"\s+", " ", _help_text(monkeypatch))
    for name in GPTConfig.PRESETS:
        assert re.search(rf"\b{re.escape(name)}\b", text), name
    assert "GPT size: tiny, cpu-small, gpt2, gpt2-medium (default: cpu-small)" in text


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--vocab-size", "10"], "crossent: error: --vocab-size must exceed 257"),
        (["--dropout", "1.5"], "crossent: error: --dropout must be in [0, 1), got 1.5"),
    ],
)
def test_a_bad_setting_is_named_by_its_flag(tmp_path: Path, flags: list[str], message: str) -> None:
    """The library names its settings as Python does (``vocab_size``); the command line
    names them as the user typed them, and leaves nothing behind."""
    data = tmp_path / "t.txt"
    data.write_text("a few words of text to train on\n" * 4, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "crossent", "train", "--data", str(data), "--max-steps", "1",
         "--out", str(tmp_path / "run"), *flags],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith(message)
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()
