"""Shared fixtures: a seeded generator per test, and the shared/data folder when it exists."""

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("MINIBNN_FAST", "1")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def shared_data() -> Path:
    """../shared/data beside the checkout; tests that need it skip without it."""
    path = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not path.is_dir():
        pytest.skip("../shared/data is not present")
    return path
