"""Texts to evaluate on, and the windowing that decides which token is scored where.

* :mod:`crossent.data.sources`: files, directories, JSON Lines, Parquet, ``datasets`` folders,
  gzip or zstd files, stdin or the default text (the Python documentation inside CPython),
  read lazily (:class:`Corpus`) as documents (:mod:`crossent.data.documents`).
* :mod:`crossent.data.counts`: how a text's bytes and words are counted (lm-eval's way).
* :mod:`crossent.data.tokens`: tokenizing a document that arrives in parts, a piece at a time.
* :mod:`crossent.data.windows`: the one documented convention for cutting a tokenized document
  into model-sized :class:`Window` objects so that every token is scored exactly once.
* :mod:`crossent.data.conventions`: the same for llama.cpp's and the Transformers guide's ways
  of scoring (``--convention``), each tool's rules written once.
* :mod:`crossent.data.stream`: documents to batches of windows as they are scored, the prefix
  token before each, and the padded tensors a model reads (imported on its own: it needs torch).
"""

from crossent.data.sources import (
    CompressedDocument,
    Corpus,
    Document,
    FileDocument,
    Text,
    read_documents,
)
from crossent.data.windows import Window, iter_windows, rolling_windows

__all__ = [
    "CompressedDocument",
    "Corpus",
    "Document",
    "FileDocument",
    "Text",
    "Window",
    "iter_windows",
    "read_documents",
    "rolling_windows",
]
