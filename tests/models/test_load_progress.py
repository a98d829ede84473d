"""load_model from Python keeps stderr clean: transformers' "Loading weights" bar only on request,
and the user's own progress-bar setting is left as it was."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

# The Hub's switch, from its own module: huggingface_hub.utils exports it only lazily.
from huggingface_hub.utils.tqdm import (
    are_progress_bars_disabled,
    disable_progress_bars,
    enable_progress_bars,
)
from transformers import AutoModelForCausalLM, LlamaConfig
from transformers.utils import logging as transformers_logging

from crossent.models import load_model, train_bpe_tokenizer

TINY = LlamaConfig(
    vocab_size=300, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
    num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
)  # fmt: skip


@pytest.fixture(scope="module")
def tiny_directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(TINY).save_pretrained(folder)  # type: ignore[no-untyped-call]
    train_bpe_tokenizer(["a tiny text"] * 10, vocab_size=300).save_pretrained(folder)
    return folder


def _stderr_of_loading(spec: str | None, progress: bool | None) -> str:
    keyword = "" if progress is None else f", progress={progress}"
    code = f"from crossent.models import load_model; load_model({spec!r}, device='cpu'{keyword})"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stderr


@pytest.mark.parametrize("embedded", [False, True], ids=["hf-directory", "embedded-gguf"])
def test_no_loading_bar_unless_asked(tiny_directory: Path, embedded: bool) -> None:
    # The embedded GGUF loads from its converted cache entry (a model directory) by then: the
    # session fixture of tests/conftest.py has converted it, or an earlier run has.
    spec = None if embedded else str(tiny_directory)
    assert "Loading weights" not in _stderr_of_loading(spec, None)
    assert "Loading weights" in _stderr_of_loading(spec, True)


@pytest.mark.parametrize("user_wants_bars", [True, False])
def test_the_users_setting_is_restored(tiny_directory: Path, user_wants_bars: bool) -> None:
    before = transformers_logging.is_progress_bar_enabled()
    hub_before = are_progress_bars_disabled()
    try:
        if user_wants_bars:
            transformers_logging.enable_progress_bar()  # type: ignore[no-untyped-call]
        else:
            transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        hub_off = are_progress_bars_disabled()
        for progress in (False, True):
            load_model(tiny_directory, device="cpu", progress=progress)
            assert transformers_logging.is_progress_bar_enabled() is user_wants_bars
            assert are_progress_bars_disabled() is hub_off
    finally:
        if before:
            transformers_logging.enable_progress_bar()  # type: ignore[no-untyped-call]
        else:
            transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        if hub_before:
            disable_progress_bars()
        else:
            enable_progress_bars()
