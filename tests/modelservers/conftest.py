"""Fixtures of the real-server tests: Triton and MLServer serving the quickstart's m1.

The servers are session-scoped (installing their venvs the first time, then starting each
costs seconds) and shared by every test that only sends requests; tests that stop or kill
a server start their own. Every server is stopped by PID at teardown, pass or fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from muse.testing import RunningServer, ServerKind
from tests.modelservers.support import Rows, StartServer, make_rows, start


@pytest.fixture(scope="session")
def rows() -> Rows:
    """The rows every equivalence test sends, with m1's in-process scores."""
    return make_rows()


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Triton serving m1 (input ``features`` FP32 [-1, 8], output ``probability`` FP32
    [-1, 1]) and m1_fp64 (the same model, both tensors FP64)."""
    with start("triton", tmp_path_factory.mktemp("triton")) as server:
        yield server


@pytest.fixture(scope="session")
def mlserver_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """MLServer serving m1 (any one input [-1, 8], output ``predict`` FP64 [-1, 1])."""
    with start("mlserver", tmp_path_factory.mktemp("mlserver")) as server:
        yield server


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """``start_server(kind)``: a server of the test's own (it may stop or kill it)."""
    started: list[RunningServer] = []

    def start_own(kind: ServerKind) -> RunningServer:
        server = start(kind, tmp_path / f"{kind}-{len(started)}")
        started.append(server)
        return server

    yield start_own
    for server in started:
        server.stop()
