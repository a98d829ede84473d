"""``crossent train``: train or fine-tune a GPT by minimising cross-entropy.

Every flag named after a :class:`~crossent.training.config.TrainConfig` field has the parser
default None, so that "not given" is told apart from "given with the default value"; the help
shows :class:`TrainConfig`'s default instead. That is what ``--resume`` needs: a resumed run
keeps its saved settings, takes the few that may change (``--max-steps``, ``--max-minutes``,
``--patience``, ``--log-every``, ``--tensorboard``, ``--device``, ``--skip-nonfinite``) and
refuses every other flag given, in one line naming them.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from crossent.cli.arguments import Commands, add_progress_option, positive_int, show_progress

if TYPE_CHECKING:
    from crossent.training.config import TrainConfig
    from crossent.training.result import TrainResult

# GPTConfig.PRESETS's names, repeated here because importing crossent.models.gpt imports
# PyTorch, which --help must not; a test checks that the two agree.
PRESETS = ("tiny", "cpu-small", "gpt2", "gpt2-medium")
# The flags a resumed run accepts besides --resume and --progress.
RESUMABLE_FLAGS = (
    "max_steps", "max_minutes", "patience", "log_every", "tensorboard", "device", "skip_nonfinite",
)  # fmt: skip


def add_parser(commands: Commands) -> None:
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
    _add_data_options(train)
    _add_model_options(train)
    _add_optimizer_options(train)
    _add_run_options(train)
    train.set_defaults(run=run)


def _option(parser: argparse.ArgumentParser, name: str, help: str, **kwargs: Any) -> None:
    """``--name``, whose help ends with TrainConfig's default unless it names its own."""
    from crossent.training.config import TrainConfig

    value = getattr(TrainConfig(), name.replace("-", "_"), None)
    shown = f" (default: {value})" if value is not None and "(default" not in help else ""
    parser.add_argument(f"--{name}", help=help + shown, **kwargs)


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    _option(
        parser, "data", "texts as for crossent eval, repeatable (default: CPython's docs)",
        action="append",
    )  # fmt: skip
    _option(parser, "field", "the text field of JSON Lines input")
    _option(parser, "errors", "what to do with invalid UTF-8", choices=["strict", "replace"])
    _option(parser, "train-ratio", "the leading fraction of the text to train on", type=float)
    _option(
        parser, "tokenizer",
        "bpe: a byte-level BPE trained on the training text; smollm2: the embedded model's",
        choices=["bpe", "smollm2"],
    )  # fmt: skip
    _option(
        parser, "vocab-size",
        "the BPE's largest vocabulary; a small text may give fewer tokens, which the run reports",
        type=positive_int,
    )  # fmt: skip


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    _option(parser, "preset", f"GPT size: {', '.join(PRESETS)}", choices=PRESETS)
    for name in ("n-layer", "n-head", "d-model"):
        _option(parser, name, "override the preset's (default: the preset's)", type=positive_int)
    _option(
        parser, "context-length",
        "tokens per training row and validation window (default: the preset's; for --init, "
        "the model's, at most 1024)",
        type=positive_int,
    )  # fmt: skip
    _option(parser, "dropout", "dropout while training", type=float)
    _option(
        parser, "init", "fine-tune this model instead, anything crossent eval loads "
        "(default: a new GPT)", metavar="MODEL",
    )  # fmt: skip
    _option(
        parser, "teacher", "distil from this model; the student shares its tokenizer "
        "(default: no teacher)", metavar="MODEL",
    )  # fmt: skip
    _option(parser, "temperature", "distillation temperature", type=float)
    _option(parser, "alpha", "the weight of the soft (teacher) term", type=float)
    _option(parser, "compile", "torch.compile the model", action="store_true",
            default=None)  # fmt: skip
    _option(
        parser, "autocast", "bfloat16 autocast: auto (on CUDA only), bfloat16 (also on a CPU, "
        "fast where it has AMX or AVX512-BF16) or none",
        choices=["auto", "bfloat16", "none"],
    )  # fmt: skip


