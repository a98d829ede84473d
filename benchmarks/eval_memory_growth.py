"""Peak memory of ``crossent eval`` as the corpus grows: the default text 1x, 10x and 100x.

The default text of ``crossent eval`` (CPython's pydoc topics, about 0.47 MB) is repeated
``N`` times into one file, and ``crossent eval --data FILE`` scores all of it in a fresh
process per row. Memory is that process's peak resident set (its ``VmHWM``, polled while it runs),
which includes Python, PyTorch, transformers and the model. The model is a small random Llama
(one layer, hidden 32, a byte-level BPE of 4,096 tokens learnt from the text, context 2048;
random weights, since memory does not depend on them), so that 100x, about 12 million tokens,
fits minutes on a shared CPU where SmolLM2 would take a day. Flat memory is the point: the
totals are merged as windows are scored and nothing is kept per token.

``--max-tokens N`` stops each row after N scored tokens (``crossent eval --max-tokens``): a
text file at or under ``crossent.data.sources.STREAM_BYTES`` is still read and held whole, one
over it is streamed, and either is tokenized a piece at a time up to the tokens scored; so a row
at 100x capped at 10x's tokens shows what the larger corpus itself costs, on a machine too busy
to score 12 million tokens in the time there was.

Usage::

    .venv/bin/python benchmarks/eval_memory_growth.py [--multiples 1,10,100] [--window 2048]
        [--batch-size 16] [--max-tokens N]
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


def _model(folder: Path, text: str, context: int) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from crossent.models.bpe import train_bpe_tokenizer

    tokenizer = train_bpe_tokenizer([text], vocab_size=4096)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=128, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=context,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _peak(command: list[str]) -> tuple[int, float, int]:
    """Exit code, seconds and peak resident memory (bytes) of ``command``, a fresh process.

    The peak is the child's own ``VmHWM`` (``/proc/PID/status``), read every 20 ms while it
    runs. Not wait4's ``ru_maxrss``: Linux carries the parent's high-water mark at the fork into
    the child across exec, and this parent held the whole repeated text (47 MB at 100x, more
    while writing it) and PyTorch, so the child would report the parent's peak as its own.
    """
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    status, peak = Path(f"/proc/{process.pid}/status"), 0
    while process.poll() is None:
        try:
            line = next(row for row in status.read_text().splitlines() if row.startswith("VmHWM:"))
            peak = max(peak, int(line.split()[1]) * 1024)  # kB
        except (OSError, StopIteration):
            pass  # exiting: its memory map (and the line) is already gone
        time.sleep(0.02)
    return process.returncode, time.perf_counter() - start, peak


def _machine() -> str:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    fields = dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition(":") for line in lscpu.splitlines())
    )
    flags = [flag for flag in fields.get("Flags", "").split() if flag.startswith(("avx", "amx"))]
    uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout
    return (
        f"{fields.get('Model name', '?')}, {os.cpu_count()} CPUs; flags {' '.join(flags)}\n"
        f"uptime: {uptime.strip()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--multiples", default="1,10,100")
    parser.add_argument("--window", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=None)
    options = parser.parse_args()
    from crossent.data import read_documents

    (document,) = read_documents([])
    text = document.text  # type: ignore[union-attr]
    print(_machine())
    cap = [] if options.max_tokens is None else ["--max-tokens", str(options.max_tokens)]
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "model"
        _model(folder, text, options.window)
        print("multiple  MB      tokens scored  seconds  peak MiB")
        for multiple in (int(value) for value in options.multiples.split(",")):
            path = Path(scratch) / f"text-{multiple}x.txt"
            path.write_text(text * multiple, encoding="utf-8")
            out = Path(scratch) / "out.json"
            code, seconds, peak = _peak(
                [sys.executable, "-m", "crossent", "eval", "--model", str(folder), "--data",
                 str(path), "--window", str(options.window), "--batch-size",
                 str(options.batch_size), *cap, "--no-progress", "--json", str(out)]
            )  # fmt: skip
            if code != 0:
                raise SystemExit(f"crossent eval exited {code} at {multiple}x")
            tokens = json.loads(out.read_text(encoding="utf-8"))["totals"]["tokens"]
            size = path.stat().st_size / 1e6
            print(f"{multiple:<8}  {size:<6.1f}  {tokens:<13}  {seconds:<7.1f}  {peak / 2**20:.1f}")
            print(_machine().splitlines()[-1])
            path.unlink()


if __name__ == "__main__":
    main()
