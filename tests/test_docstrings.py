"""Every ``>>>`` example in crossent's docstrings runs and prints what it says."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from types import ModuleType

import pytest

import crossent


def _modules() -> list[ModuleType]:
    names = [
        info.name
        for info in pkgutil.walk_packages(crossent.__path__, prefix="crossent.")
        # importing __main__ runs the command; the Triton source needs the optional Triton
        if not info.name.endswith(("__main__", "_row_kernel"))
    ]
    return [importlib.import_module(name) for name in ["crossent", *names]]


@pytest.mark.parametrize("module", _modules(), ids=lambda module: module.__name__)
def test_docstring_examples(module: ModuleType) -> None:
    failures, _ = doctest.testmod(module, raise_on_error=False, verbose=False)
    assert failures == 0
