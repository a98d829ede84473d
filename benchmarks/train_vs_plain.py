"""``crossent train``'s steps against a plain PyTorch loop training the same model on the same
data: tokens per second and peak memory, in float32 and under bfloat16 autocast (issue 14).

Two implementations (``--impls``), each run in a subprocess of its own (this script with
``--child``), so that the peak memory of one never counts in the other's:

* ``crossent``: :func:`crossent.training.train`, the library call ``crossent train`` makes, on a
  :class:`~crossent.training.TrainConfig` of the preset, batch, sequence length and precision
  (``autocast="none"`` or ``"bfloat16"``); evaluation only at step 0 and after the last step,
  so that the steps timed are training steps. The per-step times come from ``train``'s
  ``progress`` callback, which the loop calls after every optimizer step.
* ``plain``: the nanoGPT way. The same GPT with a materialised head, ``logits = F.linear(
  model(x), model.head_weight)`` (``(B, T, V)``), ``F.cross_entropy(logits.view(-1, V), y)``
  under ``torch.autocast("cpu", bfloat16)`` for bf16, backward, ``clip_grad_norm_``, AdamW with
  the same groups and hyperparameters (``fused`` only on CUDA, as nanoGPT sets it), the same
  warm-up and cosine learning rate, ``zero_grad(set_to_none=True)``.
* ``plain-fused``: ``plain`` with PyTorch's fused AdamW, which crossent uses on the CPU too:
  it tells how much of the difference is the optimizer.

Same model and data: each child seeds as :func:`~crossent.training.train` does, splits and
tokenizes the same text with the same BPE (crossent's data functions, shared by both), builds
the GPT from the same seed and takes the same rows in the same order
(:class:`crossent.training.data.TrainingRows`). Each child prints its loss on the first step's
rows under the initial weights; the table shows both (``tests/benchmarks/
test_train_vs_plain.py`` checks that they agree to 1e-5 in float32).

Time: ``--warmup`` steps, then ``--steps`` timed; the step time is the median of the timed
steps, wall and CPU (the process's CPU seconds: less sensitive than wall time to other work
on a shared machine). Rounds (``--rounds``) alternate the order of the implementations, and the
ratios are medians over the rounds of each round's ratio. Memory: the process's resident-set
high-water mark (``VmHWM``), reset after the warm-up (writing 5 to ``/proc/self/clear_refs``), so
it is the peak of the timed steps, weights and AdamW state included; in brackets the part above
the resident set just before them, which is what a step adds.

``--one-process`` runs each round's implementations one after the other in a single child
instead: the same process for all, so a difference between their speeds is theirs and not the
processes' (docs/benchmarks.md: separate children of the same code differed by up to 10 %); the
memory columns are then left out, as a later implementation would inherit the earlier one's peak.
``--interleave`` goes further: one child trains all the implementations at once, a step of each
in turn (each plain loop's step runs inside ``train``'s ``progress`` callback, and each clock
counts only its own implementation's steps), so that a drift of the machine over minutes falls on
all of them alike.

Reproduce (docs/benchmarks.md)::

    python benchmarks/train_vs_plain.py                        # cpu-small, fp32 and bf16
    python benchmarks/train_vs_plain.py --preset gpt2 --seq 1024 --batch 1 --vocab-size 50257 \\
        --steps 2 --warmup 1 --rounds 1                         # the memory row
    python benchmarks/train_vs_plain.py --preset gpt2 --seq 1024 --batch 1 --vocab-size 50257 \
        --steps 6 --warmup 5 --rounds 2 --interleave            # speed, step by step
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SEED = 1337
TRAIN_RATIO = 0.99  # a short validation text: the evaluations at both ends are not timed


def status_bytes(field: str) -> int:
    """``VmRSS`` or ``VmHWM`` of this process, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


