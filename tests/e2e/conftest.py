"""Fixtures of the end-to-end tests: deployment copies and servers that are always stopped.

Every server a test starts is registered with a finalizer that stops it (SIGTERM by PID
for processes, ``should_exit`` for in-thread servers), whether the test passed or not.
Starting ``muse serve`` costs seconds (model runtimes import slowly), so tests that only
read share one process per module or session; tests that change a config start their own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from muse.backends.pool import ModelPool
from muse.serving.app import MuseApp
from tests.e2e.support import (
    MAX_BODY,
    MAX_EVENTS,
    UNROUTED_TENANT,
    Deployment,
    MuseProcess,
    ThreadServer,
)

StartMuse = Callable[..., MuseProcess]
StartThreadServer = Callable[..., ThreadServer]


@dataclass(frozen=True)
class Running:
    """A started ``muse serve`` and the deployment it serves."""

    deployment: Deployment
    server: MuseProcess


@pytest.fixture
def deployment(tmp_path: Path) -> Deployment:
    """A fresh copy of the quickstart with its own score lake under ``tmp_path``."""
    return Deployment.copy_quickstart(tmp_path / "deployment")


@pytest.fixture(scope="package")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """The shared read-only server: the quickstart (``auth: none``) with small limits
    (``server: {max_body_bytes: 4096, max_batch_events: 50}``) and its catch-all rule
    narrowed to the quickstart's tenants, so an unknown tenant has no route. Tests must
    not change its config."""
    d = Deployment.copy_quickstart(tmp_path_factory.mktemp("open"))
    d.set_server(max_body_bytes=MAX_BODY, max_batch_events=MAX_EVENTS)
    with d.editing() as doc:
        rules = doc["routing"]["scoringRules"]
        assert rules[-1]["condition"] == {}, "expected the quickstart's catch-all rule last"
        rules[-1]["condition"] = {"tenants": ["bank2", "fintech3"]}
        assert UNROUTED_TENANT not in str(doc["routing"])
    server = MuseProcess(d.config, d.root / "serve.log").start()  # stops itself if it fails
    try:
        yield Running(d, server)
    finally:
        server.stop_gracefully()


@pytest.fixture
def start_muse(tmp_path: Path) -> Iterator[StartMuse]:
    """``start_muse(deployment)`` runs ``muse serve`` until ready; stopped at teardown."""
    started: list[MuseProcess] = []

    def start(d: Deployment, extra_args: Sequence[str] = ()) -> MuseProcess:
        log = tmp_path / f"muse-serve-{len(started)}.log"
        server = MuseProcess(d.config, log, extra_args)
        started.append(server)
        return server.start()

    yield start
    errors = []
    for server in started:
        try:
            server.stop()
        except AssertionError as e:  # still stop the others
            errors.append(str(e))
    assert not errors, "\n".join(errors)


@pytest.fixture
def start_thread_server() -> Iterator[StartThreadServer]:
    """``start_thread_server(deployment, pool=...)`` serves a MuseApp in a thread until teardown."""
    started: list[ThreadServer] = []

    def start(d: Deployment, pool: ModelPool | None = None) -> ThreadServer:
        server = ThreadServer(MuseApp(d.config, pool=pool))
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
