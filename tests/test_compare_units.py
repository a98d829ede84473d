"""``crossent compare`` names its divergence, its direction and its unit once: the terminal, the
JSON and the page all say ``KL(A || B)`` and nats, and their numbers agree with a float64 KL
computed here from the two models' own transformers logits (issue 11, item 8).

Two tiny random Llamas share one small BPE, so the per-token comparison runs in a second; their
heads are scaled up so that their next-token distributions differ by more than rounding.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from crossent.cli import main
from crossent.models import train_bpe_tokenizer
from report.parsing import ParsedPage

TEXT = "The cat sat on the mat, and the dog looked at the cat. Every effort moves you.\n"


def _save_model(folder: Path, tokenizer: PreTrainedTokenizerFast, seed: int) -> None:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.lm_head.weight.mul_(40)  # logits of a few nats, not of a few hundredths
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _log_probs(folder: Path, ids: list[int], bos: int) -> torch.Tensor:
    """The model's transformers logits for BOS + ``ids[:-1]``, log-softmaxed in float64."""
    model = LlamaForCausalLM.from_pretrained(folder)  # in eval mode, as from_pretrained leaves it
    with torch.no_grad():
        logits: torch.Tensor = model(torch.tensor([[bos, *ids[:-1]]])).logits[0]
    return logits.double().log_softmax(dim=-1)  # (T, V)


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The command's terminal text, JSON and page, and the float64 oracle."""
    folder = tmp_path_factory.mktemp("compare")
    tokenizer = train_bpe_tokenizer([TEXT * 4], vocab_size=300)
    _save_model(folder / "a", tokenizer, seed=0)
    _save_model(folder / "b", tokenizer, seed=1)
    (folder / "t.txt").write_text(TEXT, encoding="utf-8")
    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    assert len(ids) < 100  # one window of the default 128: the oracle needs no windows
    bos = tokenizer.bos_token_id
    log_a, log_b = (_log_probs(folder / name, ids, bos) for name in "ab")
    targets = torch.tensor(ids)[:, None]
    oracle = {
        "kl": (log_a.exp() * (log_a - log_b)).sum(dim=-1),  # KL(A || B) per position
        "nats_a": -log_a.gather(1, targets)[:, 0],
        "nats_b": -log_b.gather(1, targets)[:, 0],
    }
    assert oracle["kl"].mean().item() > 0.05  # far from two copies of one model
    return {"folder": folder, "oracle": oracle, "tokens": len(ids)}


def _run(compared: dict[str, object], capsys: pytest.CaptureFixture[str]) -> tuple[str, Path]:
    folder = compared["folder"]
    assert isinstance(folder, Path)
    code = main(
        ["compare", "--model", str(folder / "a"), "--model", str(folder / "b"), "--data",
         str(folder / "t.txt"), "--largest", "5", "--json", str(folder / "c.json"), "--report",
         str(folder / "c.html"), "--no-progress"]
    )  # fmt: skip
    assert code == 0
    return capsys.readouterr().out, folder