class StepClock:
    """Wall and CPU time of each step, and the peak memory after the warm-up steps."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.rss_before = 0
        self.peak = 0
        self._last = (time.perf_counter(), time.process_time())

    def start(self) -> None:
        self._last = (time.perf_counter(), time.process_time())

    def step_done(self, step: int) -> None:
        now = (time.perf_counter(), time.process_time())
        if step > self.warmup:
            self.wall.append(now[0] - self._last[0])
            self.cpu.append(now[1] - self._last[1])
            self.peak = max(self.peak, status_bytes("VmHWM"))
        if step == self.warmup:
            Path("/proc/self/clear_refs").write_text("5")
            self.rss_before = status_bytes("VmRSS")
        self._last = (time.perf_counter(), time.process_time())

    def record(self) -> dict[str, Any]:
        return {
            "wall": statistics.median(self.wall),
            "cpu": statistics.median(self.cpu),
            "peak": self.peak,
            "above": self.peak - self.rss_before,
        }


def train_config(args: argparse.Namespace, precision: str, out: str) -> Any:
    """The :class:`~crossent.training.TrainConfig` both implementations train by."""
    from crossent.training import TrainConfig

    steps = args.warmup + args.steps
    return TrainConfig(
        preset=args.preset, context_length=args.seq, batch_size=args.batch, max_steps=steps,
        eval_every=steps, patience=None, vocab_size=args.vocab_size, train_ratio=TRAIN_RATIO,
        warmup_steps=1, autocast="bfloat16" if precision == "bfloat16" else "none", seed=SEED,
        out=out, eval_batch_size=args.batch, data=tuple(args.data),
        log_every=args.log_every,
    )  # fmt: skip


def run_crossent(args: argparse.Namespace, precision: str) -> dict[str, Any]:
    from crossent.training import train

    clock = StepClock(args.warmup)
    with tempfile.TemporaryDirectory() as folder:
        config = train_config(args, precision, str(Path(folder) / "run"))

        def progress(step: int, steps: int, tokens: int, loss: float) -> None:
            clock.step_done(step)

        clock.start()
        result = train(config, progress=progress, warn=lambda line: None)
    # train_log[0] is step 0: the first step's rows under the initial weights; the others are
    # the steps' (with --log-every 1)
    losses = [record.train_loss for record in result.train_log]
    return {**clock.record(), "first_loss": losses[0], "losses": losses[1:]}


def plain_setup(config: Any) -> tuple[Any, Any, int]:
    """The GPT, the training rows and the vocabulary size, made as ``train`` makes them."""
    import torch

    from crossent.models.bpe import train_bpe_tokenizer
    from crossent.models.checkpoint import GPTCausalLM
    from crossent.models.gpt import GPT, GPTConfig
    from crossent.training.data import TrainingRows, split_text, training_ids, training_text

    random.seed(config.seed)
    torch.manual_seed(config.seed)
    split = split_text(training_text(config), config.train_ratio)
    tokenizer = train_bpe_tokenizer([split.train], config.vocab_size)
    vocab = len(tokenizer)
    gpt_config = GPTConfig.preset(
        config.preset, vocab_size=vocab, context_length=config.context_length
    )
    model = GPT(gpt_config)
    lm = GPTCausalLM(model, tokenizer, name="plain")
    rows = TrainingRows(training_ids(lm.tokenizer, split.train), config.context_length, config.seed)
    return model, rows, vocab


def plain_lr(config: Any, step: int) -> float:
    """nanoGPT's warm-up and cosine, as crossent's schedule (``lr_factor``) defines it."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(1, config.max_steps - config.warmup_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - config.warmup_steps) / span)))
    return config.lr * (config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine)


