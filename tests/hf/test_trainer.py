"""transformers.Trainer fine-tuning a patched model, against the same run unpatched.

A tiny Llama from its config, fp32 on the CPU, a few AdamW steps on rows of token ids whose
labels end in a different amount of padding (-100): per-step losses patched equal those
unpatched, and 4 micro-batches of 1 accumulated equal one batch of 4, which holds only because
the loss is normalised by the step's token count (``num_items_in_batch``, the 2024 fix).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, Trainer, TrainingArguments

from crossent.hf import patch

VOCAB = 128
SEQ = 16
ROWS = 12


class TokenRows(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """Rows of token ids, each right-padded by 0 to 9 positions."""

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(0)
        self.ids = torch.randint(3, VOCAB, (ROWS, SEQ), generator=generator)
        self.pads = torch.randint(0, 10, (ROWS,), generator=generator)

    def __len__(self) -> int:
        return ROWS

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        mask = torch.ones(SEQ, dtype=torch.long)
        mask[SEQ - int(self.pads[index]) :] = 0
        ids = self.ids[index].masked_fill(mask == 0, 0)
        return {
            "input_ids": ids,
            "attention_mask": mask,
            "labels": ids.masked_fill(mask == 0, -100),
        }


def _losses(tmp_path: Path, *, patched: bool, batch: int, accumulation: int) -> list[float]:
    torch.manual_seed(0)
    config = AutoConfig.for_model(
        "llama",
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=64,
        pad_token_id=0,
    )
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
    if patched:
        patch(model)
    arguments = TrainingArguments(
        output_dir=str(tmp_path / f"run-{patched}-{batch}-{accumulation}"),
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=accumulation,
        max_steps=3,
        learning_rate=1e-2,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        seed=0,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=arguments, train_dataset=TokenRows())
    trainer.train()
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


@pytest.mark.slow
def test_trainer_steps_equal_unpatched_and_accumulation_equals_the_batch(tmp_path: Path) -> None:
    theirs = _losses(tmp_path, patched=False, batch=4, accumulation=1)
    ours = _losses(tmp_path, patched=True, batch=4, accumulation=1)
    accumulated = _losses(tmp_path, patched=True, batch=1, accumulation=4)
    assert len(theirs) == 3
    assert ours == pytest.approx(theirs, rel=1e-5, abs=0)
    assert accumulated == pytest.approx(theirs, rel=1e-5, abs=0)
    assert len(set(theirs)) == 3  # the model learns: each step's loss is a new one
