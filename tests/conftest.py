"""Shared fixtures. One real load of the embedded model for the whole session.

The first run converts the GGUF file (about 30 s) into the cache that ``CROSSENT_CACHE_DIR``
names, by default the user cache, so later runs load it in seconds.
"""

from __future__ import annotations

import os

# Triton kernels run in Triton's CPU interpreter unless told otherwise. The variable must be set
# before Triton is first imported (transformers may import it), because Triton builds its library
# functions (tl.max, ...) for the interpreter only when it is set at import time. On a GPU
# machine, TRITON_INTERPRET=0 pytest tests/kernels compiles the kernels for the device instead.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest

from crossent.models import HFCausalLM, load_model


@pytest.fixture(scope="session")
def smollm2() -> HFCausalLM:
    model = load_model(None, device="cpu")
    assert isinstance(model, HFCausalLM)
    return model


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that drive Chromium, so that ``make test-fast`` can leave them out."""
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)