def test_terminal_json_and_page_agree_on_name_unit_and_values(
    compared: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    printed, folder = _run(compared, capsys)
    oracle = compared["oracle"]
    assert isinstance(oracle, dict)
    kl, nats_a, nats_b = oracle["kl"], oracle["nats_a"], oracle["nats_b"]

    # The terminal: what each model's weights are, the window used, the divergence by its name
    # and formula, in nats. Both models were saved in float32, unquantised.
    for label, name in (("A", "a"), ("B", "b")):
        weights = re.search(rf"^{label}: {re.escape(str(folder / name))}: (.+)$", printed, re.M)
        assert weights is not None
        assert "float32" in weights[1]
        assert "GGUF" not in weights[1]
    assert "both models: window 128, stride 128, prefix bos\n" in printed
    assert "KL(A || B) = sum_v p_A(v) ln(p_A(v) / p_B(v)) per token, nats" in printed
    mean = re.search(r"^mean (\S+) \u00b1 \S+;", printed, re.MULTILINE)
    assert mean is not None
    assert float(mean[1]) == pytest.approx(kl.mean().item(), rel=1e-4)
    assert "bits" not in printed.split("KL(A || B)", 1)[1]  # the token-by-token part is in nats
    lines = printed.split("largest changes in loss -ln p, nats:\n", 1)[1].splitlines()
    assert re.split(r"\s{2,}", lines[0]) == [
        "document", "position", "token", "nats A", "nats B", "B - A, nats", "KL(A || B), nats",
    ]  # fmt: skip
    rows = [re.split(r"\s{2,}", line) for line in lines[2:7]]
    assert len(rows) == 5
    for row in rows:
        position = int(row[1])
        assert float(row[3]) == pytest.approx(nats_a[position].item(), abs=2e-4)
        assert float(row[4]) == pytest.approx(nats_b[position].item(), abs=2e-4)
        change = (nats_b[position] - nats_a[position]).item()
        assert float(row[5]) == pytest.approx(change, abs=2e-4)
        assert float(row[6]) == pytest.approx(kl[position].item(), abs=2e-4)

    # The JSON: the same name and unit, the same numbers.
    record = json.loads((folder / "c.json").read_text(encoding="utf-8"))
    assert (record["kl_name"], record["token_unit"]) == ("KL(A || B)", "nats")
    assert record["a"]["window"] == record["b"]["window"] == 128
    assert record["kl"]["mean"] == pytest.approx(kl.mean().item(), rel=1e-4)
    assert record["kl"]["percentiles"]["max"] == pytest.approx(kl.max().item(), rel=1e-4)
    for entry, row in zip(record["largest"], rows, strict=True):
        assert entry["position"] == int(row[1])
        assert entry["kl"] == pytest.approx(kl[entry["position"]].item(), abs=2e-5, rel=1e-3)
        assert entry["nats_b"] - entry["nats_a"] == pytest.approx(float(row[5]), abs=1e-4)

    # The page: the same name and unit in its headings and headers, the same numbers.
    page_text = (folder / "c.html").read_text(encoding="utf-8")
    page = ParsedPage(page_text)
    labels = {row[0]: row[1] for row in page.rows["kl"]}
    assert float(labels["mean KL(A || B), nats"]) == pytest.approx(kl.mean().item(), rel=1e-3)
    assert float(labels["max KL(A || B), nats"]) == pytest.approx(kl.max().item(), rel=1e-3)
    header, *body = page.rows["largest"]
    assert header[3:7] == ["nats A", "nats B", "B \u2212 A, nats", "KL(A || B), nats"]
    for cells, row in zip(body, rows, strict=True):
        assert cells[1] == row[1]  # the same tokens in the same order
        assert float(cells[5]) == pytest.approx(float(row[5]), abs=1e-4)
        assert float(cells[6]) == pytest.approx(kl[int(row[1])].item(), abs=2e-4)
    assert "bits" not in "".join(header)
    assert "KL(A || B) = sum_v p_A(v) ln(p_A(v) / p_B(v))" in page_text
    assert "Change in loss \u2212ln p, B \u2212 A, nats" in page_text
    assert "\u2016" not in page_text
    assert "KL divergence of B" not in page_text
    assert page_text.count("\u2019s weights: ") + page_text.count("'s weights: ") == 2


def test_help_says_model_is_required_at_least_twice_without_a_default() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "crossent", "compare", "--help"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0
    help_text = " ".join(done.stdout.split())
    assert "(default)" not in help_text.split("--model MODEL", 2)[2].split("--data", 1)[0]
    assert "given at least twice: first A, the reference, then B" in help_text
    assert "KL(A || B)" in help_text


@pytest.mark.parametrize("document", ["README.md", "docs/guide.md"])
def test_docs_name_the_divergence_as_the_output_does(document: str) -> None:
    text = " ".join((Path(__file__).parents[1] / document).read_text(encoding="utf-8").split())
    assert "KL(A || B)" in text
    assert "of B from A" not in text
