"""``crossent eval``: cross-entropy, perplexity and bits per byte of a causal LM on texts."""

from __future__ import annotations

import argparse

from crossent.cli.arguments import (
    DEFAULT_MODEL_HELP,
    Commands,
    add_output_options,
    add_scoring_options,
    load,
    scoring_arguments,
    show_progress,
    write_output,
)
from crossent.cli.documents import documents_to_score
from crossent.extras import require


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
        "--per-token",
        metavar="FILE",
        help="write every scored token (text, nats, rank, top-5) as .jsonl or .csv (missing "
        "folders are created)",
    )
    add_output_options(evaluate)
    evaluate.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    require("hf", "crossent eval")
    if args.per_token is not None:
        from crossent.report.per_token import per_token_format

        per_token_format(args.per_token)
    documents = documents_to_score(args, outputs=[args.json, args.report, args.per_token])
    # The library is imported once every option has been checked: a mistake costs no wait.
    import json

    from crossent.distributed import process_group
    from crossent.evaluation import evaluate
    from crossent.report.evaluation_page import render_evaluation_report
    from crossent.report.per_token import write_per_token
    from crossent.report.progress import TokenProgress
    from crossent.report.table import format_evaluation

    with process_group() as (rank, device):
        model = load(args.model, args, device)
        with TokenProgress("scoring", enabled=show_progress(args, rank)) as progress:
            result = evaluate(
                model,
                documents,
                **scoring_arguments(args),
                per_token=args.per_token is not None or args.report is not None,
                progress=progress,
            )
        if rank != 0:
            return 0
    print(format_evaluation(result, model_description=model.description))
    write_output(args.json, lambda: json.dumps(result.to_dict(), indent=2) + "\n")
    if args.per_token is not None:
        write_per_token(args.per_token, result)
        print(f"wrote {args.per_token}")
    write_output(
        args.report,
        lambda: render_evaluation_report(result, model_description=model.description),
    )
    return 0
