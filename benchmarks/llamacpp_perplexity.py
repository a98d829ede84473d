"""crossent's ``--convention llama.cpp`` next to llama.cpp itself, on the embedded GGUF file.

llama.cpp runs through the PyPI package ``llama-cpp-python`` (built from source; on an x86 CPU
without ``-march=native`` support, ``CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON
-DGGML_F16C=ON" pip install llama-cpp-python``). That package has no ``llama-perplexity``
binary, so this script runs ``perplexity()`` of ``tools/perplexity/perplexity.cpp`` on
llama.cpp's own logits: the text tokenized by llama.cpp with its special tokens (BOS only when
the GGUF says ``add_bos_token``), ``len // n_ctx`` chunks, each chunk's first token replaced by
BOS when it adds one, the KV cache cleared between chunks, logits ``n_ctx/2 .. n_ctx - 2``
scoring tokens ``n_ctx/2 + 1 .. n_ctx - 1``, and ``PPL = x +/- y`` as it prints it.

crossent scores the same text with ``crossent.evaluate(..., convention="llama.cpp")`` on the
GGUF dequantised to float32 (the default model). The difference that remains is llama.cpp
computing with the 4-bit Q4_1 weights themselves (and its own kernels), while crossent computes
with their float32 dequantisation; the token counts show whether both tokenizers agree.

Usage::

    .venv/bin/python benchmarks/llamacpp_perplexity.py [--n-ctx 128] [--chars 20000]
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np

from crossent.data import Document, read_documents
from crossent.data.conventions import llama_cpp_uncertainty
from crossent.evaluation import evaluate
from crossent.models import load_model
from crossent.models.gguf import embedded_gguf


def llama_cpp_perplexity(text: str, n_ctx: int, threads: int) -> tuple[float, float, int, int]:
    """(PPL, its +/-, tokens scored, tokens of the text) from llama.cpp's logits."""
    from llama_cpp import Llama

    llm = Llama(
        model_path=str(embedded_gguf()), n_ctx=n_ctx, n_batch=n_ctx, logits_all=True,
        n_threads=threads, verbose=False,
    )  # fmt: skip
    plain = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
    tokens = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
    add_bos = len(tokens) == len(plain) + 1  # the vocabulary's add_bos_token
    first = n_ctx // 2
    nll = nll2 = 0.0
    count = 0
    for chunk in range(len(tokens) // n_ctx):
        start = chunk * n_ctx
        batch = list(tokens[start : start + n_ctx])
        if add_bos:
            batch[0] = llm.token_bos()
        llm.reset()  # a fresh KV cache for every chunk
        llm.eval(batch)
        logits = np.asarray(llm.scores[:n_ctx], dtype=np.float64)
        for j in range(first, n_ctx - 1):
            row = logits[j]
            top = row.max()
            value = float(top + math.log(np.exp(row - top).sum()) - row[tokens[start + j + 1]])
            nll += value
            nll2 += value * value
            count += 1
    ppl = math.exp(nll / count)
    uncertainty = llama_cpp_uncertainty(nll, nll2, count)
    return ppl, uncertainty or math.nan, count, len(plain)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-ctx", type=int, default=128, help="the window, llama.cpp's -c")
    parser.add_argument("--chars", type=int, default=20000, help="characters of the default text")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp's threads")
    args = parser.parse_args(argv)
    (default,) = read_documents([])
    text = "".join(default.parts())[: args.chars]

    model = load_model(None)
    ours = evaluate(model, [Document("text", text)], window=args.n_ctx, convention="llama.cpp")
    block = ours.convention_block()
    ppl, plus_minus, count, n_tokens = llama_cpp_perplexity(text, args.n_ctx, args.threads)

    read = block["tokens_scored"] + block["tokens_unscored"]
    print(f"text: {args.chars} characters of the default text; n_ctx {args.n_ctx}")
    print(f"tokens: crossent {read}, llama.cpp {n_tokens}; scored: crossent "
          f"{block['tokens_scored']}, llama.cpp {count}")  # fmt: skip
    print(f"crossent  (float32 dequantised): PPL = {block['perplexity']:.4f} +/- "
          f"{block['perplexity_uncertainty']:.5f}")  # fmt: skip
    print(f"llama.cpp (Q4_1 weights):        PPL = {ppl:.4f} +/- {plus_minus:.5f}")
    difference = block["perplexity"] - ppl
    print(f"difference: {difference:+.4f} ({difference / ppl:+.3%}); "
          f"in nats per token {math.log(block['perplexity']) - math.log(ppl):+.5f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
