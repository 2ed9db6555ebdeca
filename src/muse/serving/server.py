"""Running the app: uvicorn (uvloop + httptools) in one or several worker processes.

Signals: SIGTERM turns the app not-ready and keeps serving while load balancers notice
(:meth:`MuseApp.drain <muse.serving.app.MuseApp.drain>`: until no request came for 0.5 s,
at most ``server.drain_s``); then uvicorn stops accepting and finishes the connections,
and the lifespan shutdown runs the queued shadows and flushes the score lake. SIGINT
(Ctrl-C) skips the drain. SIGHUP reloads the config in place.

**Several workers are a fleet.** Each worker process is a replica of its own: it holds its
own snapshot, so it must prepare and switch with the others. ``muse serve --store URL
--workers N`` runs N followers of the store. ``muse serve CONFIG --workers N`` publishes
CONFIG into a private deployment store (a temporary folder, removed at exit) and runs N
followers of it; a reload — SIGHUP to the parent, ``POST /admin/reload`` to any worker, or
the config file changing with ``server.watch_config`` — publishes the file again and
promotes it, so every worker prepares it and all switch together. Worker metrics are
merged on every scrape (:mod:`muse.serving.multiprocess`).
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
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from muse.backends.pool import ModelPool
from muse.config import load_config
from muse.serving.app import MuseApp, StoreSource
from muse.serving.multiprocess import METRICS_DIR_ENV
from muse.serving.protocol import DEFAULT_REQUEST_TIMEOUT_S, GuardedHttpToolsProtocol

__all__ = ["ConnectionLimits", "create_app", "curl_example", "serve"]

log = logging.getLogger("muse.serving")
_CONFIG_ENV = "MUSE_CONFIG"
_SOURCE_ENV = "MUSE_SOURCE"
_TASKS: set[asyncio.Task[None]] = set()


def create_app() -> MuseApp:
    """App factory for uvicorn's worker processes (they import it by name)."""
    source = os.environ.get(_SOURCE_ENV)
    if source is not None:
        doc = json.loads(source)
        for key in ("cache", "publish_from"):
            if doc.get(key) is not None:
                doc[key] = Path(doc[key])
        if doc.get("replica"):  # one name for a server's workers: each is <name>-<pid>
            doc["replica"] = f"{doc['replica']}-{os.getpid()}"
        app = MuseApp(source=StoreSource(**doc))
    else:
        app = MuseApp(os.environ[_CONFIG_ENV])
    app.on_started = lambda: _hook_signals(app)
    return app


def _hook_signals(app: MuseApp) -> None:
    """Once uvicorn's handlers are in place (the app's startup runs after): SIGTERM and
    SIGINT turn the app not-ready first, then do what uvicorn does; SIGHUP reloads."""
    # The shadow worker and the lake writer share the GIL with the event loop; with
    # CPython's default 5 ms switch interval a busy background thread can hold a live
    # request that long. 0.5 ms bounds that wait at a small cost in switches.
    sys.setswitchinterval(0.0005)
    if threading.current_thread() is not threading.main_thread():
        return  # signals are only the main thread's (an app run by a test's thread)
    loop = asyncio.get_running_loop()
    on_int = signal.getsignal(signal.SIGINT)
    on_term = signal.getsignal(signal.SIGTERM)

    def interrupt(signum: int, frame: Any) -> None:  # Ctrl-C: stop now
        app.begin_shutdown()
        if callable(on_int):
            on_int(signum, frame)

    def terminate(signum: int, frame: Any) -> None:  # an orchestrator: drain, then stop
        async def drain_then_stop() -> None:
            seconds = await app.drain()
            log.info("SIGTERM: drained for %.1f s; stopping", seconds)
            if callable(on_term):
                on_term(signum, frame)

        def start() -> None:
            task = loop.create_task(drain_then_stop())
            _TASKS.add(task)  # the loop keeps only a weak reference
            task.add_done_callback(_TASKS.discard)

        loop.call_soon_threadsafe(start)

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, terminate)

    async def reload() -> None:
        try:
            version = await app.reload()
            log.info("SIGHUP: reloaded config version %s", version)
        except Exception as e:
            log.error("SIGHUP: config rejected, still serving the previous one: %s", e)

    with contextlib.suppress(NotImplementedError, RuntimeError):  # not on every platform
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(reload()))


