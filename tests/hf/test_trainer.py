"""transformers.Trainer fine-tuning a patched model, against the same run unpatched.

A tiny Llama from its config and the real SmolLM2, fp32 on the CPU, a few AdamW steps on rows of
token ids whose labels end in a different amount of padding (-100): per-step losses patched
equal those unpatched, and 4 micro-batches of 1 accumulated equal one batch of 4, which holds only
because the loss is normalised by the step's token count (``num_items_in_batch``, the 2024 fix).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    PreTrainedModel,
    Trainer,
    TrainingArguments,
)

from crossent.hf import is_patched, patch

VOCAB = 128
SEQ = 16
ROWS = 12


TEXT = (
    "The cross-entropy of a language model on a text is the average number of nats it needs "
    "to encode each next token. A model that has learnt the text well needs few; one that has "
    "not needs about the logarithm of its vocabulary. Training lowers it one step at a time, "
    "and a step split into micro-batches must give the same gradient as the whole batch. "
) * 4


class TokenRows(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """Rows of ``SEQ`` token ids, each right-padded (id 0, label -100) by 0 to 9 positions."""

    def __init__(self, ids: torch.Tensor) -> None:
        generator = torch.Generator().manual_seed(0)
        self.ids = ids  # (ROWS, SEQ)
        self.pads = torch.randint(0, 10, (len(ids),), generator=generator)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        mask = torch.ones(SEQ, dtype=torch.long)
        mask[SEQ - int(self.pads[index]) :] = 0
        ids = self.ids[index].masked_fill(mask == 0, 0)
        return {
            "input_ids": ids,
            "attention_mask": mask,
            "labels": ids.masked_fill(mask == 0, -100),
        }


def _tiny_llama() -> PreTrainedModel:
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
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call, no-any-return]


def _losses(
    tmp_path: Path,
    make: Callable[[], PreTrainedModel],
    rows: TokenRows,
    *,
    patched: bool,
    batch: int,
    accumulation: int,
    learning_rate: float = 1e-2,
) -> list[float]:
    model = make()
    if patched:
        patch(model)
        assert is_patched(model)
    arguments = TrainingArguments(
        output_dir=str(tmp_path / f"run-{patched}-{batch}-{accumulation}"),
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=accumulation,
        max_steps=3,
        learning_rate=learning_rate,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        seed=0,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=arguments, train_dataset=rows)
    trainer.train()
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def _three_runs(
    tmp_path: Path, make: Callable[[], PreTrainedModel], rows: TokenRows, learning_rate: float
) -> None:
    def run(patched: bool, batch: int, accumulation: int) -> list[float]:
        return _losses(
            tmp_path,
            make,
            rows,
            patched=patched,
            batch=batch,
            accumulation=accumulation,
            learning_rate=learning_rate,
        )

    theirs = run(patched=False, batch=4, accumulation=1)
    ours = run(patched=True, batch=4, accumulation=1)
    accumulated = run(patched=True, batch=1, accumulation=4)
    assert len(theirs) == 3
    assert ours == pytest.approx(theirs, rel=1e-5, abs=0)
    assert accumulated == pytest.approx(theirs, rel=1e-5, abs=0)
    assert len(set(theirs)) == 3  # the model learns: each step's loss is a new one


def test_trainer_on_a_tiny_llama(tmp_path: Path) -> None:
    ids = torch.randint(3, VOCAB, (ROWS, SEQ), generator=torch.Generator().manual_seed(0))
    _three_runs(tmp_path, _tiny_llama, TokenRows(ids), learning_rate=1e-2)


@pytest.mark.slow
def test_trainer_fine_tuning_smollm2(tmp_path: Path, smollm2: Any) -> None:
    tokens = smollm2.hf_tokenizer(TEXT, return_tensors="pt").input_ids[0]
    ids = tokens[: ROWS * SEQ].reshape(ROWS, SEQ)

    def copy_of_smollm2() -> PreTrainedModel:
        model: PreTrainedModel = copy.deepcopy(smollm2.model)
        return model.requires_grad_(True).train()  # type: ignore[no-any-return]

    _three_runs(tmp_path, copy_of_smollm2, TokenRows(ids), learning_rate=1e-4)


def test_trainer_with_a_peft_lora_model(tmp_path: Path) -> None:
    """LoRA on the attention projections, the head and base frozen, trained by ``Trainer``
    through the patch: the same per-step losses as unpatched, accumulation included."""
    peft = pytest.importorskip("peft", reason="PEFT comes with the dev extra")

    def lora_llama() -> PreTrainedModel:
        model = _tiny_llama()
        torch.manual_seed(1)
        config = peft.LoraConfig(
            r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False
        )
        wrapped: PreTrainedModel = peft.get_peft_model(model, config)
        assert not wrapped.get_output_embeddings().weight.requires_grad  # type: ignore[no-untyped-call]
        return wrapped

    ids = torch.randint(3, VOCAB, (ROWS, SEQ), generator=torch.Generator().manual_seed(2))
    _three_runs(tmp_path, lora_llama, TokenRows(ids), learning_rate=5e-2)
