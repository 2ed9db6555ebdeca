"""Fixtures of the console tests: a store with two versions of the quickstart (one active),
a score lake filled through the serving path, and the console's state over them."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from muse.console import ConsoleState
from muse.fleet import DeploymentStore, publish
from muse.fleet.promotion import promote
from muse.serving_config import hash_api_key
from tests.config_fixtures import Deployment
from tests.e2e.support import free_port
from tests.fleet.versions import publish_reweighted
from tests.lifecycle_fixtures import filled_lake, write_labels

ADMIN_KEY = "console-admin-key-0123456789"
TENANT_KEY = "bank1-key-0123456789"
EVENTS = 30_000


@dataclass
class Fleet:
    """A store (``first`` active, ``second`` published), the lake and the console state."""

    root: Path
    store: DeploymentStore
    lake: Path
    first: str
    second: str
    state: ConsoleState


def make_fleet(root: Path, *, auth: bool) -> Fleet:
    quickstart = Deployment.copy_quickstart(root / "deploy")
    if auth:
        doc = quickstart.doc()
        doc["auth"] = {
            "tenants": {"bank1": [hash_api_key(TENANT_KEY)]},
            "admins": [hash_api_key(ADMIN_KEY)],
        }
        quickstart.write(doc)
    lake, frame = filled_lake(quickstart, EVENTS)
    labels = write_labels(frame, root / "labels.parquet")
    store = DeploymentStore(root / "store")
    first = publish(quickstart.config, store, by="tests").version.id
    assert promote(store, first, timeout_s=5, by="tests").activated
    second = publish_reweighted(quickstart, store)
    state = ConsoleState(store, root / "cache", lake=str(lake), labels=str(labels), refresh_s=3600)
    state.refresh()
    return Fleet(root, store, lake, first, second, state)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    """An open console (the quickstart's ``auth: none``); tests must not promote in it."""
    return make_fleet(tmp_path_factory.mktemp("console"), auth=False)


@contextmanager
def serving(app: Starlette) -> Iterator[str]:
    """``app`` served by uvicorn on a free port of 127.0.0.1 in a thread; its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the console did not start"
        assert thread.is_alive(), "the console's server thread died"
        time.sleep(0.02)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def console_client(fleet: Fleet) -> Iterator[httpx.Client]:
    """A client of the console over ``fleet`` (its state already read; not refreshed)."""
    from muse.console.app import create_app

    app = create_app(fleet.state, secret="s" * 32, start_state=False)
    with serving(app) as url, httpx.Client(base_url=url, timeout=30, follow_redirects=True) as c:
        yield c
