"""crossent.evaluation against lm-evaluation-harness itself, run end to end: the oracle for S = L.

With the stride equal to the window, crossent's per-document log-likelihoods, word perplexity,
byte perplexity and bits per byte must be lm-eval's ``loglikelihood_rolling`` on the same model
and text. lm-eval runs here as a user would run it on local text: a task written in YAML (the
``text`` dataset builder, one document per file, ``output_type: loglikelihood_rolling``) through
``lm_eval.simple_evaluate``, with the already-loaded transformers model wrapped in lm-eval's own
``HFLM``, so nothing is downloaded and no second copy of the weights is made.

The texts need several windows of a small ``L``, and include non-ASCII text (bytes differ from
characters), tabs and runs of spaces (words are lm-eval's whitespace split), and a document
shorter than one window. They contain no carriage return: the ``text`` builder reads files with
universal newlines, so lm-eval would score ``\\r\\n`` as ``\\n``, while crossent reads bytes as
they are stored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from crossent.data import Document, read_documents
from crossent.evaluation import evaluate, prefix_token
from crossent.models import HFCausalLM

# `make test-fast` leaves these out: lm-eval takes a minute to import and run.
pytestmark = pytest.mark.lm_eval

WINDOW = 64  # small, so the long documents need many windows
# Measured: log-likelihoods agree to about 2e-8 (the same float32 forward pass, summed in another
# order), word perplexity to 1.5e-7 (exp magnifies by the nats per word, about 10 here). The
# issue asks for 4 significant digits (5e-5).
REL = 1e-6
TASK = "crossent_lm_eval_oracle"

MULTILINGUAL = """\
Grüße aus Köln!  Straßenbahn, Öl, Übermaß: the German umlauts and ß are two bytes each.
Ça va ? Très bien, merci.\tL'été à Montréal est court ; l'hiver, lui, dure.

Καλημέρα κόσμε.   Η γλώσσα έχει τόνους: ά, έ, ή, ί, ό, ύ, ώ.
Привет, мир!    Съешь же ещё этих мягких французских булок, да выпей чаю.
日本語のテキストも混ぜておく。東京は晴れ、大阪は雨。
中文也一样：今天天气很好，我们去公园散步吧。
한국어 문장도 하나: 안녕하세요, 반갑습니다.


Emoji are four bytes and often several tokens: 🙂 👍🏽 🧪 🇩🇪 👩‍🔬.
Mathematics: ∑ᵢ xᵢ² ≤ (∑ᵢ |xᵢ|)², ∀ε > 0 ∃δ > 0, ∫₀^∞ e^{-x} dx = 1, π ≈ 3.14159.
\t\tTabs,\tthen   three spaces,  two,
 one, and a line that ends in spaces   \n
Currency: 5 € = 4,30 £ = 780 ¥; temperature −4 °C; dashes – and —; quotes „so“ «ainsi» “like this”.
Hebrew and Arabic run right to left: שלום עולם, مرحبا بالعالم.
हिन्दी में एक वाक्य: नमस्ते दुनिया। ภาษาไทย: สวัสดีชาวโลก
Combining marks: e\u0301 (e + U+0301) and é (U+00E9) look alike but differ in bytes.
"""  # noqa: RUF001 (look-alike characters are the point of this text)

SHORT = "  Fewer tokens than one window,\tand leading spaces."


def _texts() -> dict[str, str]:
    # The Python documentation inside CPython: English prose and indented code (runs of spaces).
    # It differs between Python versions, which does not matter: both tools read the same text.
    pydoc = read_documents([])[0]
    assert isinstance(pydoc, Document)
    return {"pydoc.txt": pydoc.text[:2000], "multilingual.txt": MULTILINGUAL, "short.txt": SHORT}


def _task_config(files: list[Path], cache: Path) -> str:
    """A local-text perplexity task in lm-eval's YAML (JSON is YAML, and quotes the paths)."""
    config = {
        "task": TASK,
        "dataset_path": "text",
        "dataset_kwargs": {
            "data_files": [str(file) for file in files],
            "sample_by": "document",
            "cache_dir": str(cache),
        },
        "output_type": "loglikelihood_rolling",
        "test_split": "train",  # the text builder puts every file in a "train" split
        "doc_to_text": "",
        "doc_to_target": "text",
        "metric_list": [
            {"metric": "word_perplexity"},
            {"metric": "byte_perplexity"},
            {"metric": "bits_per_byte"},
        ],
    }
    return json.dumps(config, indent=2)


def _offline(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    """No network and no user caches, whether or not datasets was imported already."""
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("HF_HOME", str(cache / "hf"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache / "datasets"))
    import datasets  # reads the variables above on first import
    import huggingface_hub

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache / "datasets")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.mark.slow
def test_rolling_loglikelihood_equals_lm_evaluation_harness(
    smollm2: HFCausalLM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _offline(monkeypatch, tmp_path / "cache")
    # Imported here rather than at collection: lm-eval takes seconds to import.
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    texts = _texts()
    files = []
    for name, text in texts.items():
        file = tmp_path / name
        file.write_text(text, encoding="utf-8", newline="")
        files.append(file)
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / f"{TASK}.yaml").write_text(_task_config(files, tmp_path / "cache"))

    harness = HFLM(
        pretrained=smollm2.model, tokenizer=smollm2.hf_tokenizer, batch_size=4, max_length=WINDOW
    )
    # The prefix: lm-eval puts BOS before each document (EOS only for a model without BOS);
    # for SmolLM2 that is <|im_start|>, and crossent's default must pick the same token.
    assert harness.prefix_token_id == smollm2.tokenizer.bos_token_id
    assert prefix_token(smollm2, None) == ("bos", harness.prefix_token_id)
    # The same token ids: lm-eval's encoding of a rolling document is crossent's.
    for name, text in texts.items():
        ids = smollm2.tokenizer.encode(text)
        assert harness.tok_encode(text) == ids, name
        assert len(ids) > 4 * WINDOW or name == "short.txt", (name, len(ids))
    assert len(smollm2.tokenizer.encode(SHORT)) < WINDOW

    output: Any = lm_eval.simple_evaluate(
        harness,
        tasks=[TASK],
        task_manager=TaskManager(include_path=str(tmp_path / "tasks"), include_defaults=False),
        log_samples=True,
        bootstrap_iters=0,
        # simple_evaluate seeds the global generators by default; leave other tests' alone
        random_seed=None,
        numpy_random_seed=None,
        torch_random_seed=None,
    )
    theirs_totals = output["results"][TASK]
    theirs_documents = {
        sample["doc"]["text"]: sample["filtered_resps"][0] for sample in output["samples"][TASK]
    }
    assert sorted(theirs_documents) == sorted(texts.values())  # the loader kept the texts exact

    ours = evaluate(
        smollm2,
        [Document(name, text) for name, text in texts.items()],
        window=WINDOW,
        batch_size=4,
    )
    assert ours.prefix == "bos"
    assert ours.stride == WINDOW
    for score, text in zip(ours.documents, texts.values(), strict=True):
        assert -score.nll_nats == pytest.approx(theirs_documents[text], rel=REL), score.name
    for metric in ("word_perplexity", "byte_perplexity", "bits_per_byte"):
        assert getattr(ours.totals, metric) == pytest.approx(
            theirs_totals[f"{metric},none"], rel=REL
        ), metric
