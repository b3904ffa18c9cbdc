"""Shared fixtures: every test gets fresh files, never a shared database."""

from __future__ import annotations

from pathlib import Path

import pytest

from reference.access import AccessManager
from reference.topology import Topology, load_topology


@pytest.fixture
def seed_topology() -> Topology:
    return load_topology("seed")


@pytest.fixture
def seed_access(tmp_path: Path, seed_topology: Topology) -> AccessManager:
    """An initialised seed layout in a fresh data directory."""
    access = AccessManager(seed_topology, tmp_path / "data")
    access.initialize()
    return access