def _add_optimizer_options(parser: argparse.ArgumentParser) -> None:
    _option(parser, "batch-size", "sequences per micro-batch", type=positive_int)
    _option(parser, "grad-accum", "micro-batches per optimizer step", type=positive_int)
    _option(parser, "lr", "peak learning rate", type=float)
    _option(parser, "min-lr-ratio", "the cosine's floor, as a fraction of --lr", type=float)
    _option(parser, "warmup-steps", "steps of linear warm-up from 0", type=int)
    _option(parser, "weight-decay", "AdamW weight decay of matrices", type=float)
    _option(parser, "grad-clip", "largest gradient norm, 0 for none", type=float)
    _option(parser, "label-smoothing", "label smoothing of the training loss", type=float)
    _option(parser, "z-loss", "weight of PaLM's z-loss in the training loss", type=float)
    _option(parser, "seed", "seeds the weights, the data order and dropout", type=int)
    _option(
        parser, "skip-nonfinite", "skip and count a step whose loss or gradient is NaN or "
        "infinite, instead of stopping the run there with last/ and best/ as they were",
        action="store_true", default=None,
    )  # fmt: skip


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    from crossent.training.config import DEFAULT_RUN_MINUTES, TrainConfig

    _option(parser, "max-steps", "optimizer steps; the cosine schedule spans them",
            type=positive_int)  # fmt: skip
    _option(
        parser, "max-minutes",
        "cap on training time, 0 for none (default: none, but "
        f"{DEFAULT_RUN_MINUTES:g} minutes for a run without --max-steps or --resume)",
        type=float,
    )  # fmt: skip
    _option(parser, "eval-every", "steps between evaluations of the validation text",
            type=positive_int)  # fmt: skip
    _option(parser, "eval-batch-size", "windows per forward pass when evaluating",
            type=positive_int)  # fmt: skip
    _option(parser, "log-every", "steps between logged training losses", type=positive_int)
    _option(
        parser, "patience", "evaluations without improvement before stopping, 0 for never "
        f"(default: {TrainConfig().patience})", type=int,
    )  # fmt: skip
    _option(parser, "device", "cpu, cuda, ... (default: CUDA when present)")
    _option(parser, "out", "output folder, new or empty (default: runs/<date-time>)")
    _option(
        parser, "tensorboard", "also write TensorBoard event files into this folder, with the "
        "'tensorboard' extra (default: none)", metavar="DIR",
    )  # fmt: skip
    parser.add_argument(
        "--resume",
        metavar="OUT",
        help="continue the run in this folder, with its settings; only --max-steps, "
        "--max-minutes, --patience, --log-every, --tensorboard, --device and "
        "--skip-nonfinite may be given "
        "with it (default: a new run)",
    )
    add_progress_option(parser)


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields given on the command line, as TrainConfig takes them (the flags
    are named after the fields; ``--patience 0`` and ``--max-minutes 0`` are None)."""
    import dataclasses

    from crossent.training.config import TrainConfig

    given = {
        field.name: getattr(args, field.name)
        for field in dataclasses.fields(TrainConfig)
        if getattr(args, field.name, None) is not None
    }
    if "data" in given:
        given["data"] = tuple(given["data"])
    for name in ("patience", "max_minutes"):
        if name in given:
            given[name] = given[name] or None
    return given


def config_from_arguments(args: argparse.Namespace, out: str) -> TrainConfig:
    """A new run's settings from the parsed flags.

    Only the default run is capped in time: without ``--max-steps`` (and not resuming) it stops
    after :data:`~crossent.training.config.DEFAULT_RUN_MINUTES`; ``--max-minutes`` sets the cap
    of any run, and 0 removes it.
    """
    from crossent.training.config import DEFAULT_RUN_MINUTES, TrainConfig

    flags = given_settings(args)
    if args.max_minutes is None and args.max_steps is None and args.resume is None:
        flags["max_minutes"] = DEFAULT_RUN_MINUTES
    flags["out"] = out
    return TrainConfig(**flags)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def resumed_settings(args: argparse.Namespace) -> tuple[TrainConfig, str | None]:
    """The settings of the run ``--resume`` names, with the flags that may change; and, when it
    has nothing left to do, the line that says so.

    Raises:
        ValueError: a flag that cannot change on resume was given (naming each), or the folder
            holds no run.
    """
    from pathlib import Path

    from crossent.training.checkpoints import saved_run
    from crossent.training.config import resumed_config

    folder = Path(args.resume)
    done = saved_run(folder)
    given = given_settings(args)
    fixed = [_flag(name) for name in given if name not in RESUMABLE_FLAGS]
    if fixed:
        allowed = ", ".join(_flag(name) for name in RESUMABLE_FLAGS)
        raise ValueError(
            f"{', '.join(fixed)} cannot be given with --resume: a resumed run keeps the settings "
            f"it was started with; only {allowed} can change"
        )
    changes = {"max_minutes": None, **given}  # a cap is for this session only
    config = resumed_config(done.config, out=str(folder), **changes)
    return config, done.completion(config, folder)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except ValueError as error:
        if type(error) is not ValueError:  # an InputError says its own flag
            raise
        raise ValueError(_in_flags(str(error))) from None


def _in_flags(message: str) -> str:
    """The library's message with each setting it names as the flag the user typed: the
    library says ``vocab_size must exceed 257``, the command line ``--vocab-size must ...``."""
    import dataclasses
    import re

    from crossent.training.config import TrainConfig

    names = "|".join(field.name for field in dataclasses.fields(TrainConfig))
    return re.sub(rf"\b({names}) must\b", lambda found: f"{_flag(found[1])} must", message)


def _run(args: argparse.Namespace) -> int:
    import time

    from crossent.extras import require
    from crossent.training.config import check_new_output

    if args.resume is not None:
        config, complete = resumed_settings(args)
        if complete is not None:
            print(complete)
            return 0
    else:
        out = args.out or time.strftime("runs/%Y%m%d-%H%M%S")
        check_new_output(out)
        config = config_from_arguments(args, out)
    require("hf", "crossent train")
    require("report", "crossent train (its losses.png and report.html)")
    if config.tensorboard is not None:
        require("tensorboard", "crossent train --tensorboard")
    return _train(args, config)


def _train(args: argparse.Namespace, config: TrainConfig) -> int:
    import dataclasses

    from crossent.distributed import process_group
    from crossent.failures import exit_code_of
    from crossent.report.progress import TokenProgress
    from crossent.report.training import write_training_pages
    from crossent.training import train
    from crossent.training.result import TrainingInterrupted

    with process_group() as (rank, device):
        if device is not None:
            config = dataclasses.replace(config, device=device)
        try:
            with TokenProgress("training", enabled=show_progress(args, rank)) as bar:

                def progress(step: int, steps: int, tokens: int, loss: float) -> None:
                    bar.describe(step=step, loss=f"{loss:.3f}")
                    bar(step * tokens, steps * tokens)

                def log(line: str) -> None:
                    if rank == 0:
                        bar.write(line)

                def warn(line: str) -> None:
                    if rank == 0:
                        print(f"crossent train: warning: {line}", file=sys.stderr)

                resume = args.resume
                result = train(config, resume=resume, log=log, progress=progress, warn=warn)
        except TrainingInterrupted as interrupted:
            if rank == 0:
                _interrupted(interrupted.result)
            return exit_code_of(interrupted)
        if rank != 0:
            return 0
    write_training_pages(result)
    _summary(result)
    return 0


def _interrupted(result: TrainResult) -> None:
    from crossent.report.training import write_training_pages

    write_training_pages(result)
    print(
        f"crossent train: interrupted at step {result.step}; {result.out}/last is at step "
        f"{result.records[-1].step}, its report and plot are written; continue with: "
        f"crossent train --resume {result.out}",
        file=sys.stderr,
    )


def _summary(result: TrainResult) -> None:
    first, best, config = result.records[0], result.best, result.config
    vocabulary = f"vocabulary {result.vocab_size:,} tokens"
    bpe = config.init is None and config.teacher is None and config.tokenizer == "bpe"
    if bpe and result.vocab_size < config.vocab_size:
        vocabulary += (
            f" (--vocab-size {config.vocab_size} is an upper bound: the training text has no "
            "more pairs to merge)"
        )
    print(
        f"{result.parameters:,} parameters, {vocabulary}; training text "
        f"{result.split.train_bytes} bytes ({result.train_tokens} tokens), validation "
        f"{result.split.validation_bytes} bytes ({result.validation_tokens} tokens)"
    )
    print(
        f"validation loss {first.val_loss:.4f} -> {best.val_loss:.4f} nats/token "
        f"({best.val_bits_per_byte:.4f} bits/byte) at step {best.step}; stopped: {result.stopped}"
    )
    print(f"outputs in {result.out}: best/, last/, metrics.jsonl, losses.png, report.html")
