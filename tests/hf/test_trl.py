"""TRL's ``SFTTrainer`` on a patched model, against the same run unpatched.

TRL (1.16) computes ``SFTTrainer``'s loss with its own fused head: ``add_fused_lm_head`` replaces
the model's ``forward``, and ``compute_loss`` calls it with ``fused_lm_head=True``, which runs the
base model and scores the labels from the head's weight itself, never the model's own loss. A
patched model therefore trains exactly as an unpatched one (first test), and crossent's loss is
not what it computes. To have crossent compute it, ``compute_loss`` is ``Trainer``'s (the recipe
of README.md and docs/guide.md section 9): then the model is called with ``labels``, the patched
forward computes the loss, and the per-step losses equal TRL's own, also with 4 micro-batches of
1 accumulated against a batch of 4 (second test). Each test counts the calls of crossent's loss
to show which of the two computed it.

The learning rate is 2e-3: the two losses' gradients agree to about 1e-6 relative, but AdamW's
normalised step turns that float noise in the attention's small gradients into visibly different
updates at 1e-2 (5e-5 relative in the third step's loss).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from datasets import Dataset
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel, Trainer
from trl.trainer.sft_config import SFTConfig
from trl.trainer.sft_trainer import SFTTrainer

from crossent.hf import patch
from crossent.models import train_bpe_tokenizer

TEXTS = [
    "The cross-entropy of a language model on a text is the number of nats per token.",
    "A step split into micro-batches gives the gradient of the whole batch.",
    "Padding is not scored.",
    "Training lowers the loss one step at a time, and the logits are never held whole.",
] * 3


class CrossentSFTTrainer(SFTTrainer):
    """``SFTTrainer`` whose loss is the model's own, so a patched model's is crossent's."""

    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    made = train_bpe_tokenizer(TEXTS, vocab_size=300)
    made.pad_token = made.eos_token
    return made


@pytest.fixture
def crossent_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times crossent's fused loss ran (a counting wrapper, the loss itself unchanged)."""
    module = sys.modules["crossent.hf.patch"]
    original = module._fused_loss
    calls = [0]

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(module, "_fused_loss", counted)
    return calls


def _tiny_llama(tokenizer: Any, patched: bool) -> PreTrainedModel:
    torch.manual_seed(0)
    config = AutoConfig.for_model(
        "llama",
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=64,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model: PreTrainedModel = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
    return patch(model) if patched else model


def _losses(
    tmp_path: Path,
    tokenizer: Any,
    trainer_class: type[SFTTrainer],
    *,
    patched: bool,
    batch: int = 4,
    accumulation: int = 1,
) -> list[float]:
    arguments = SFTConfig(
        output_dir=str(tmp_path / f"{trainer_class.__name__}-{patched}-{batch}-{accumulation}"),
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=accumulation,
        max_steps=3,
        learning_rate=2e-3,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        seed=0,
        disable_tqdm=True,
        max_length=32,
    )
    trainer = trainer_class(
        model=_tiny_llama(tokenizer, patched),
        args=arguments,
        train_dataset=Dataset.from_dict({"text": TEXTS}),
        processing_class=tokenizer,
    )
    trainer.train()
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def test_sft_trainer_trains_a_patched_model_as_an_unpatched_one(
    tmp_path: Path, tokenizer: Any, crossent_calls: list[int]
) -> None:
    theirs = _losses(tmp_path, tokenizer, SFTTrainer, patched=False)
    calls_at_patch = crossent_calls[0]
    ours = _losses(tmp_path, tokenizer, SFTTrainer, patched=True)
    assert len(theirs) == 3
    assert len(set(theirs)) == 3
    assert ours == pytest.approx(theirs, rel=1e-5, abs=0)
    # Only patch's own check ran crossent's loss: TRL's fused head computed every step's.
    assert crossent_calls[0] - calls_at_patch <= 1


def test_sft_trainer_with_crossent_computing_the_loss(
    tmp_path: Path, tokenizer: Any, crossent_calls: list[int]
) -> None:
    theirs = _losses(tmp_path, tokenizer, SFTTrainer, patched=False)
    before = crossent_calls[0]
    ours = _losses(tmp_path, tokenizer, CrossentSFTTrainer, patched=True)
    assert crossent_calls[0] - before >= 1 + 3  # patch's check, then every step
    accumulated = _losses(
        tmp_path, tokenizer, CrossentSFTTrainer, patched=True, batch=1, accumulation=4
    )
    assert len(theirs) == 3
    assert len(set(theirs)) == 3
    assert ours == pytest.approx(theirs, rel=1e-5, abs=0)
    assert accumulated == pytest.approx(theirs, rel=1e-5, abs=0)
