"""``crossent eval`` as a user runs it: a real subprocess on the real embedded model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from crossent.models import HFCausalLM

TEXT = "Every effort moves you. The cat sat on the mat.\nA second line, with more words in it.\n"


def _crossent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crossent", *args], capture_output=True, text=True, check=False
    )


def test_eval_writes_the_documented_json(smollm2: HFCausalLM, tmp_path: Path) -> None:
    text_file = tmp_path / "text.txt"
    text_file.write_text(TEXT, encoding="utf-8")
    out = tmp_path / "result.json"
    done = _crossent("eval", "--data", str(text_file), "--window", "128", "--json", str(out))
    assert done.returncode == 0, done.stderr
    assert "total" in done.stdout
    result = json.loads(out.read_text(encoding="utf-8"))
    assert set(result) == {"model", "window", "stride", "prefix", "documents", "totals"}
    assert (result["window"], result["stride"], result["prefix"]) == (128, 128, "bos")
    (document,) = result["documents"]
    assert set(document) == {"name", "tokens", "bytes", "words", "nll_nats"}
    assert set(result["totals"]) == {
        "tokens", "bytes", "words", "nll_nats", "nats_per_token", "bits_per_token",
        "perplexity", "bits_per_byte", "byte_perplexity", "word_perplexity", "accuracy",
    }  # fmt: skip

    # The oracle: transformers' own logits for BOS + the text, one window.
    ids = smollm2.tokenizer.encode(TEXT)
    inputs = torch.tensor([[smollm2.tokenizer.bos_token_id, *ids[:-1]]])
    with torch.no_grad():
        logits = smollm2.model(inputs).logits[0].double()
    nll = F.cross_entropy(logits, torch.tensor(ids), reduction="sum").item()
    assert document["tokens"] == len(ids)
    assert document["nll_nats"] == pytest.approx(nll, rel=1e-5)
    assert document["bytes"] == len(TEXT.encode("utf-8"))
    assert result["totals"]["bits_per_byte"] == pytest.approx(
        nll / len(TEXT.encode("utf-8")) / torch.log(torch.tensor(2.0)).item(), rel=1e-5
    )


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (("--data", "/nonexistent/text.txt"), "/nonexistent/text.txt"),
        (("--window", "8", "--stride", "9"), "stride 9 is outside [1, 8]"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args: tuple[str, ...], complaint: str) -> None:
    done = _crossent("eval", *args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert complaint in lines[0]


def test_json_output_never_overwrites_an_input(tmp_path: Path) -> None:
    text_file = tmp_path / "text.txt"
    text_file.write_text(TEXT, encoding="utf-8")
    done = _crossent("eval", "--data", str(text_file), "--json", str(text_file))
    assert done.returncode == 2
    assert "would be overwritten" in done.stderr
    assert text_file.read_text(encoding="utf-8") == TEXT