class _Workers(Multiprocess):
    """uvicorn's worker supervisor, whose SIGHUP reloads the fleet of workers (publish and
    promote) instead of restarting them."""

    def __init__(self, config: uvicorn.Config, sockets: Any, on_hup: Any) -> None:
        super().__init__(config, sockets)
        self._on_hup = on_hup

    def handle_hup(self) -> None:
        threading.Thread(target=self._on_hup, name="muse-reload", daemon=True).start()


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What one client connection may hold: a process's settings, not a deployment's
    (they apply before any request is read, and stay across versions).

    ``request_timeout_s``: from a request's first byte (a connection's opening, for its
    first) until its body is complete (:mod:`muse.serving.protocol`); ``keep_alive_s``:
    an idle connection between requests; ``max_connections``: beyond it, requests get 503
    (None: only the OS's file limit).
    """

    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    keep_alive_s: float = 5.0
    max_connections: int | None = None


#: How long a worker may take to answer its supervisor before it is replaced.
WORKER_HEALTHCHECK_S = 30


class _Config(uvicorn.Config):
    """uvicorn's config plus the request deadline the guarded protocol reads (pickled
    with it into every worker process)."""

    def __init__(self, app: Any, *, request_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.request_timeout_s = request_timeout_s


def serve(
    config: Path | None,
    host: str,
    port: int,
    workers: int,
    log_level: str = "info",
    pool: ModelPool | None = None,
    *,
    source: StoreSource | None = None,
    limits: ConnectionLimits = ConnectionLimits(),
) -> None:
    """Serve ``config`` (or the store of ``source``) until stopped; returns after a
    graceful shutdown.

    ``pool`` may hold models already loaded (the CLI checks the config first): a single
    worker then reuses them instead of loading every model twice.
    """
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "loop": "uvloop",
        "http": GuardedHttpToolsProtocol,
        "lifespan": "on",
        "access_log": False,
        "log_level": log_level,
        "timeout_graceful_shutdown": 30,
        "server_header": False,
        "timeout_keep_alive": limits.keep_alive_s,
        "limit_concurrency": limits.max_connections,
        "request_timeout_s": limits.request_timeout_s,
    }
    if workers == 1:
        app = MuseApp(config, pool=pool) if source is None else MuseApp(source=source)
        app.on_started = lambda: _hook_signals(app)
        uvicorn.Server(_Config(app, **common)).run()
        return
    with tempfile.TemporaryDirectory(prefix="muse-workers-") as tmp:
        work = Path(tmp)
        os.environ[METRICS_DIR_ENV] = str(work / "metrics")
        (work / "metrics").mkdir()
        reload = None
        if source is None:
            assert config is not None
            source, reload = _private_store(config.resolve(), work)
        os.environ[_SOURCE_ENV] = json.dumps(
            {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(source).items()}
        )
        uv = _Config(
            "muse.serving.server:create_app",
            factory=True,
            workers=workers,
            # uvicorn kills a worker that does not answer its supervisor's ping within this
            # (default 5 s): a worker loading models and warming up on a starved CPU can take
            # longer, and was killed and restarted in a loop (seen under load); a hung one is
            # still replaced, after this long.
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
            **common,
        )
        sock = uv.bind_socket()
        supervisor = _Workers(uv, [sock], reload or _store_hup)
        watcher = _watch(config, reload, supervisor.should_exit) if reload else None
        try:
            supervisor.run()
        finally:
            supervisor.should_exit.set()
            if watcher is not None:
                watcher.join(5)
            sock.close()


def _store_hup() -> None:
    log.info("SIGHUP: this server follows a deployment store; versions come by `muse promote`")


def _private_store(config: Path, work: Path) -> tuple[StoreSource, Any]:
    """Publish ``config`` into a store of its own under ``work`` and activate it; the
    source the workers follow, and the reload that publishes the file again."""
    from muse.fleet.promotion import promote
    from muse.fleet.publish import publish
    from muse.fleet.store import DeploymentStore

    store = DeploymentStore(work / "store")
    promote(store, publish(config, store).version.id, switch_delay_s=0)
    loaded = load_config(config)
    source = StoreSource(
        url=store.url, cache=work / "cache", lake=loaded.lake_url, publish_from=config
    )
    lock = threading.Lock()

    def reload() -> None:
        with lock:
            try:
                version = publish(config, store).version.id
                result = promote(store, version)
            except Exception as e:
                log.error("reload refused, still serving the previous version: %s", e)
                return
            if result.activated:
                log.info("reloaded %s: every worker switches to version %s", config, version)
            else:
                log.error(
                    "reload refused (%s), still serving the previous version: %s",
                    result.state,
                    result.refused or result.missing,
                )

    return source, reload


def _watch(config: Path | None, reload: Any, stop: threading.Event) -> threading.Thread | None:
    """With ``server.watch_config``, the parent reloads the fleet when the file changes."""
    assert config is not None
    if not load_config(config).spec.server.watch_config:
        return None

    def run() -> None:
        last = config.stat().st_mtime_ns
        while not stop.wait(2.0):
            try:
                now = config.stat().st_mtime_ns
            except OSError:
                continue
            if now != last:
                last = now
                reload()

    thread = threading.Thread(target=run, name="muse-watch", daemon=True)
    thread.start()
    return thread


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
