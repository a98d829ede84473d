"""What ``--dtype bfloat16`` numbers are worth: their distance from float32, and how far they move
with the batch size, measured in one run on the embedded model.

The embedded SmolLM2-135M-Instruct scores the same documents (three consecutive pieces of
crossent's default text, of different lengths, so that a batch of three pads the two shorter
ones) in float32 and in bfloat16, each with ``--batch-size 1`` and ``3``, through
``crossent.evaluate`` exactly as ``crossent eval`` does. For every document it prints the summed
NLL in nats of each of the four runs, then:

* bf16's distance from fp32 at the same batch size, ``|NLL_bf16 - NLL_fp32|`` per token;
* each dtype's batch-size spread, ``|NLL(batch 3) - NLL(batch 1)|`` per token;
* the ratios: bf16's spread over fp32's, and bf16's spread over its distance from fp32.

No timing is measured: the numbers are deterministic for one machine and PyTorch build, and the
script takes about a minute on a 2-core CPU (the model's conversion, on a first run, adds 40 s).

Usage::

    .venv/bin/python benchmarks/bf16_batch.py [--chars 700,500,900] [--batch-sizes 1,3]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from importlib.metadata import version

import torch

from crossent.data import Document, read_documents
from crossent.evaluation import evaluate
from crossent.models import CausalLM, load_model

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def _documents(lengths: list[int]) -> list[Document]:
    """Consecutive pieces of crossent's default text, ``lengths`` characters each."""
    (default,) = read_documents([])
    text = "".join(default.parts())
    pieces, start = [], 0
    for index, length in enumerate(lengths):
        pieces.append(Document(f"piece {index + 1}", text[start : start + length]))
        start += length
    return pieces


def nll_by_batch(
    model: CausalLM, documents: list[Document], batch_sizes: list[int]
) -> dict[int, list[float]]:
    """Each document's summed NLL in nats, per batch size, as ``crossent eval`` scores it."""
    return {
        batch: [score.nll_nats for score in evaluate(model, documents, batch_size=batch).documents]
        for batch in batch_sizes
    }


def _per_token(values: list[float], tokens: list[int]) -> str:
    return "  ".join(f"{value / count:.2e}" for value, count in zip(values, tokens, strict=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chars", default="700,500,900", help="characters of each document")
    parser.add_argument("--batch-sizes", default="1,3", help="the batch sizes to compare")
    args = parser.parse_args(argv)
    lengths = [int(item) for item in args.chars.split(",")]
    batch_sizes = [int(item) for item in args.batch_sizes.split(",")]
    low, high = batch_sizes[0], batch_sizes[-1]
    started = time.perf_counter()
    documents = _documents(lengths)
    model = load_model(None, device="cpu")
    tokens = [len(model.tokenizer.encode(document.text)) for document in documents]
    del model
    print(
        f"Python {platform.python_version()}, torch {torch.__version__}, "
        f"transformers {version('transformers')}, {torch.get_num_threads()} threads"
    )
    sizes = zip(documents, tokens, strict=True)
    print(f"documents: {', '.join(f'{d.name} {n} tokens' for d, n in sizes)}\n")
    nll = {
        name: nll_by_batch(load_model(None, dtype=dtype, device="cpu"), documents, batch_sizes)
        for name, dtype in DTYPES.items()
    }

    print("summed NLL per document, nats:")
    for dtype, by_batch in nll.items():
        for batch, values in by_batch.items():
            print(f"  {dtype:8}  batch {batch}  " + "  ".join(f"{value:10.4f}" for value in values))
    distance = {
        batch: [
            abs(b - f) for b, f in zip(nll["bfloat16"][batch], nll["float32"][batch], strict=True)
        ]
        for batch in batch_sizes
    }
    spread = {
        dtype: [abs(h - lo) for h, lo in zip(by[high], by[low], strict=True)]
        for dtype, by in nll.items()
    }
    print("\nper token, nats (one column per document):")
    for batch in batch_sizes:
        label = f"|bf16 - fp32|, batch {batch}:"
        print(f"  {label:33} {_per_token(distance[batch], tokens)}")
    for dtype in DTYPES:
        label = f"|batch {high} - batch {low}|, {dtype}:"
        print(f"  {label:33} {_per_token(spread[dtype], tokens)}")
    total = sum(tokens)
    mean_distance = sum(distance[low]) / total
    print("\nover all tokens, per token:")
    print(f"  bf16 distance from fp32 (batch {low}): {mean_distance:.2e} nats")
    for dtype in DTYPES:
        print(f"  {dtype} batch-size spread: {sum(spread[dtype]) / total:.2e} nats")
    fp32_spread = sum(spread["float32"])
    ratio = f"{sum(spread['bfloat16']) / fp32_spread:.0f}x" if fp32_spread > 0 else "inf"
    print(f"  bf16 spread / fp32 spread: {ratio}")
    relative = sum(spread["bfloat16"]) / sum(distance[low])
    print(f"  bf16 spread / bf16 distance from fp32: {relative:.2f}")
    print(f"\n{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
