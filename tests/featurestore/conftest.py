"""Fixtures of the feature-store tests: a quickstart copy, card tables, a private Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.config_fixtures import Deployment
from tests.redis_server import RedisServer


@pytest.fixture
def quickstart(tmp_path: Path) -> Deployment:
    """A copy of the quickstart (its feature store: features/cards.parquet, keyed by card_id)."""
    return Deployment.copy_quickstart(tmp_path / "quickstart")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis shared by tests that only read and write their own keys (never killed)."""
    server = RedisServer(tmp_path_factory.mktemp("redis-shared")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test alone, to kill, pause and restart; stopped by PID at teardown."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()
