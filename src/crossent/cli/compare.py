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

# compare has no default model: --model is required, at least twice.
COMPARE_MODEL_HELP = (
    "a model to compare, given at least twice: first A, the reference, then B (and more, each "
    "compared with A). Each is smollm2-135m (the embedded model), a Hugging Face directory or Hub "
    "name, a .gguf file or a crossent train checkpoint folder"
)


def add_parser(commands: Commands) -> None:
    compare = commands.add_parser(
        "compare",
        help="causal LMs on the same texts: bits per byte with paired intervals, per-token KL",
        description="Evaluate two or more models on the same texts, each in its own window, "
        "as crossent eval does. Bits per byte is the headline (comparable across tokenizers), "
        "with B's minus A's difference and its paired 95% interval (over tokens with a shared "
        "tokenizer, else over documents or byte blocks); when both share a tokenizer, also "
        "llama.cpp's per-token statistics: KL(A || B) = sum_v p_A(v) ln(p_A(v) / p_B(v)), top-1 "
        "agreement, the change in the token's probability, the perplexity ratio, and the tokens "
        "whose loss changed most, every per-token number in nats. More than two models: a table "
        "ranked by bits per byte, each compared with the first.",
    )
    compare.add_argument(
        "--model", action="append", required=True, metavar="MODEL", help=COMPARE_MODEL_HELP
    )
    add_scoring_options(compare)
    compare.add_argument(
        "--largest", type=positive_int, default=10, help="how many largest differences to list"
    )
    compare.add_argument(
        "--block-bytes",
        type=positive_int,
        default=1024,
        metavar="N",
        help="across tokenizers with fewer than 20 documents, pair the difference over blocks "
        "of N bytes (default: 1024)",
    )
    add_output_options(compare)
    compare.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    require("hf", "crossent compare")
    if len(args.model) < 2:
        raise ValueError(f"compare takes at least two --model options, got {len(args.model)}")
    documents = documents_to_score(args, outputs=[args.json, args.report])
    # The library is imported once every option has been checked: a mistake costs no wait.
    import json

    from crossent.comparison import compare_models
    from crossent.distributed import process_group
    from crossent.report.comparison_page import render_comparison_report, render_models_report
    from crossent.report.progress import TokenProgress
    from crossent.report.table import format_comparison, format_models_comparison

    with process_group() as (rank, device):
        models = [load(spec, args, device) for spec in args.model]
        with TokenProgress("comparing", enabled=show_progress(args, rank)) as progress:
            comparison = compare_models(
                models,
                documents,
                **scoring_arguments(args),
                largest=args.largest,
                block_bytes=args.block_bytes,
                progress=progress,
            )
        if rank != 0:
            return 0
    results = comparison.results
    labels = [chr(ord("A") + index) if index < 26 else str(index) for index in range(len(results))]
    for label, result in zip(labels, results, strict=True):
        print(f"{label}: {result.model}: {_weights(result)}")
    if len({(result.window, result.stride, result.prefix) for result in results}) == 1:
        a = results[0]
        print(f"{'both' if len(results) == 2 else 'all'} models: window {a.window}, stride "
              f"{a.stride}, prefix {a.prefix}")  # fmt: skip
    else:
        for label, result in zip(labels, results, strict=True):
            print(
                f"{label}: window {result.window}, stride {result.stride}, prefix {result.prefix}"
            )
    if len(results) == 2:
        [pair] = comparison.pairs
        print(format_comparison(pair))
        write_output(args.json, lambda: json.dumps(pair.to_dict(), indent=2) + "\n")
        write_output(args.report, lambda: render_comparison_report(pair))
        return 0
    print(format_models_comparison(comparison))
    write_output(args.json, lambda: json.dumps(comparison.to_dict(), indent=2) + "\n")
    write_output(args.report, lambda: render_models_report(comparison))
    return 0


def _weights(result: EvaluationResult) -> str:
    """What the model's weights are, so a quantised model is never taken for the original."""
    return result.provenance.description if result.provenance is not None else "(not recorded)"
