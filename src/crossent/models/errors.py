"""How a library's exception becomes part of a one-line message a user can act on.

transformers and huggingface_hub raise errors whose text runs over many lines (tracebacks of
requests, lists of files tried); the loaders quote only the first.
"""

from __future__ import annotations

__all__ = ["first_line"]


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message, or its type's name when the message is empty.

    >>> first_line(OSError("no such file\\nwhile trying config.json"))
    'no such file'
    >>> first_line(KeyError())
    'KeyError'
    """
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
