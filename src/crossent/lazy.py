"""Names a package imports on first use, so that importing the package itself costs nothing.

``crossent``, ``crossent.explain`` and ``crossent.report.explain`` re-export names whose modules
import PyTorch or matplotlib. Each keeps the real imports under ``TYPE_CHECKING`` (for type
checkers and readers) and hands :func:`lazy_attributes` a table of where every name lives; the
first look-up imports that module, and the name is then stored on the package like any other.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Collection, Mapping
from typing import Any


def lazy_attributes(
    package: str, homes: Mapping[str, str], *, modules: Collection[str] = ()
) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for ``package`` that imports each name from its home.

    Args:
        package: the package's ``__name__``.
        homes: for each public name, the module it lives in (for a name in ``modules``, the
            module it is).
        modules: the names that are modules themselves (``crossent.parallel``).

    Example:
        >>> getattr_ = lazy_attributes("json", {"dumps": "json"})
        >>> getattr_("dumps")({"a": 1})
        '{"a": 1}'
    """

    def look_up(name: str) -> Any:
        try:
            home = homes[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        module = importlib.import_module(home)
        value = module if name in modules else getattr(module, name)
        setattr(sys.modules[package], name, value)  # later look-ups skip this function
        return value

    return look_up
