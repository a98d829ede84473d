"""What ``crossent eval`` counts and writes, on the real embedded model (issue 11, 2, 12, 13).

Oracles: the tokenizer's own pieces (``convert_ids_to_tokens``) turned into bytes by
transformers' byte-level table, its character offsets, lm-eval's word split written out with
``re``, transformers' logits in float64, the ``gguf`` package's own reading of the model file, and
runs on input truncated by hand.
"""

from __future__ import annotations

import csv
import io
import json
import math
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from transformers.convert_slow_tokenizer import bytes_to_unicode

import crossent
from crossent.data import Document
from crossent.evaluation import evaluate
from crossent.models import HFCausalLM
from crossent.report.per_token import format_per_token

LN2 = math.log(2.0)
NONE_TEXTS = {
    "emoji first": "😀 naïve café, 漢字 and more words here.\n",
    "word first": "Hello world, this is a test of naïve counting.",
    "spaces first": "  leading spaces then words 字",
    "cjk": "漢字テスト。日本語の文章です。",
}
# Commas, quotes, CR LF and characters that byte-level BPE cuts into bytes.
PER_TOKEN_TEXT = 'Emoji 😀, CJK 漢字 "quoted", a\r\nline\nend 🦊 ☃'


def _token_bytes(model: HFCausalLM, ids: list[int]) -> list[bytes]:
    """Each token's bytes from its vocabulary piece, by transformers' byte-level table."""
    table = bytes_to_unicode()  # type: ignore[no-untyped-call]
    byte_of = {character: byte for byte, character in table.items()}
    pieces = model.hf_tokenizer.convert_ids_to_tokens(ids)
    return [bytes(byte_of[character] for character in piece) for piece in pieces]


def _words_ending_after(text: str, offset: int) -> int:
    """lm-eval's words (``re.split(r"\\s+")`` pieces) that end after character ``offset``."""
    bounds = [0, *(x for run in re.finditer(r"\s+", text) for x in run.span()), len(text)]
    pieces = list(zip(bounds[::2], bounds[1::2], strict=True))
    assert len(pieces) == len(re.split(r"\s+", text))
    return sum(end > offset for _, end in pieces)


def _nll(model: HFCausalLM, inputs: list[int], targets: list[int]) -> float:
    with torch.no_grad():
        logits = model.model(torch.tensor([inputs])).logits[0].double()
    return F.cross_entropy(logits, torch.tensor(targets), reduction="sum").item()


def test_prefix_none_counts_only_the_bytes_and_words_scored(smollm2: HFCausalLM) -> None:
    documents = [Document(name, text) for name, text in NONE_TEXTS.items()]
    result = evaluate(smollm2, documents, window=256, prefix="none")
    for document, score in zip(documents, result.documents, strict=True):
        text = document.text
        ids = smollm2.hf_tokenizer(text, add_special_tokens=False)["input_ids"]
        pieces = _token_bytes(smollm2, ids)
        assert b"".join(pieces) == text.encode("utf-8")
        first = len(pieces[0])
        # characters wholly inside the first token, counted in plain Python
        inside = max(n for n in range(len(text) + 1) if len(text[:n].encode("utf-8")) <= first)
        assert score.tokens == len(ids) - 1
        assert score.bytes == len(text.encode("utf-8")) - first
        assert score.unscored_bytes == first
        assert score.words == _words_ending_after(text, inside)
        assert score.unscored_words == len(re.split(r"\s+", text)) - score.words
        nll = _nll(smollm2, ids[:-1], ids[1:])
        assert score.nll_nats == pytest.approx(nll, rel=1e-5)
        assert score.result().bits_per_byte == pytest.approx(nll / LN2 / score.bytes, rel=1e-5)
    assert result.unscored_bytes == sum(doc.unscored_bytes for doc in result.documents)
    scoring = result.to_dict()["scoring"]
    assert scoring["first_token_scored"] is False
    assert scoring["unscored_bytes"] == result.unscored_bytes > 0
    # The first token, two of the emoji's four bytes, leaves the emoji a scored word; "Hello"
    # is left out whole.
    assert [doc.unscored_words for doc in result.documents[:2]] == [0, 1]

    # With BOS nothing is left out: the whole text's bytes and lm-eval's word count.
    with_bos = evaluate(smollm2, documents, window=256, prefix="bos")
    for document, score in zip(documents, with_bos.documents, strict=True):
        assert score.bytes == len(document.text.encode("utf-8"))
        assert score.words == len(re.split(r"\s+", document.text))
        assert (score.unscored_bytes, score.unscored_words) == (0, 0)


def _shown(data: bytes) -> str:
    """The documented text of a token: UTF-8 where whole, ``<0xNN>`` per byte otherwise."""
    out, i = "", 0
    while i < len(data):
        for size in (4, 3, 2, 1):
            try:
                out += data[i : i + size].decode("utf-8")
            except UnicodeDecodeError:
                continue
            i += size
            break
        else:
            out += f"<0x{data[i]:02X}>"
            i += 1
    return out


