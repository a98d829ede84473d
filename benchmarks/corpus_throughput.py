"""Many small documents against one long one (tokens/s), and peak memory with per-token output.

**Throughput.** The same lines of the Python documentation inside CPython are scored twice in
one process: as ``--documents`` small documents (one line each, a few dozen tokens) and joined
by newlines as one long document, with the same window and batch size; each is timed
``--repeats`` times, alternating, and the best rate of each is kept. The printed ratio is small
documents' tokens/s over the long document's. The model is a small random Llama (``--layers``,
``--hidden``; random weights: speed does not depend on them) with a byte-level BPE tokenizer
of 4,096 tokens learnt from the same text, so the run fits a few minutes on a shared CPU.

**Memory.** Each measurement runs in its own subprocess (this script with ``--child``): the
same model scores the text, repeated as needed, up to ``--max-tokens`` N tokens, writing every
token to a per-token JSON Lines file as ``crossent eval --per-token`` does
(:func:`crossent.report.per_token.per_token_file` as ``on_token``), or holding them
(``per_token=True``, as before issue 13, at ``--held-tokens``) for contrast. Memory is the
process's resident-set high-water mark (``VmHWM`` of ``/proc/self/status``) at the end, which
includes Python, PyTorch and the model.

Usage::

    .venv/bin/python benchmarks/corpus_throughput.py [--documents 1000] [--window 512]
        [--batch-size 4] [--repeats 2] [--tokens 10000,200000] [--held-tokens 10000,50000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _model(hidden: int, layers: int, context: int) -> Any:
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from crossent.models import HFCausalLM
    from crossent.models.bpe import train_bpe_tokenizer

    tokenizer = train_bpe_tokenizer([_text()], vocab_size=4096)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=4 * hidden,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4,
        max_position_embeddings=context, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    return HFCausalLM(AutoModelForCausalLM.from_config(config), tokenizer, name="random-llama")


def _text() -> str:
    from crossent.data import read_documents

    (document,) = read_documents([])
    return "".join(document.parts())


def _throughput(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from crossent.data import Document
    from crossent.evaluation import evaluate

    model = _model(args.hidden, args.layers, args.window)
    lines = [line for line in _text().split("\n") if len(line) >= 40][: args.documents]
    small = [Document(f"line{i}", line) for i, line in enumerate(lines)]
    long = [Document("joined", "\n".join(lines))]
    best: dict[str, tuple[float, int]] = {}
    with torch.inference_mode():
        for _ in range(args.repeats):
            for name, documents in (("small", small), ("long", long)):
                start = time.perf_counter()
                result = evaluate(model, documents, window=args.window, batch_size=args.batch_size)
                rate = result.totals.tokens / (time.perf_counter() - start)
                if rate > best.get(name, (0.0, 0))[0]:
                    best[name] = (rate, result.totals.tokens)
    return {
        "documents": len(small),
        "small_tokens": best["small"][1],
        "long_tokens": best["long"][1],
        "small_tokens_per_s": best["small"][0],
        "long_tokens_per_s": best["long"][0],
        "ratio": best["small"][0] / best["long"][0],
    }


def _child(args: argparse.Namespace) -> None:
    from crossent.data import Document
    from crossent.evaluation import evaluate
    from crossent.report.per_token import per_token_file

    model = _model(args.hidden, args.layers, args.window)
    text = _text()
    repeats = 1 + args.max_tokens // 150_000  # the text is about 200,000 of these tokens
    documents = [Document(f"copy{i}", text) for i in range(repeats)]
    kwargs = {"window": args.window, "batch_size": args.batch_size, "max_tokens": args.max_tokens}
    with tempfile.TemporaryDirectory() as folder:
        if args.child == "stream":
            with per_token_file(Path(folder) / "tokens.jsonl") as writer:
                result = evaluate(model, documents, on_token=writer, **kwargs)
        else:
            result = evaluate(model, documents, per_token=True, **kwargs)
    status = Path("/proc/self/status").read_text()
    peak = next(line for line in status.splitlines() if line.startswith("VmHWM"))
    print(json.dumps({"tokens": result.totals.tokens, "vmhwm_kib": int(peak.split()[1])}))


def _memory(args: argparse.Namespace, mode: str, tokens: int) -> dict[str, Any]:
    command = [
        sys.executable, __file__, "--child", mode, "--max-tokens", str(tokens),
        "--window", str(args.window), "--batch-size", str(args.batch_size),
        "--hidden", str(args.hidden), "--layers", str(args.layers),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--tokens", default="10000,200000")
    parser.add_argument("--held-tokens", default="10000,50000")
    parser.add_argument("--child", choices=["stream", "held"])
    parser.add_argument("--max-tokens", type=int, default=10_000)
    args = parser.parse_args()
    if args.child is not None:
        _child(args)
        return
    print(f"load average before: {os.getloadavg()}", flush=True)
    rates = _throughput(args)
    print(
        f"throughput: {rates['documents']} small documents ({rates['small_tokens']} tokens) "
        f"{rates['small_tokens_per_s']:.0f} tokens/s; one long document "
        f"({rates['long_tokens']} tokens) {rates['long_tokens_per_s']:.0f} tokens/s; "
        f"ratio {rates['ratio']:.2f}",
        flush=True,
    )
    for mode, counts in (("stream", args.tokens), ("held", args.held_tokens)):
        for tokens in (int(part) for part in counts.split(",") if part):
            peak = _memory(args, mode, tokens)
            print(
                f"memory: {mode:6s} {peak['tokens']:>7d} tokens  VmHWM "
                f"{peak['vmhwm_kib'] / 1024:.1f} MiB",
                flush=True,
            )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
