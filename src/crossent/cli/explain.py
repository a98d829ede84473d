"""``crossent explain``: cross-entropy shown with real numbers, every number checked."""

from __future__ import annotations

import argparse
import math
import sys

from crossent.cli.arguments import (
    MODEL_HELP,
    Commands,
    add_model_run_options,
    load,
    positive_int,
    write_output,
)


def add_parser(commands: Commands) -> None:
    explain = commands.add_parser(
        "explain",
        help="show, with real numbers, how cross-entropy is computed and why it behaves as it does",
        description="Three explanations, each checked against independent computations. "
        "Toy distributions: --probs (or --logits) with --target (one-hot) or --p (soft), e.g. "
        "--probs 0.2,0.7,0.1 --labels dog,cat,fish --target cat; without any input, that "
        "example, the three animals. With --logits, also logsumexp(z) - z[target], the form "
        "crossent computes. A text: the six steps from a model's logits to its loss, and every "
        "position's next token with its rank and alternatives. --stability: the naive "
        "-log(softmax(z) + 1e-10) against the log-space loss on extreme logits. --temperature T, "
        "with a toy distribution or a text, shows it with the logits divided by T too. Lists are "
        "comma-separated; write a list that starts with a minus sign as --logits=-1,2,3.",
    )
    explain.add_argument("text", nargs="?", help="a text for the model to read")
    explain.add_argument(
        "--model", help=f"the model that reads the text: {MODEL_HELP} (default: smollm2-135m)"
    )
    add_model_run_options(explain, scoring=False)
    explain.add_argument(
        "--top-k", type=positive_int, default=5, help="alternatives shown per position"
    )
    prediction = explain.add_mutually_exclusive_group()
    prediction.add_argument("--probs", type=_numbers, help="the predicted probabilities q")
    prediction.add_argument("--logits", type=_numbers, help="logits instead: q = softmax")
    explain.add_argument("--labels", type=_names, help="one name per class (default 0, 1, ...)")
    target = explain.add_mutually_exclusive_group()
    target.add_argument("--target", help="the label of the right answer (a one-hot p)")
    target.add_argument("--p", type=_numbers, help="a target distribution instead")
    explain.add_argument(
        "--label-smoothing", type=float, default=0.0, help="eps: the target becomes "
        "(1 - eps) p + eps / V, as in PyTorch",
    )  # fmt: skip
    explain.add_argument(
        "--stability", action="store_true", help="the naive loss against the log-space one "
        "(default cases, or the row of --logits with --target in float32 and float64)",
    )  # fmt: skip
    explain.add_argument(
        "--temperature", type=_temperature, action="append", metavar="T", help="also show "
        "the toy distribution or the text with the logits divided by T: the prediction, the "
        "target's probability, the loss, the entropy and the perplexity beside T = 1; "
        "repeatable (default: none)",
    )  # fmt: skip
    explain.add_argument("--json", metavar="FILE", help="write the numbers as JSON (atomically)")
    explain.add_argument("--html", metavar="FILE", help="write a self-contained page (.html)")
    explain.add_argument("--plots", metavar="DIR", help="write the figures as PNG files here")
    explain.set_defaults(run=run)


def _numbers(text: str) -> list[float]:
    try:
        return [float(item) for item in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers such as 0.2,0.7,0.1, got {text!r}"
        ) from None


def _temperature(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def _names(text: str) -> list[str]:
    return [item.strip() for item in text.split(",")]


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from crossent import explain
    from crossent.files import check_html_path, check_outputs

    # The options are named after ExplainRequest's fields.
    request = explain.ExplainRequest(
        **{
            field.name: getattr(args, field.name)
            for field in dataclasses.fields(explain.ExplainRequest)
        }
    )
    check_html_path("--html", args.html)
    if args.json is not None and args.html is not None and args.json == args.html:
        raise ValueError(f"--json and --html both name {args.json}")
    check_outputs([], [args.json, args.html])
    if request.empty:
        print(
            "No input given: the three animals example, q = 0.2, 0.7, 0.1 over dog, cat, fish "
            "with cat the answer (see crossent explain --help).\n"
        )
    result = explain.explain(request, load_model=lambda spec: load(spec, args, None))
    if args.html is not None or args.plots is not None:
        # matplotlib is imported only now, so that bad input is refused without waiting for it
        from crossent.extras import require

        require("report", "crossent explain (its figures)")
    from crossent.report.explain import format_explanation

    print(format_explanation(result))
    curves = explain.loss_curves_for(result)
    write_output(
        args.json, lambda: json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n"
    )
    if args.html is not None:
        from crossent.report.explain import render_explanation_page

        write_output(args.html, lambda: render_explanation_page(result, curves))
    if args.plots is not None:
        from crossent.report.explain import write_plots

        for path in write_plots(result, curves, args.plots):
            print(f"wrote {path}")
    scan = getattr(result, "temperatures", None)  # a stability table has no temperatures
    checks = (*result.checks, *curves.checks, *(scan.checks if scan is not None else ()))
    failed = [check.what for check in checks if not check.agrees]
    if failed:
        print(f"crossent: error: checks disagree: {'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0
