"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Keep the default run light on a 2-core machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
ASSETS_DIR = REPO_ROOT.parent / "shared" / "assets"


@pytest.fixture(scope="session")
def assets_dir() -> Path:
    """The real COCO detectors and photos in ../shared/assets; skip the test when absent."""
    if not ASSETS_DIR.is_dir():
        pytest.skip(f"{ASSETS_DIR} is absent")
    return ASSETS_DIR


@pytest.fixture(autouse=True)
def _torch_threads():
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
    yield
