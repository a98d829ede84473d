"""A model whose hidden states turn NaN part-way through a text (issue 15): ``crossent eval``
stops with one line naming the document and the first token whose loss is not finite.

The fault is real: NaN written into the input-embedding row of a token that first appears well
into the text, in a saved Llama whose head is not tied to its embedding (so the head stays
finite). Attention spreads a NaN over the whole window that reads it (a weight of 0 times NaN
is NaN), so the loss turns NaN at the first token of that window. The oracle is the model's own
logits, computed here window by window, and the first target whose row holds a NaN.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import safetensors.torch
import torch
from transformers import LlamaForCausalLM

from crossent.cli import main
from tiny_lm import bpe, save_llama

WINDOW = 16
TEXT = "".join(f"Line {i}: the cat sat on the mat, then the dog ran off.\n" for i in range(12))
TEXT += "Finally a zebra appeared, quite unexpectedly, and the cat sat still.\n"


def test_eval_names_the_first_non_finite_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tokenizer = bpe([TEXT], vocab_size=300)
    folder = save_llama(tmp_path / "model", tokenizer, seed=0, context=64)
    ids = tokenizer.encode(TEXT, add_special_tokens=False)
    first_seen = {token: ids.index(token) for token in set(ids)}
    poisoned = max(first_seen, key=first_seen.__getitem__)  # the last new token of the text
    assert first_seen[poisoned] > 2 * WINDOW
    weights = safetensors.torch.load_file(folder / "model.safetensors")
    weights["model.embed_tokens.weight"][poisoned] = float("nan")
    safetensors.torch.save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})

    # The oracle: lm-eval's disjoint windows (BOS, then the text), scored by the model itself.
    model = LlamaForCausalLM.from_pretrained(folder)
    row = [tokenizer.bos_token_id, *ids]
    expected = None
    for start in range(0, len(ids), WINDOW):
        with torch.no_grad():
            logits = model(torch.tensor([row[start : start + WINDOW]])).logits[0]
        nan_rows = logits.isnan().any(dim=-1).nonzero()
        if len(nan_rows):
            expected = start + int(nan_rows[0])  # input i of the window predicts ids[start + i]
            break
    assert expected is not None
    assert expected < first_seen[poisoned]  # the window's earlier tokens turn NaN too

    text = tmp_path / "text.txt"
    text.write_text(TEXT, encoding="utf-8")
    code = main(["eval", "--model", str(folder), "--data", str(text), "--window", str(WINDOW)])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"crossent: error: document {text}: the loss is nan at token {expected}: the model's "
        "weights or hidden states hold NaN or infinity there (later tokens not scored)"
    )
