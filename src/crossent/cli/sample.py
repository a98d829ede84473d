"""``crossent sample``: text a causal LM writes, with the model's own loss on it, as nanoGPT's
``sample.py`` prints it."""

from __future__ import annotations

import argparse
import math
import sys

from crossent.cli.arguments import (
    EXIT_USAGE,
    MODEL_HELP,
    Commands,
    add_progress_option,
    positive_int,
    show_progress,
)

# nanoGPT's sample.py defaults for temperature and top-k; fewer tokens, for CPUs.
DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_K = 200
DEFAULT_MAX_NEW_TOKENS = 100


def add_parser(commands: Commands) -> None:
    sample = commands.add_parser(
        "sample",
        help="text a causal LM generates, with its cross-entropy on what it wrote",
        description="Continue a prompt with tokens drawn from the model, as nanoGPT's sample.py "
        "does, to see what a loss means: a trained checkpoint's text (--model RUN/best) next "
        "to its nats per token. Each sample is streamed as it is generated, then followed by "
        "the model's own mean cross-entropy of the generated tokens (nats/token, at "
        "temperature 1 without filters: the loss crossent eval and training report). The "
        "model reruns on the whole context for each token (no KV cache).",
    )
    sample.add_argument("--model", help=MODEL_HELP)
    sample.add_argument(
        "--prompt",
        metavar="TEXT",
        default="",
        help="the text to continue (default: empty, start at BOS)",
    )
    sample.add_argument(
        "--prefix",
        choices=["bos", "eos", "none"],
        help="the token before the prompt, as eval puts one before a document (default: bos, "
        "else eos)",
    )
    sample.add_argument(
        "--max-new-tokens",
        type=positive_int,
        metavar="N",
        default=DEFAULT_MAX_NEW_TOKENS,
        help=f"the most tokens per sample (default: {DEFAULT_MAX_NEW_TOKENS}; a sample also "
        "stops at EOS)",
    )
    sample.add_argument(
        "--num-samples",
        type=positive_int,
        metavar="N",
        default=1,
        help="how many samples (default: 1)",
    )
    sample.add_argument(
        "--temperature",
        type=_temperature,
        metavar="T",
        default=DEFAULT_TEMPERATURE,
        help=f"divide the logits by T (default: {DEFAULT_TEMPERATURE}); 0 is greedy decoding",
    )
    sample.add_argument(
        "--top-k",
        type=positive_int,
        metavar="K",
        default=DEFAULT_TOP_K,
        help=f"sample among the K most probable tokens (default: {DEFAULT_TOP_K}; K at least "
        "the vocabulary size keeps all)",
    )
    sample.add_argument(
        "--top-p",
        type=_top_p,
        metavar="P",
        default=1.0,
        help="sample from the most probable tokens whose probability sums to P, in (0, 1] "
        "(default: 1, all)",
    )
    sample.add_argument(
        "--seed",
        type=int,
        metavar="S",
        help="seed of the random draws: the same seed gives the same text (default: a fresh "
        "one, printed)",
    )
    sample.add_argument(
        "--dtype", choices=["float32", "bfloat16"], default="float32", help="default: float32"
    )
    sample.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: CUDA when present)")
    add_progress_option(sample)
    sample.set_defaults(run=run)


def _temperature(text: str) -> float:
    value = _number(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a number >= 0 (0: greedy), got {text!r}")
    return value


def _top_p(text: str) -> float:
    value = _number(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a probability in (0, 1], got {text!r}")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    from crossent.extras import require

    require("hf", "crossent sample")
    import secrets

    import torch

    from crossent.data.stream import choose_prefix
    from crossent.models import load_model
    from crossent.sampling import iter_samples

    dtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
    model = load_model(args.model, dtype=dtype, device=args.device, progress=show_progress(args, 0))
    chosen, prefix_id = choose_prefix(model.tokenizer, args.prefix)
    if prefix_id is None and args.prefix in ("bos", "eos"):
        return _usage(f"--prefix {args.prefix}: model {model.name!r} has no {chosen.upper()} token")
    if prefix_id is None and not args.prompt:
        return _usage(
            f"--prompt is empty and model {model.name!r} has no "
            f"{'prefix' if chosen == 'none' else 'BOS or EOS'} token to start from: "
            "give --prompt TEXT"
        )
    seed = secrets.randbits(31) if args.seed is None else args.seed
    print(
        f"{model.name}: temperature {args.temperature:g}, top-k {args.top_k}, top-p "
        f"{args.top_p:g}, seed {seed}, up to {args.max_new_tokens} new tokens"
    )
    samples = iter_samples(
        model,
        args.prompt,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        num_samples=args.num_samples,
        seed=seed,
        prefix=args.prefix,
        on_text=lambda text: print(text, end="", flush=True),
    )
    print(args.prompt, end="", flush=True)
    for number, result in enumerate(samples, start=1):
        ending = ", stopped at EOS" if result.stopped_at_eos else ""
        print(
            f"\n--- sample {number}: {len(result.token_ids)} tokens{ending}, the model's "
            f"cross-entropy {result.mean_nats:.4f} nats/token"
        )
        if number < args.num_samples:
            print(args.prompt, end="", flush=True)
    return 0


def _usage(message: str) -> int:
    print(f"crossent sample: error: {message}", file=sys.stderr)
    return EXIT_USAGE