def test_per_token_rows_show_bytes_offsets_and_probabilities(smollm2: HFCausalLM) -> None:
    text = PER_TOKEN_TEXT
    result = evaluate(smollm2, [Document('a,b "c"', text)], window=64, per_token=True)
    encoding = smollm2.hf_tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoding["input_ids"], encoding["offset_mapping"]
    pieces = _token_bytes(smollm2, ids)
    expected = [_shown(piece) for piece in pieces]
    assert any("<0x" in shown for shown in expected)  # the text does cut characters
    assert all(shown for shown in expected)  # no token shows as ""

    rows = [json.loads(line) for line in format_per_token(result, ".jsonl").splitlines()]
    assert [row["token_id"] for row in rows] == ids
    assert [row["text"] for row in rows] == expected
    assert [row["bytes"] for row in rows] == [len(piece) for piece in pieces]
    assert [row["start"] for row in rows] == [start for start, _ in offsets]
    for row in rows:
        assert row["prob"] == pytest.approx(math.exp(-row["nats"]), rel=1e-12)
    assert sum(row["bytes"] for row in rows) == result.documents[0].bytes
    top_texts = [alt["text"] for row in rows for alt in row["top"]]
    assert "\ufffd" not in "".join(top_texts)  # alternatives that are bytes show as bytes

    table = list(csv.reader(io.StringIO(format_per_token(result, ".csv"), newline="")))
    header, body = table[0], table[1:]
    assert header[:9] == [
        "document", "position", "token_id", "text", "start", "bytes", "nats", "prob", "rank",
    ]  # fmt: skip
    assert len(body) == len(rows)
    for line, row in zip(body, rows, strict=True):
        record = dict(zip(header, line, strict=True))
        assert record["document"] == 'a,b "c"'
        assert record["text"] == row["text"]  # commas, quotes, CR and LF read back whole
        assert int(record["start"]) == row["start"]
        assert float(record["prob"]) == row["prob"]
        assert float(record["nats"]) == row["nats"]
        assert [record[f"top{k}_text"] for k in range(1, 6)] == [a["text"] for a in row["top"]]


def _crossent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crossent", *args], capture_output=True, text=True, check=False
    )


LINES: list[dict[str, Any]] = [
    {"id": "first", "text": "The cat sat on the mat. It was warm, and the cat was happy."},
    {"id": 7, "text": "Cross-entropy of naïve texts: café, 漢字 and 😀 too."},
    {"id": "third", "text": "Never read: the run stops after two documents."},
]


