"""Texts in columns: Parquet files and Hugging Face ``datasets`` folders, read a batch at a time.

A Parquet file (``.parquet``) is read with pyarrow a record batch at a time (within its row
groups), only the ``field`` column (and ``name_field``'s) decoded; a folder that
``datasets.Dataset.save_to_disk`` wrote (it holds ``state.json`` and ``dataset_info.json``) is
opened with ``datasets.load_from_disk``, which memory-maps its Arrow files, and walked in
batches. Either way one row is one document, named ``path:row`` with rows numbered from 1 (as
JSON Lines' lines are), or by its ``name_field``. The column is checked when the input is
opened, before anything is scored: it must exist and hold strings. A null or empty text is
an error naming its row, as an empty JSON Lines field is. Both need the ``corpus`` extra
(pyarrow, datasets).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from crossent.data.documents import Document, InputError
from crossent.extras import MissingExtraError

# Rows decoded at a time.
_BATCH_ROWS = 1024
_STRING_TYPES = ("string", "large_string", "string_view")


def is_saved_dataset(path: str) -> bool:
    """Whether ``path`` is a folder written by ``datasets`` ``save_to_disk``."""
    return any(
        os.path.isfile(os.path.join(path, name)) for name in ("state.json", "dataset_dict.json")
    )


def check_parquet(path: str, field: str, name_field: str | None) -> None:
    """Refuse a Parquet file that cannot be read or lacks a text column ``field``."""
    schema = _parquet_file(path).schema_arrow
    _check_column(path, {name: str(schema.field(name).type) for name in schema.names}, field)
    _check_name_column(path, schema.names, name_field)


def parquet_documents(path: str, field: str, name_field: str | None) -> Iterator[Document]:
    """One document per row of the Parquet file's column ``field``, a batch at a time."""
    columns = [field] if name_field in (None, field) else [field, name_field]
    batches = _parquet_file(path).iter_batches(batch_size=_BATCH_ROWS, columns=columns)
    row = 0
    try:
        for batch in batches:
            texts = batch.column(field).to_pylist()
            names = batch.column(name_field).to_pylist() if name_field else None
            for offset, text in enumerate(texts):
                name = None if names is None else names[offset]
                yield _row_document(path, row + offset + 1, field, text, name_field, name)
            row += len(texts)
    except OSError as error:  # pyarrow's errors for a damaged file derive from it
        raise ValueError(f"cannot read {path}: {error}") from None


def open_dataset(path: str, field: str, name_field: str | None) -> Any:
    """The ``datasets`` folder at ``path`` (memory-mapped), checked to have text ``field``."""
    try:
        import datasets
    except ImportError:
        raise _missing(path, "datasets") from None
    try:
        dataset = datasets.load_from_disk(path)
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read dataset {path}: {error}") from None
    if isinstance(dataset, datasets.DatasetDict):
        splits = ", ".join(dataset)
        raise ValueError(
            f"{path} holds several splits ({splits}): name one, e.g. "
            f"{os.path.join(path, next(iter(dataset), 'train'))}"
        )
    types = {name: _feature_type(feature) for name, feature in dataset.features.items()}
    _check_column(path, types, field)
    _check_name_column(path, list(types), name_field)
    return dataset


def dataset_documents(path: str, field: str, name_field: str | None) -> Iterator[Document]:
    """One document per row of the saved dataset's column ``field``, a batch at a time."""
    dataset = open_dataset(path, field, name_field)
    columns = [field] if name_field in (None, field) else [field, name_field]
    row = 0
    for batch in dataset.select_columns(columns).iter(batch_size=_BATCH_ROWS):
        texts = batch[field]
        names = batch[name_field] if name_field else None
        for offset, text in enumerate(texts):
            name = None if names is None else names[offset]
            yield _row_document(path, row + offset + 1, field, text, name_field, name)
        row += len(texts)


def _parquet_file(path: str) -> Any:
    try:
        import pyarrow.parquet
    except ImportError:
        raise _missing(path, "pyarrow") from None
    try:
        return pyarrow.parquet.ParquetFile(path)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file or directory") from None
    except (OSError, ValueError) as error:  # ArrowInvalid is a ValueError
        raise ValueError(f"{path} is not a valid Parquet file: {error}") from None


def _missing(path: str, module: str) -> MissingExtraError:
    return MissingExtraError(
        f"reading {path} needs the 'corpus' extra ({module} missing): "
        "pip install 'crossent[corpus]'"
    )


def _feature_type(feature: object) -> str:
    return str(getattr(feature, "dtype", type(feature).__name__))


def _check_column(path: str, types: dict[str, str], field: str) -> None:
    if field not in types:
        raise InputError(
            f"{path} has no column {field!r} (its columns: {', '.join(types) or 'none'})",
            "field=NAME",
            "--field NAME",
        )
    if types[field] not in _STRING_TYPES:
        raise InputError(
            f"{path}: column {field!r} holds {types[field]}, not text",
            "field=NAME",
            "--field NAME",
        )


def _check_name_column(path: str, names: list[str], name_field: str | None) -> None:
    if name_field is not None and name_field not in names:
        raise InputError(
            f"{path} has no column {name_field!r} to name rows by (its columns: "
            f"{', '.join(names) or 'none'})",
            f"name_field={name_field!r}",
            f"--name-field {name_field}",
        )


def _row_document(
    path: str, row: int, field: str, text: object, name_field: str | None, name: object
) -> Document:
    where = f"{path}:{row}"
    if text is None:
        raise ValueError(f"{where}: column {field!r} is null")
    if not isinstance(text, str):
        raise ValueError(f"{where}: column {field!r} is a {type(text).__name__}, not text")
    if not text:
        raise ValueError(f"{where}: column {field!r} is empty")
    return Document(name=where if name_field is None else str(name), text=text)
