"""Shared test fixtures: locations of the real data beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SIMXRAY_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` (real Chandra data and relxill references); skip if absent."""
    if not SHARED.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def evdir(shared_dir: Path) -> Path:
    """``../shared/data/events`` (real Chandra event lists); skip if absent."""
    d = shared_dir / "data" / "events"
    if not d.is_dir():
        pytest.skip(f"no real event lists at {d}")
    return d


@pytest.fixture(scope="session")
def chandra_dir(shared_dir: Path) -> Path:
    return shared_dir / "data" / "chandra"


@pytest.fixture(scope="session")
def relxill_ref_dir(shared_dir: Path) -> Path:
    return shared_dir / "reference" / "relxill"
