"""Fixtures shared by the tests of the crossent model of lm-evaluation-harness."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """No network and no user caches, whether or not datasets was imported already."""
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
            patch.setenv(name, "1")
        patch.setenv("HF_HOME", str(cache / "hf"))
        patch.setenv("HF_DATASETS_CACHE", str(cache / "datasets"))
        import datasets
        import huggingface_hub

        patch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
        patch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", cache / "datasets")
        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        yield cache
