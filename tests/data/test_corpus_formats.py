"""Compressed, Parquet and ``datasets`` inputs read as the same text in .txt / .jsonl reads.

Each format is written here by its own library (gzip, zstandard, pyarrow, datasets) and must
give the same documents, and the same evaluation, as the plain file holding the same text.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from crossent.data import Corpus, Document, read_documents
from crossent.data.sources import InputError
from crossent.evaluation import evaluate
from crossent.models import HFCausalLM
from tiny_lm import tiny_lm

TEXT = "First line of a text.\nSecond line: café, 日本語, 🦊.\n\nLast paragraph.\n"
ROWS = ["one short document", "another, with ünïcode", "a third\nover two lines"]


@pytest.fixture(scope="module")
def model() -> HFCausalLM:
    return tiny_lm()


def _jsonl(rows: list[str]) -> bytes:
    return "".join(json.dumps({"text": row, "id": i}) + "\n" for i, row in enumerate(rows)).encode()


def _texts(documents: list[Document]) -> list[str]:
    return [document.text for document in documents]


def _evaluated(model: HFCausalLM, documents: object) -> list[tuple[int, float]]:
    result = evaluate(model, documents, window=16, batch_size=2)  # type: ignore[arg-type]
    return [(score.tokens, score.nll_nats) for score in result.documents]


@pytest.mark.parametrize("suffix", [".gz", ".zst"])
def test_compressed_text_reads_as_the_plain_file(
    tmp_path: Path, model: HFCausalLM, suffix: str
) -> None:
    plain = tmp_path / "a.txt"
    plain.write_bytes(TEXT.encode())
    packed = tmp_path / f"a.txt{suffix}"
    data = gzip.compress(TEXT.encode()) if suffix == ".gz" else zstandard.compress(TEXT.encode())
    packed.write_bytes(data)
    (document,) = read_documents([str(packed)])
    assert isinstance(document, Document)
    assert document.text == TEXT
    assert document.num_bytes == len(TEXT.encode())
    assert _evaluated(model, Corpus([str(packed)])) == _evaluated(model, Corpus([str(plain)]))
    # streamed in parts when large: the same text, part by part
    (streamed,) = read_documents([str(packed)], stream_bytes=8)
    assert "".join(streamed.parts()) == TEXT
    assert streamed.num_bytes == len(TEXT.encode())


@pytest.mark.parametrize("suffix", [".gz", ".zst"])
def test_compressed_jsonl_reads_as_the_plain_file(
    tmp_path: Path, model: HFCausalLM, suffix: str
) -> None:
    plain = tmp_path / "a.jsonl"
    plain.write_bytes(_jsonl(ROWS))
    packed = tmp_path / f"a.jsonl{suffix}"
    compress = gzip.compress if suffix == ".gz" else zstandard.compress
    packed.write_bytes(compress(_jsonl(ROWS)))
    documents = read_documents([str(packed)], field="text")
    assert _texts(documents) == ROWS  # type: ignore[arg-type]
    assert [d.name for d in documents] == [f"{packed}:{n}" for n in (1, 2, 3)]
    assert _evaluated(model, Corpus([str(packed)], field="text")) == _evaluated(
        model, Corpus([str(plain)], field="text")
    )


def test_parquet_reads_as_jsonl(tmp_path: Path, model: HFCausalLM) -> None:
    plain = tmp_path / "a.jsonl"
    plain.write_bytes(_jsonl(ROWS * 5))
    table = pa.table({"id": list(range(15)), "text": ROWS * 5})
    pq.write_table(table, tmp_path / "a.parquet", row_group_size=4)  # several row groups
    path = str(tmp_path / "a.parquet")
    documents = read_documents([path], field="text")
    assert _texts(documents) == ROWS * 5  # type: ignore[arg-type]
    assert documents[3].name == f"{path}:4"
    named = read_documents([path], field="text", name_field="id")
    assert [d.name for d in named] == [str(i) for i in range(15)]
    assert _evaluated(model, Corpus([path], field="text")) == _evaluated(
        model, Corpus([str(plain)], field="text")
    )


def test_saved_dataset_reads_as_jsonl(tmp_path: Path, model: HFCausalLM) -> None:
    datasets = pytest.importorskip("datasets", reason="the datasets library writes the folder")
    plain = tmp_path / "a.jsonl"
    plain.write_bytes(_jsonl(ROWS))
    folder = tmp_path / "saved"
    datasets.Dataset.from_dict({"text": ROWS, "id": [0, 1, 2]}).save_to_disk(str(folder))
    documents = read_documents([str(folder)], field="text")
    assert _texts(documents) == ROWS  # type: ignore[arg-type]
    assert [d.name for d in documents] == [f"{folder}:{n}" for n in (1, 2, 3)]
    assert _evaluated(model, Corpus([str(folder)], field="text")) == _evaluated(
        model, Corpus([str(plain)], field="text")
    )
    splits = tmp_path / "splits"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ROWS})}).save_to_disk(
        str(splits)
    )
    with pytest.raises(ValueError, match=r"holds several splits \(train\): name one"):
        Corpus([str(splits)], field="text")
    with pytest.raises(InputError, match=r"has no column 'body' \(its columns: text, id\)"):
        Corpus([str(folder)], field="body")
    with pytest.raises(InputError, match="column 'id' holds int64, not text"):
        Corpus([str(folder)], field="id")


def test_jsonl_is_read_a_line_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl.gz"
    path.write_bytes(gzip.compress(_jsonl(ROWS) + b"not json\n"))
    documents = iter(Corpus([str(path)], field="text"))
    assert ["".join(next(documents).parts()) for _ in ROWS] == ROWS  # before the bad line
    with pytest.raises(ValueError, match=r"a.jsonl.gz:4 is not valid JSON"):
        next(documents)


def test_bad_inputs_are_one_line_errors_naming_the_file(tmp_path: Path) -> None:
    corrupt = tmp_path / "bad.txt.gz"
    corrupt.write_bytes(gzip.compress(TEXT.encode() * 50)[:-30])
    with pytest.raises(ValueError, match=rf"^{corrupt} is not a valid gzip file: .+$"):
        read_documents([str(corrupt)])
    not_zstd = tmp_path / "bad.jsonl.zst"
    not_zstd.write_bytes(b"plain bytes")
    with pytest.raises(ValueError, match=rf"^{not_zstd} is not a valid zstd file: .+$"):
        read_documents([str(not_zstd)], field="text")
    table = tmp_path / "t.parquet"
    pq.write_table(pa.table({"body": ROWS, "n": [1, 2, 3]}), table)
    with pytest.raises(InputError, match=r"has no column 'text' \(its columns: body, n\)"):
        Corpus([str(table)], field="text")
    with pytest.raises(InputError, match=r"t.parquet: column 'n' holds int64, not text"):
        Corpus([str(table)], field="n")
    with pytest.raises(InputError, match=r"t.parquet is Parquet: name the field"):
        Corpus([str(table)])
    nulls = tmp_path / "nulls.parquet"
    pq.write_table(pa.table({"text": ["fine", None]}), nulls)
    with pytest.raises(ValueError, match=r"nulls.parquet:2: column 'text' is null"):
        read_documents([str(nulls)], field="text")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really")
    with pytest.raises(ValueError, match=r"broken.parquet is not a valid Parquet file"):
        Corpus([str(broken)], field="text")


def test_a_directory_mixes_formats_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(_jsonl(ROWS[:1])))
    pq.write_table(pa.table({"text": ROWS[1:2]}), tmp_path / "b.parquet")
    (tmp_path / "c.txt").write_text(ROWS[2], encoding="utf-8")
    documents = read_documents([str(tmp_path)], field="text")
    assert _texts(documents) == ROWS  # type: ignore[arg-type]
