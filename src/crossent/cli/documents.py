"""The texts eval and compare score, read after every check that needs no model."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crossent.data import Text


def documents_to_score(args: argparse.Namespace, *, outputs: Sequence[str | None]) -> list[Text]:
    """The ``--data`` texts (cut to ``--max-chars``), once the options are known to be sound.

    Refuses a stride above the window, a report that is not ``.html``, and an output file that
    is one of the inputs or another output (either would be overwritten). Each empty file of a
    directory that is skipped is said in one line on stderr.
    """
    import warnings

    from crossent.data import read_documents
    from crossent.data.sources import SkippedFileWarning, first_characters
    from crossent.data.windows import check_window
    from crossent.files import check_html_path, check_outputs

    if args.window is not None:
        check_window(args.window, args.stride)
    check_html_path("--report", args.report)
    check_outputs(args.data or [], outputs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SkippedFileWarning)
        documents = read_documents(
            args.data or [], field=args.field, errors=args.errors, name_field=args.name_field
        )
    for warning in caught:
        if issubclass(warning.category, SkippedFileWarning):
            print(f"crossent: {warning.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    if args.max_chars is not None:
        documents = [first_characters(doc, args.max_chars) for doc in documents]
    return documents
