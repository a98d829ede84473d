"""``crossent compare``: two causal LMs on the same texts, side by side."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from crossent.cli.arguments import (
    Commands,
    add_output_options,
    add_scoring_options,
    load,
    positive_int,
    scoring_arguments,
    show_progress,
    write_output,
)
from crossent.cli.documents import documents_to_score
from crossent.extras import require

if TYPE_CHECKING:
    from crossent.evaluation import EvaluationResult

# compare has no default model: --model is required, twice.
COMPARE_MODEL_HELP = (
    "a model to compare, given exactly twice: first A, the reference, then B. Each is "
    "smollm2-135m (the embedded model), a Hugging Face directory or Hub name, a .gguf file or a "
    "crossent train checkpoint folder"
)


def add_parser(commands: Commands) -> None:
    compare = commands.add_parser(
        "compare",
        help="two causal LMs on the same texts: bits per byte side by side, and per-token KL",
        description="Evaluate two models on the same texts, as crossent eval does. Bits per "
        "byte is the headline (comparable across tokenizers); when both share a tokenizer, "
        "also the per-token KL(A || B) = sum_v p_A(v) ln(p_A(v) / p_B(v)), top-1 agreement and "
        "the tokens whose loss changed most, every per-token number in nats.",
    )
    compare.add_argument(
        "--model", action="append", required=True, metavar="MODEL", help=COMPARE_MODEL_HELP
    )
    add_scoring_options(compare)
    compare.add_argument(
        "--largest", type=positive_int, default=10, help="how many largest differences to list"
    )
    add_output_options(compare)
    compare.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    require("hf", "crossent compare")
    if len(args.model) != 2:
        raise ValueError(f"compare takes exactly two --model options, got {len(args.model)}")
    documents = documents_to_score(args, outputs=[args.json, args.report])
    # The library is imported once every option has been checked: a mistake costs no wait.
    import json

    from crossent.comparison import compare
    from crossent.distributed import process_group
    from crossent.report.comparison_page import render_comparison_report
    from crossent.report.progress import TokenProgress
    from crossent.report.table import format_comparison

    with process_group() as (rank, device):
        model_a = load(args.model[0], args, device)
        model_b = load(args.model[1], args, device)
        with TokenProgress("comparing", enabled=show_progress(args, rank)) as progress:
            comparison = compare(
                model_a,
                model_b,
                documents,
                **scoring_arguments(args),
                largest=args.largest,
                progress=progress,
            )
        if rank != 0:
            return 0
    a = comparison.a
    for label, result in (("A", a), ("B", comparison.b)):
        print(f"{label}: {result.model}: {_weights(result)}")
    print(f"both models: window {a.window}, stride {a.stride}, prefix {a.prefix}")
    print(format_comparison(comparison))
    write_output(args.json, lambda: json.dumps(comparison.to_dict(), indent=2) + "\n")
    write_output(args.report, lambda: render_comparison_report(comparison))
    return 0


def _weights(result: EvaluationResult) -> str:
    """What the model's weights are, so a quantised model is never taken for the original."""
    return result.provenance.description if result.provenance is not None else "(not recorded)"
