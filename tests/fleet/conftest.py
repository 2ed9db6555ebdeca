"""Fixtures of the fleet tests: a quickstart copy to publish, and an empty store."""

from __future__ import annotations

from pathlib import Path

import pytest

from muse.fleet import DeploymentStore
from tests.config_fixtures import Deployment as Quickstart


@pytest.fixture
def quickstart(tmp_path: Path) -> Quickstart:
    return Quickstart.copy_quickstart(tmp_path / "deploy")


@pytest.fixture
def store(tmp_path: Path) -> DeploymentStore:
    return DeploymentStore(tmp_path / "store")
