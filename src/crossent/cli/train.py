"""``crossent train``: train or fine-tune a GPT by minimising cross-entropy."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from crossent.cli.arguments import Commands, add_progress_option, positive_int, show_progress

if TYPE_CHECKING:
    from crossent.training.config import TrainConfig


def add_parser(commands: Commands) -> None:
    from crossent.training.config import DEFAULT_RUN_MINUTES, TrainConfig

    default = TrainConfig()
    train = commands.add_parser(
        "train",
        help="train or fine-tune a GPT by minimising cross-entropy, watching validation loss",
        description="Train a GPT-2-style model (or continue a pretrained one with --init, or "
        "distil one with --teacher) on texts, evaluating the whole validation split every "
        "--eval-every steps; keeps the best checkpoint in OUT/best and writes "
        "OUT/metrics.jsonl, OUT/losses.png and OUT/report.html. Without arguments: a small "
        "run on CPython's documentation that takes about 4 minutes on 2 CPU cores. Under "
        "torchrun: DistributedDataParallel with the same global batch.",
    )
    train.add_argument(
        "--data", action="append", help="texts as for crossent eval (default: CPython's docs)"
    )
    train.add_argument("--field", help="the text field of JSON Lines input")
    train.add_argument("--errors", choices=["strict", "replace"], default=default.errors)
    train.add_argument("--train-ratio", type=float, default=default.train_ratio)
    train.add_argument("--preset", default=default.preset, help="GPT size: tiny, cpu-small, gpt2")
    for name in ("n-layer", "n-head", "d-model", "context-length"):
        train.add_argument(f"--{name}", type=positive_int, help="override the preset")
    train.add_argument("--dropout", type=float, default=default.dropout)
    train.add_argument("--tokenizer", choices=["bpe", "smollm2"], default=default.tokenizer)
    train.add_argument("--vocab-size", type=positive_int, default=default.vocab_size)
    train.add_argument("--init", metavar="MODEL", help="fine-tune this model instead")
    train.add_argument("--teacher", metavar="MODEL", help="distil from this model")
    train.add_argument("--temperature", type=float, default=default.temperature)
    train.add_argument("--alpha", type=float, default=default.alpha, help="soft-term weight")
    train.add_argument("--batch-size", type=positive_int, default=default.batch_size)
    train.add_argument("--grad-accum", type=positive_int, default=default.grad_accum)
    train.add_argument(
        "--max-steps", type=positive_int, help=f"optimizer steps (default {default.max_steps})"
    )
    train.add_argument(
        "--max-minutes",
        type=float,
        help="cap on training time, 0 for none (default: none, but "
        f"{DEFAULT_RUN_MINUTES:g} minutes for a run without --max-steps or --resume)",
    )
    train.add_argument("--lr", type=float, default=default.lr)
    train.add_argument("--min-lr-ratio", type=float, default=default.min_lr_ratio)
    train.add_argument("--warmup-steps", type=int, default=default.warmup_steps)
    train.add_argument("--weight-decay", type=float, default=default.weight_decay)
    train.add_argument("--grad-clip", type=float, default=default.grad_clip)
    train.add_argument("--label-smoothing", type=float, default=default.label_smoothing)
    train.add_argument("--z-loss", type=float, default=default.z_loss)
    train.add_argument("--eval-every", type=positive_int, default=default.eval_every)
    train.add_argument("--eval-batch-size", type=positive_int, default=default.eval_batch_size)
    train.add_argument(
        "--patience",
        type=int,
        default=default.patience,
        help="evaluations without improvement before stopping (0: never stop early)",
    )
    train.add_argument("--autocast", choices=["auto", "bfloat16", "none"], default="auto")
    train.add_argument("--compile", action="store_true", help="torch.compile the model")
    train.add_argument("--seed", type=int, default=default.seed)
    train.add_argument("--device", help="cpu, cuda, ... (default: CUDA when present)")
    train.add_argument("--out", help="output folder (default: runs/<date-time>); must be new")
    train.add_argument("--resume", metavar="OUT", help="continue the run in this folder")
    add_progress_option(train)
    train.set_defaults(run=run)


def config_from_arguments(args: argparse.Namespace, out: str) -> TrainConfig:
    """The run's settings from the parsed flags, which are named after TrainConfig's fields.

    Only the default run is capped in time: without ``--max-steps`` (and not resuming) it stops
    after :data:`~crossent.training.config.DEFAULT_RUN_MINUTES`; ``--max-minutes`` sets the cap
    of any run, and 0 removes it.
    """
    import dataclasses

    from crossent.training.config import DEFAULT_RUN_MINUTES, TrainConfig

    flags = {
        field.name: getattr(args, field.name)
        for field in dataclasses.fields(TrainConfig)
        if getattr(args, field.name, None) is not None
    }
    if args.max_minutes is not None:
        flags["max_minutes"] = args.max_minutes or None
    elif args.max_steps is None and args.resume is None:
        flags["max_minutes"] = DEFAULT_RUN_MINUTES
    flags.update(data=tuple(args.data or ()), patience=args.patience or None, out=out)
    return TrainConfig(**flags)


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import time

    from crossent.extras import require
    from crossent.training.config import check_new_output

    out = args.resume or args.out or time.strftime("runs/%Y%m%d-%H%M%S")
    if args.resume is None:
        check_new_output(out)
    config = config_from_arguments(args, out)
    require("hf", "crossent train")
    require("report", "crossent train (its losses.png and report.html)")

    from crossent.distributed import process_group
    from crossent.report.progress import TokenProgress
    from crossent.report.training import write_training_pages
    from crossent.training import train

    with process_group() as (rank, device):
        if device is not None:
            config = dataclasses.replace(config, device=device)
        with TokenProgress("training", enabled=show_progress(args, rank)) as bar:

            def progress(step: int, steps: int, tokens: int, loss: float) -> None:
                bar.describe(step=step, loss=f"{loss:.3f}")
                bar(step * tokens, steps * tokens)

            def log(line: str) -> None:
                if rank == 0:
                    bar.write(line)

            result = train(config, resume=args.resume, log=log, progress=progress)
        if rank != 0:
            return 0
    write_training_pages(result)
    first, best = result.records[0], result.best
    print(
        f"{result.parameters:,} parameters; training text {result.split.train_bytes} bytes "
        f"({result.train_tokens} tokens), validation {result.split.validation_bytes} bytes "
        f"({result.validation_tokens} tokens)"
    )
    print(
        f"validation loss {first.val_loss:.4f} -> {best.val_loss:.4f} nats/token "
        f"({best.val_bits_per_byte:.4f} bits/byte) at step {best.step}; stopped: {result.stopped}"
    )
    print(f"outputs in {result.out}: best/, last/, metrics.jsonl, losses.png, report.html")
    return 0
