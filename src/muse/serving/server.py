"""Running the app: uvicorn (uvloop + httptools) in one or several worker processes.

Signals: SIGTERM/SIGINT turn the app not-ready *before* uvicorn stops accepting and drains
connections (a load balancer stops sending traffic first), then the lifespan shutdown runs
the queued shadows and flushes the score lake. SIGHUP reloads the config in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shlex
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from muse.backends.pool import ModelPool
from muse.serving.app import MuseApp

__all__ = ["create_app", "curl_example", "serve"]

log = logging.getLogger("muse.serving")
_CONFIG_ENV = "MUSE_CONFIG"


def create_app() -> MuseApp:
    """App factory for uvicorn's worker processes (they import it by name)."""
    return MuseApp(os.environ[_CONFIG_ENV])


class _Server(uvicorn.Server):
    """uvicorn's server, telling the app to turn not-ready as soon as a stop is asked."""

    def __init__(self, config: uvicorn.Config, app: MuseApp) -> None:
        super().__init__(config)
        self.muse = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.muse.begin_shutdown()
        super().handle_exit(sig, frame)

    async def startup(self, sockets: Any = None) -> None:
        # The shadow worker and the lake writer share the GIL with the event loop; with
        # CPython's default 5 ms switch interval a busy background thread can hold a live
        # request that long. 0.5 ms bounds that wait at a small cost in switches.
        sys.setswitchinterval(0.0005)
        await super().startup(sockets)
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on every platform
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self._reload()))

    async def _reload(self) -> None:
        try:
            version = await self.muse.reload()
            log.info("SIGHUP: reloaded config version %s", version)
        except Exception as e:
            log.error("SIGHUP: config rejected, still serving the previous one: %s", e)


def serve(
    config: Path,
    host: str,
    port: int,
    workers: int,
    log_level: str = "info",
    pool: ModelPool | None = None,
) -> None:
    """Serve ``config`` until stopped; returns after a graceful shutdown.

    ``pool`` may hold models already loaded (the CLI checks the config first): a single
    worker then reuses them instead of loading every model twice.
    """
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "loop": "uvloop",
        "http": "httptools",
        "lifespan": "on",
        "access_log": False,
        "log_level": log_level,
        "timeout_graceful_shutdown": 30,
        "server_header": False,
    }
    if workers > 1:
        # Worker processes import the app by name; the config path travels in the
        # environment. Each worker loads its own models (stateless replicas).
        os.environ[_CONFIG_ENV] = str(config.resolve())
        uvicorn.run("muse.serving.server:create_app", factory=True, workers=workers, **common)
        return
    app = MuseApp(config, pool=pool)
    server = _Server(uvicorn.Config(app, **common), app)
    server.run()


def curl_example(config: Path, host: str, port: int) -> str:
    """A ready-to-paste ``curl`` for one event, from ``sample_event.json`` beside the config."""
    sample = config.parent / "sample_event.json"
    features: dict[str, float] = {}
    if sample.is_file():
        features = json.loads(sample.read_text(encoding="utf-8"))
    body = json.dumps(
        {"event_id": "evt-1", "intent": {"tenant": "bank1"}, "features": features},
        separators=(",", ":"),
    )
    return (
        f"curl -s -X POST http://{host}:{port}/v1/score "
        f"-H 'content-type: application/json' -d {shlex.quote(body)}"
    )