class PlainLoop:
    """The plain loop (module docstring), a step at a time: ``step(n)`` trains step ``n`` and
    returns its loss."""

    def __init__(self, args: argparse.Namespace, precision: str, fused: bool) -> None:
        import torch

        with tempfile.TemporaryDirectory() as folder:
            self.config = train_config(args, precision, folder)
        self.model, self.rows, self.vocab = plain_setup(self.config)
        self.model.train()
        decay = [p for p in self.model.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.model.parameters() if p.dim() < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.config.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=self.config.lr, betas=self.config.betas, fused=fused,
        )  # fmt: skip
        self.bf16 = precision == "bfloat16"

    def loss_of(self, batch: Any) -> Any:
        import contextlib

        import torch
        import torch.nn.functional as F

        x, y = batch[:, :-1], batch[:, 1:]
        cast = torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else None
        with cast or contextlib.nullcontext():
            logits = F.linear(self.model(x), self.model.head_weight)  # (B, T, V)
            return F.cross_entropy(logits.view(-1, self.vocab), y.reshape(-1))

    def step(self, step: int) -> float:
        import torch

        config = self.config
        for group in self.optimizer.param_groups:
            group["lr"] = plain_lr(config, step)
        loss = self.loss_of(self.rows.take(step * config.batch_size, config.batch_size))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.item())  # nanoGPT reads the loss back to log it


def run_plain(args: argparse.Namespace, precision: str, fused: bool) -> dict[str, Any]:
    loop = PlainLoop(args, precision, fused)
    losses = []
    clock = StepClock(args.warmup)
    clock.start()
    for step in range(loop.config.max_steps):
        losses.append(loop.step(step))
        clock.step_done(step + 1)
    return {**clock.record(), "first_loss": losses[0], "losses": losses}


def run_interleaved(
    args: argparse.Namespace, precision: str, plains: list[str]
) -> dict[str, dict[str, Any]]:
    """``crossent`` and the ``plains`` in one process, a step of each in turn: after each of
    ``train``'s steps its ``progress`` callback runs one step of every plain loop, and each
    implementation's clock counts only its own steps. So all see the same machine at the same
    moment and each step follows another implementation's, the fairest comparison this
    machine allows (no memory columns: the process is shared)."""
    from crossent.training import train

    loops = {impl: PlainLoop(args, precision, fused=impl == "plain-fused") for impl in plains}
    clocks = {impl: StepClock(args.warmup) for impl in ["crossent", *plains]}
    losses: dict[str, list[float]] = {impl: [] for impl in plains}

    def progress(step: int, steps: int, tokens: int, loss: float) -> None:
        clocks["crossent"].step_done(step)
        for impl, loop in loops.items():
            clocks[impl].start()
            losses[impl].append(loop.step(step - 1))
            clocks[impl].step_done(step)
        clocks["crossent"].start()

    with tempfile.TemporaryDirectory() as folder:
        config = train_config(args, precision, str(Path(folder) / "run"))
        clocks["crossent"].start()
        result = train(config, progress=progress, warn=lambda line: None)
    ours = [record.train_loss for record in result.train_log]
    records = {
        "crossent": {**clocks["crossent"].record(), "first_loss": ours[0], "losses": ours[1:]}
    }
    for impl in plains:
        records[impl] = {
            **clocks[impl].record(),
            "first_loss": losses[impl][0],
            "losses": losses[impl],
        }
    return records


