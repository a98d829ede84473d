"""``crossent eval``: cross-entropy, perplexity and bits per byte of a causal LM on texts."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from crossent.cli.arguments import (
    DEFAULT_MODEL_HELP,
    Commands,
    Parser,
    add_output_options,
    add_scoring_options,
    load,
    positive_int,
    scoring_arguments,
    show_progress,
    write_output,
)
from crossent.cli.documents import corpus_to_score
from crossent.extras import require

if TYPE_CHECKING:
    from crossent.evaluation import EvaluationResult


def add_parser(commands: Commands) -> None:
    evaluate = commands.add_parser(
        "eval",
        help="cross-entropy, perplexity and bits per byte of a causal LM on texts",
        description="Score every token of the texts once (rolling windows; see crossent.data."
        "windows) and report nats and bits per token, perplexity, bits per byte, byte and word "
        "perplexity and top-1 accuracy. Defaults: the embedded SmolLM2-135M-Instruct on the "
        "Python documentation inside CPython. Under torchrun the windows are shared across "
        "the processes.",
    )
    evaluate.add_argument("--model", help=DEFAULT_MODEL_HELP)
    add_scoring_options(evaluate)
    evaluate.add_argument(
        "--convention",
        choices=["lm-eval", "llama.cpp", "hf-stride"],
        default="lm-eval",
        help="which tokens are scored, as which tool scores them: lm-eval (rolling windows, "
        "every token once), llama.cpp (llama-perplexity: chunks of --window, the second half "
        "of each scored) or hf-stride (the Transformers guide's strided windows); also picks "
        "the default --prefix, see crossent.data.conventions (default: lm-eval)",
    )
    evaluate.add_argument(
        "--per-token",
        metavar="FILE",
        help="write every scored token (text or bytes, offset, nats, probability, rank, top-5) "
        "as .jsonl or .csv (missing folders are created)",
    )
    evaluate.add_argument(
        "--by-position",
        action="store_true",
        help="also show the mean loss by position in the window (tokens of context, in "
        "power-of-two buckets: 1, 2-3, 4-7, ...) as a table, in the JSON and in the report",
    )
    evaluate.add_argument(
        "--compile",
        action="store_true",
        help="run the model's trunk through torch.compile: compiling takes half a minute or "
        "more, and whether scoring is faster after it depends on the CPU (1.38x on one Xeon, "
        "slower on an AMD EPYC: docs/benchmarks.md), so measure it on long texts of yours; the "
        "numbers equal eager's to float32 rounding (default: off)",
    )
    evaluate.add_argument(
        "--calibration",
        action="store_true",
        help="also measure calibration in the same pass: the expected calibration error of the "
        "top-1 prediction (15 bins, equal-width and equal-mass), mean confidence against "
        "accuracy, mean entropy against the loss, and the temperature that minimises the loss "
        "with the loss and bits per byte there, in the table, the JSON and the report "
        "(default: off)",
    )
    evaluate.add_argument(
        "--bootstrap",
        type=resample_count,
        metavar="N",
        help="resamples of the bootstrap over documents behind the per-document error bars "
        "(at least 2; 0 leaves the bootstrap out) (default: 1000)",
    )
    evaluate.add_argument(
        "--bootstrap-seed",
        type=int,
        metavar="SEED",
        help="seed of the bootstrap's numpy generator: the same seed and documents give the "
        "same error bars (default: 0)",
    )
    add_limit_options(evaluate)
    add_output_options(evaluate)
    evaluate.set_defaults(run=run)


def resample_count(text: str) -> int:
    """An argument type: a bootstrap's resamples, 0 (none) or at least 2."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value == 1 or value < 0:
        raise argparse.ArgumentTypeError(
            f"expected 0 (no bootstrap) or at least 2 resamples, got {value}"
        )
    return value


def add_limit_options(parser: Parser) -> None:
    """``--max-tokens`` and ``--max-documents``, for a quick evaluation."""
    parser.add_argument(
        "--max-tokens",
        type=positive_int,
        metavar="N",
        help="stop after N scored tokens: the document they end in counts only the text "
        "scored, later ones are not read (default: all)",
    )
    parser.add_argument(
        "--max-documents",
        type=positive_int,
        metavar="N",
        help="score only the first N documents (default: all)",
    )


