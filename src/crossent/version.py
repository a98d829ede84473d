"""crossent's version: the one place it is written (pyproject.toml reads it from here).

A module of its own, below every other, so that any module can name the version it writes into
its outputs without importing the root package, which names most modules for lazy loading.
"""

__version__ = "0.1.0"
