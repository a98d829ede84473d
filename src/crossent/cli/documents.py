"""The texts eval and compare score, read after every check that needs no model."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crossent.data import Text
    from crossent.data.sources import Corpus


def corpus_to_score(args: argparse.Namespace, *, outputs: Sequence[str | None]) -> Corpus:
    """The ``--data`` texts (cut to ``--max-chars``), once the options are known to be sound,
    as a :class:`crossent.data.sources.Corpus`: checked now, read as they are scored.

    Refuses a stride above the window, a report that is not ``.html``, and an output file that
    is one of the inputs or another output (either would be overwritten). Each empty file of a
    directory that is skipped is said in one line on stderr.
    """
    import warnings

    from crossent.data.sources import Corpus, SkippedFileWarning
    from crossent.data.windows import check_window
    from crossent.files import check_html_path, check_outputs

    if args.window is not None:
        check_window(args.window, args.stride)
    check_html_path("--report", args.report)
    check_outputs(args.data or [], outputs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SkippedFileWarning)
        corpus = Corpus(
            args.data or [],
            field=args.field,
            errors=args.errors,
            name_field=args.name_field,
            max_chars=args.max_chars,
        )
    for warning in caught:
        if issubclass(warning.category, SkippedFileWarning):
            print(f"crossent: {warning.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    return corpus


def documents_to_score(args: argparse.Namespace, *, outputs: Sequence[str | None]) -> list[Text]:
    """The documents of :func:`corpus_to_score`, read into a list (for a job that walks them
    more than once and indexes them)."""
    return list(corpus_to_score(args, outputs=outputs))