def run(args: argparse.Namespace) -> int:
    require("hf", "crossent eval")
    check_convention_options(args)
    if args.per_token is not None:
        from crossent.report.per_token import per_token_format

        per_token_format(args.per_token)
    documents = corpus_to_score(args, outputs=[args.json, args.report, args.per_token])
    # The library is imported once every option has been checked: a mistake costs no wait.
    import json

    from crossent.data.sources import default_text_name
    from crossent.distributed import process_group
    from crossent.evaluation import Inputs, evaluate
    from crossent.report.evaluation_page import render_evaluation_report
    from crossent.report.per_token import per_token_output
    from crossent.report.progress import TokenProgress
    from crossent.report.table import format_evaluation, format_uncertainty

    with process_group() as (rank, device):
        model = load(args.model, args, device)
        with (
            TokenProgress("scoring", enabled=show_progress(args, rank)) as progress,
            per_token_output(args.per_token, write=rank == 0) as on_token,
        ):
            result = evaluate(
                model,
                documents,
                **scoring_arguments(args),
                per_token=args.report is not None,
                on_token=on_token,
                max_tokens=args.max_tokens,
                max_documents=args.max_documents,
                inputs=Inputs(tuple(args.data or [default_text_name()]), args.max_chars),
                progress=progress,
                convention=args.convention,
                by_position=args.by_position,
                compile=args.compile,
                calibration=args.calibration,
            )
        if rank != 0:
            return 0
    result = with_bootstrap(result, args.bootstrap, args.bootstrap_seed)
    print(format_evaluation(result, model_description=model.description))
    for note in [*format_uncertainty(result), *scoring_notes(result)]:
        print(note)
    if result.by_position is not None:
        from crossent.report.positions import format_positions

        print(format_positions(result.by_position))
    if result.calibration is not None:
        from crossent.report.calibration import format_calibration

        print("\n".join(format_calibration(result.calibration)))
    write_output(args.json, lambda: json.dumps(result.to_dict(), indent=2) + "\n")
    if args.per_token is not None:
        print(f"wrote {args.per_token}")
    write_output(
        args.report,
        lambda: render_evaluation_report(result, model_description=model.description),
    )
    return 0


def with_bootstrap(
    result: EvaluationResult, resamples: int | None, seed: int | None
) -> EvaluationResult:
    """``result`` with its bootstrap over documents drawn ``resamples`` times from ``seed``
    (:func:`crossent.evaluation.records.bootstrap_scores`), or without one for 0; None keeps
    the default of each (:data:`crossent.uncertainty.DEFAULT_RESAMPLES`, ``DEFAULT_SEED``), and
    with both None the bootstrap :func:`crossent.evaluation.evaluate` drew stays."""
    if resamples is None and seed is None:
        return result
    from dataclasses import replace

    from crossent.evaluation.records import bootstrap_scores
    from crossent.uncertainty import DEFAULT_RESAMPLES, DEFAULT_SEED

    resamples = DEFAULT_RESAMPLES if resamples is None else resamples
    seed = DEFAULT_SEED if seed is None else seed
    if resamples == 0:
        return replace(result, bootstrap=None)
    drawn = bootstrap_scores(result.documents, resamples=resamples, seed=seed)
    return replace(result, bootstrap=drawn)


def check_convention_options(args: argparse.Namespace) -> None:
    """Refuse, before a model loads, a window or stride the convention cannot use
    (:func:`crossent.data.conventions.check_convention`, with the flags named), and
    ``--calibration`` under ``hf-stride``."""
    if args.convention == "hf-stride" and args.calibration:
        raise ValueError(
            "--calibration does not apply to --convention hf-stride: its totals weigh tokens "
            "by window, calibration counts each scored token once (use lm-eval or llama.cpp)"
        )
    if args.convention == "hf-stride" and args.window == 1:
        raise ValueError(
            "--window 1 is too small for --convention hf-stride: a window of one token "
            "predicts none of its labels"
        )
    if args.convention != "llama.cpp":
        return
    if args.stride is not None and args.stride != args.window:
        raise ValueError(
            f"--stride {args.stride} does not apply to --convention llama.cpp: its chunks never "
            "overlap (leave --stride out)"
        )
    if args.window is not None and args.window < 3:
        raise ValueError(
            f"--window {args.window} is too small for --convention llama.cpp: it scores the "
            "second half of each chunk but its first token, so it needs at least 3"
        )


def scoring_notes(result: EvaluationResult) -> list[str]:
    """The lines that say what was left unscored: a first token without a prefix, the limits."""
    notes = [convention_note(result)]
    if result.prefix == "none" and result.convention == "lm-eval":
        notes.append(
            "prefix none: the first token of each document is context only, not scored; "
            f"its {result.unscored_bytes} bytes are left out of bits per byte"
        )
    cut = [document.name for document in result.documents if document.truncated]
    if cut:
        notes.append(
            f"--max-tokens: stopped after {result.totals.tokens} tokens; {cut[0]} counts only "
            "the text scored, later documents were not read"
        )
    elif result.stopped_early:
        notes.append(f"stopped after {len(result.documents)} documents; the rest were not read")
    return notes


def convention_note(result: EvaluationResult) -> str:
    """One line: the convention's rules, what it scored and left out; llama.cpp's PPL line."""
    block = result.convention_block()
    line = (
        f"convention {block['name']} ({block['rules']}): {block['tokens_scored']} tokens "
        f"scored, {block['tokens_unscored']} left unscored"
    )
    if block["tokens_counted"] != block["tokens_scored"]:
        line += f", counted as {block['tokens_counted']}"
    if block.get("perplexity_uncertainty") is not None:
        line += f"; PPL = {block['perplexity']:.4f} +/- {block['perplexity_uncertainty']:.5f}"
    return line
