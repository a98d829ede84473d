"""``crossent lm-eval``: lm-evaluation-harness's command line with the ``crossent`` model.

Nothing is parsed here: every argument goes to lm-eval (:func:`crossent.lm_eval.run_harness`),
so its flags are lm-eval's. The parser takes no option of its own (its prefix character is one
no flag uses), so that ``--tasks`` and the rest reach lm-eval untouched; only a lone ``--help``
is answered here, without importing lm-eval or PyTorch.
"""

from __future__ import annotations

import argparse

from crossent.cli.arguments import Commands

_HELP = ("-h", "--help")


def add_parser(commands: Commands) -> None:
    harness = commands.add_parser(
        "lm-eval",
        help="lm-evaluation-harness with crossent's model: loglikelihood from the fused head",
        description="Run lm-evaluation-harness (lm-eval run ...) with the 'crossent' model "
        "registered and used unless --model is given: every argument is lm-eval's own "
        "(--tasks, --include_path, --model_args pretrained=MODEL, --batch_size, "
        "--output_path...). MODEL is whatever crossent eval --model takes (default: the "
        "embedded smollm2-135m); model args: pretrained, dtype (float32, bfloat16, float16), "
        "device, batch_size (an integer, or auto: as many rows as the memory holds, at most "
        "max_batch_size), max_length (default: the model's context), max_gen_toks (default "
        "256), seed (for sampled generation; default: lm-eval's --seed). Loglikelihood, "
        "rolling-loglikelihood and generate_until tasks are supported. "
        "lm-eval's own help: crossent lm-eval run --help.",
        prefix_chars="\x00",
        add_help=False,
        usage="crossent lm-eval [run|ls|validate] [LM-EVAL ARGUMENTS ...]",
    )
    harness.add_argument(
        "arguments", nargs=argparse.REMAINDER, help="lm-eval's arguments, passed on unchanged"
    )
    harness.set_defaults(run=run, help_text=harness.format_help)


def run(args: argparse.Namespace) -> int:
    if args.arguments in ([], *([flag] for flag in _HELP)):
        print(args.help_text(), end="")
        return 0
    from crossent.extras import require

    require("lm-eval", "crossent lm-eval")
    from crossent.lm_eval import run_harness

    code: int = run_harness(args.arguments)
    return code