def child(args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    impls, precision = args.child
    if args.interleave:
        plains = [impl for impl in impls.split(",") if impl != "crossent"]
        for impl, record in run_interleaved(args, precision, plains).items():
            record["threads"] = torch.get_num_threads()
            print("RESULT " + json.dumps({**record, "impl": impl}), flush=True)
        return
    for impl in impls.split(","):  # several: one after the other in this process (--one-process)
        if impl == "crossent":
            record = run_crossent(args, precision)
        else:
            record = run_plain(args, precision, fused=impl == "plain-fused")
        record["threads"] = torch.get_num_threads()
        record["impl"] = impl
        print("RESULT " + json.dumps(record), flush=True)


def measure(args: argparse.Namespace, impl: str, precision: str) -> dict[str, Any]:
    return measure_together(args, [impl], precision)[impl]


def measure_together(
    args: argparse.Namespace, impls: list[str], precision: str
) -> dict[str, dict[str, Any]]:
    """Each of ``impls`` run one after the other in one child process."""
    command = [sys.executable, __file__, "--child", ",".join(impls), precision, *args.passed]
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise SystemExit(f"{','.join(impls)} {precision} failed:\n{done.stderr[-3000:]}")
    records = [json.loads(line[len("RESULT ") :]) for line in lines]
    return {record["impl"]: record for record in records}


def main() -> None:
    args = parse()
    if args.child:
        child(args)
        return
    tokens = args.batch * args.seq
    print(f"load average before: {os.getloadavg()}", flush=True)
    print("| precision | impl | tokens/s (wall) | x plain | CPU s/step | x plain | peak MiB "
          "(step) | x plain | first loss |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for precision in args.precisions.split(","):
        rounds: list[dict[str, dict[str, Any]]] = []
        for number in range(args.rounds):
            impls = args.impls.split(",")
            order = impls if number % 2 == 0 else impls[::-1]
            if args.one_process or args.interleave:
                rounds.append(measure_together(args, order, precision))
            else:
                rounds.append({impl: measure(args, impl, precision) for impl in order})
        for impl in args.impls.split(","):
            memory = not (args.one_process or args.interleave)
            print(row(precision, impl, rounds, tokens, memory=memory), flush=True)
    print(f"load average after: {os.getloadavg()}")


def row(
    precision: str,
    impl: str,
    rounds: list[dict[str, dict[str, Any]]],
    tokens: int,
    memory: bool = True,
) -> str:
    """One table row: medians over the rounds, ratios to ``plain`` of the same round; the peak
    columns "-" when the implementations shared a process (``memory`` False)."""

    def median(key: str, ratio: bool = False) -> float:
        return statistics.median(
            r[impl][key] / (r["plain"][key] if ratio and "plain" in r else 1.0) for r in rounds
        )

    mib = 2**20
    speed = tokens / median("wall")
    speed_ratio = 1.0 / median("wall", ratio=True)
    peak = (
        f"{median('peak') / mib:,.0f} ({median('above') / mib:,.0f}) | "
        f"{median('peak', ratio=True):.2f} ({median('above', ratio=True):.2f})"
        if memory
        else "- | -"
    )
    return (
        f"| {precision} | {impl} | {speed:,.0f} | {speed_ratio:.2f} | {median('cpu'):.3f} | "
        f"{median('cpu', ratio=True):.2f} | {peak} | {rounds[-1][impl]['first_loss']:.6f} |"
    )


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--seq", type=int, default=256, help="tokens per row")
    parser.add_argument("--batch", type=int, default=8, help="rows per step")
    parser.add_argument("--vocab-size", type=int, default=4096, help="the BPE's largest")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per child")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--precisions", default="float32,bfloat16")
    parser.add_argument("--impls", default="crossent,plain,plain-fused")
    parser.add_argument("--threads", type=int, default=0, help="0: PyTorch's default")
    parser.add_argument("--log-every", type=int, default=10, help="crossent's (its default)")
    parser.add_argument("--data", action="append", default=[], help="default: CPython's docs")
    parser.add_argument(
        "--one-process",
        action="store_true",
        help="each round's implementations one after the other in one process: their speeds "
        "free of the differences between processes (no memory columns)",
    )
    parser.add_argument(
        "--interleave",
        action="store_true",
        help="crossent and the plain loops in one process, one step of each in turn (needs "
        "crossent among --impls; no memory columns)",
    )
    parser.add_argument("--child", nargs=2, metavar=("IMPL", "PRECISION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.interleave and "crossent" not in args.impls.split(","):
        parser.error("--interleave runs the plain loops inside crossent's: add crossent to --impls")
    args.passed = (
        [
            f"--{name}={getattr(args, name.replace('-', '_'))}"
            for name in (
                "preset",
                "seq",
                "batch",
                "vocab-size",
                "steps",
                "warmup",
                "threads",
                "log-every",
            )
        ]
        + [f"--data={path}" for path in args.data]
        + (["--interleave"] if args.interleave else [])
    )
    return args


if __name__ == "__main__":
    main()
