"""Shared fixtures. One real load of the embedded model for the whole session.

The first run converts the GGUF file (about 30 s) into the cache that ``CROSSENT_CACHE_DIR``
names, by default the user cache, so later runs load it in seconds.
"""

from __future__ import annotations

import pytest

from crossent.models import HFCausalLM, load_model


@pytest.fixture(scope="session")
def smollm2() -> HFCausalLM:
    model = load_model(None, device="cpu")
    assert isinstance(model, HFCausalLM)
    return model
