"""Shared test fixtures.

Real data lives beside the checkout in ``../shared/data`` (override with ``MSMAE_SHARED_DATA``).
It is research-only data that is never copied into this repository; tests that need it skip
with a clear reason when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MSMAE_SHARED_DATA", REPO.parent / "shared" / "data"))

# Small CPUs: keep torch from oversubscribing.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MPLBACKEND", "Agg")


def shared_path(*parts: str) -> Path:
    """Path inside the shared real data, skipping the calling test when it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real data not available: {p} (set MSMAE_SHARED_DATA to the shared data folder)")
    return p


@pytest.fixture
def shared_data() -> Path:
    return shared_path()