def test_eval_json_records_provenance_and_per_document_metrics(
    smollm2: HFCausalLM, tmp_path: Path
) -> None:
    import gguf

    from crossent.models.gguf import embedded_gguf

    data = tmp_path / "lines.jsonl"
    data.write_text("".join(json.dumps(line) + "\n" for line in LINES), encoding="utf-8")
    out, rows_file = tmp_path / "out.json", tmp_path / "tokens.jsonl"
    done = _crossent(
        "eval", "--data", str(data), "--field", "text", "--name-field", "id",
        "--max-documents", "2", "--window", "32", "--json", str(out), "--per-token", str(rows_file),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "stopped after 2 documents" in done.stdout
    result = json.loads(out.read_text(encoding="utf-8"))

    reader = gguf.GGUFReader(embedded_gguf())
    field = reader.fields["general.file_type"]
    file_type = gguf.LlamaFileType(int(field.parts[field.data[0]][0])).name.removeprefix("MOSTLY_")
    assert result["provenance"] == {
        "crossent_version": crossent.__version__,
        "model": "smollm2-135m",
        "description": smollm2.description,
        "quantisation": file_type,
        "dtype": "float32",
        "device": "cpu",
        "batch_size": 512 // 32,  # on a CPU: windows of 32 tokens up to 512 tokens a pass
        "data": [str(data)],
        "max_chars": None,
        "max_tokens": None,
        "max_documents": 2,
    }
    assert file_type == "Q4_1"
    assert "Q4_1 GGUF" in smollm2.description
    assert result["scoring"]["stopped_early"] is True
    assert [doc["name"] for doc in result["documents"]] == ["first", "7"]

    rows = [json.loads(line) for line in rows_file.read_text(encoding="utf-8").splitlines()]
    for document, line in zip(result["documents"], LINES, strict=False):
        own = [row for row in rows if row["document"] == document["name"]]
        nats = sum(row["nats"] for row in own)
        num_bytes = sum(row["bytes"] for row in own)
        assert num_bytes == document["bytes"] == len(line["text"].encode("utf-8"))
        assert document["tokens"] == len(own)
        assert document["nll_nats"] == pytest.approx(nats, rel=1e-9)
        assert document["nats_per_token"] == pytest.approx(nats / len(own), rel=1e-9)
        assert document["perplexity"] == pytest.approx(math.exp(nats / len(own)), rel=1e-9)
        assert document["bits_per_byte"] == pytest.approx(nats / LN2 / num_bytes, rel=1e-9)
        words = len(re.split(r"\s+", line["text"]))
        assert document["word_perplexity"] == pytest.approx(math.exp(nats / words), rel=1e-9)
        assert document["accuracy"] == sum(row["rank"] == 1 for row in own) / len(own)


def test_a_line_without_the_name_field_is_named(tmp_path: Path) -> None:
    data = tmp_path / "lines.jsonl"
    data.write_text('{"id": 1, "text": "a"}\n{"text": "b"}\n', encoding="utf-8")
    done = _crossent("eval", "--data", str(data), "--field", "text", "--name-field", "id")
    assert done.returncode == 2
    assert f"{data}:2" in done.stderr
    assert "--name-field id" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_the_default_text_is_recorded_by_name(smollm2: HFCausalLM, tmp_path: Path) -> None:
    del smollm2  # the cache is warm
    out = tmp_path / "default.json"
    done = _crossent("eval", "--max-chars", "200", "--no-progress", "--json", str(out))
    assert done.returncode == 0, done.stderr
    record = json.loads(out.read_text(encoding="utf-8"))
    name = f"pydoc_data.topics (Python {platform.python_version()})"
    assert record["provenance"]["data"] == [name]
    assert [document["name"] for document in record["documents"]] == [name]


def test_a_name_field_without_json_lines_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "plain.txt"
    data.write_text("a plain text has no fields\n", encoding="utf-8")
    done = _crossent("eval", "--data", str(data), "--name-field", "id")
    assert done.returncode == 2
    assert "--name-field NAME applies only with --field NAME" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("prefix", ["bos", "none"])
def test_max_tokens_equals_a_run_on_input_cut_by_hand(smollm2: HFCausalLM, prefix: str) -> None:
    first, second, third = (Document(str(line["id"]), str(line["text"])) for line in LINES)
    ids = smollm2.tokenizer.encode(second.text)
    # Cut the second text after a word whose text tokenizes back to the same first tokens.
    _, spans = smollm2.tokenizer.encode_with_offsets(second.text)
    keep = next(
        k
        for k in range(len(ids) // 2, len(ids))
        if second.text[spans[k - 1][1]] == " "
        and smollm2.tokenizer.encode(second.text[: spans[k - 1][1]]) == ids[:k]
    )
    cut = Document(second.name, second.text[: spans[keep - 1][1]])
    shift = prefix == "none"
    first_tokens = len(smollm2.tokenizer.encode(first.text)) - shift
    limited = evaluate(
        smollm2, [first, second, third], window=16, prefix=prefix,  # type: ignore[arg-type]
        max_tokens=first_tokens + keep - shift,
    )  # fmt: skip
    by_hand = evaluate(smollm2, [first, cut], window=16, prefix=prefix)  # type: ignore[arg-type]
    assert [doc.name for doc in limited.documents] == ["first", "7"]
    assert [doc.truncated for doc in limited.documents] == [False, True]
    assert limited.stopped_early
    assert not by_hand.stopped_early
    for ours, theirs in zip(limited.documents, by_hand.documents, strict=True):
        assert (ours.tokens, ours.bytes, ours.words) == (theirs.tokens, theirs.bytes, theirs.words)
        assert ours.unscored_bytes == theirs.unscored_bytes
        assert ours.nll_nats == pytest.approx(theirs.nll_nats, rel=1e-6)
    assert limited.totals.tokens == first_tokens + keep - shift
    assert limited.to_dict()["provenance"]["max_tokens"] == first_tokens + keep - shift

    # --max-documents against the first documents alone.
    two = evaluate(smollm2, [first, second, third], window=16, max_documents=2)
    alone = evaluate(smollm2, [first, second], window=16)
    assert two.totals == alone.totals
    assert two.stopped_early
    assert not alone.stopped_early


def test_the_terminal_says_what_was_not_scored(smollm2: HFCausalLM, tmp_path: Path) -> None:
    del smollm2  # the cache is warm
    text_file = tmp_path / "text.txt"
    text_file.write_text("Hello world, and more words to score here.\n" * 3, encoding="utf-8")
    out = tmp_path / "out.json"
    done = _crossent(
        "eval", "--data", str(text_file), "--prefix", "none", "--max-tokens", "12",
        "--json", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text(encoding="utf-8"))
    unscored = result["scoring"]["unscored_bytes"]
    assert unscored == len(b"Hello")
    assert f"its {unscored} bytes are left out of bits per byte" in done.stdout
    assert "--max-tokens: stopped after 12 tokens" in done.stdout
    assert result["totals"]["tokens"] == 12
    assert result["documents"][0]["truncated"] is True
