"""The HTTP service: a plain ASGI application around the scoring core.

No web framework: seven routes do not need one, and on the request path every
microsecond of plumbing counts (see ``benchmarks/STACK.md``). The app only parses, calls
:class:`~muse.service.ScoringService` and maps errors (STYLE rule 2); versions — load,
build, check, warm, swap, retire — are the :class:`~muse.deployment.Deployment`'s, whose
warm-up the app sends down its own request path (:mod:`muse.serving.warmup`).

Lifecycle (ASGI lifespan): start the deployment (its first version prepared and
activated), start the score lake and the shadow worker, then turn ready. On shutdown: not
ready first, then shadows drained and the lake flushed, so every acknowledged record is
written (invariant 7), then the feature store's connections closed.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import msgspec

from muse.auth import Authenticator
from muse.backends.base import REQUEST_DEADLINE
from muse.backends.pool import ModelPool
from muse.deployment import Deployment, describe
from muse.errors import MuseError
from muse.features.table import FeatureTable
from muse.featurestore import RedisStore, StorePool
from muse.scorelog import LakeColumns, LakeWriter
from muse.scorelog.results import add_live, add_shadows
from muse.service import LiveOutcome, ScoreResult, ScoringService
from muse.serving.auth import authenticate
from muse.serving.batching import MicroBatcher
from muse.serving.errors import HTTPError, error_body, from_exception
from muse.serving.metrics import CONTENT_TYPE, Metrics
from muse.serving.openapi import openapi_document
from muse.serving.shadows import ShadowJob, ShadowRunner
from muse.serving.warmup import HttpWarmer
from muse.serving.wire import decode_score_request, encode_scores

__all__ = ["MuseApp"]

log = logging.getLogger("muse.serving")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = [(b"content-type", b"application/json")]
_encode = msgspec.json.Encoder().encode
#: Batches up to this size are scored on the event loop; larger ones in a worker thread,
#: so one big batch does not stall every other connection.
_INLINE_EVENTS = 64
#: Before start no key is valid (every request is 401, or 503 when not ready).
_LOCKED = Authenticator({}, frozenset(), enabled=True)


class MuseApp:
    """ASGI app serving one deployment config. Constructing it does no I/O."""

    def __init__(self, config_path: str | Path, *, pool: ModelPool | None = None) -> None:
        self.config_path = Path(config_path)
        self.pool = pool if pool is not None else ModelPool()
        self.metrics = Metrics()
        self.stores = StorePool(observer=self.metrics)
        self.warmer = HttpWarmer()
        self.deployment = Deployment(
            self.config_path,
            pool=self.pool,
            stores=self.stores,
            warmer=self.warmer,
            require_auth=True,
            freeze_heap=True,
        )
        self.ready = False
        self.service: ScoringService | None = None
        self.lake: LakeWriter | None = None
        self.shadows: ShadowRunner | None = None
        self._reload_lock = asyncio.Lock()
        self._batcher = MicroBatcher(self._record_scored)
        self._watch_task: asyncio.Task[None] | None = None
        self._routes: dict[tuple[str, str], Callable[[Scope, Receive, Send], Awaitable[None]]] = {
            ("POST", "/v1/score"): self._score,
            ("GET", "/health/live"): self._live,
            ("GET", "/health/ready"): self._ready,
            ("GET", "/metrics"): self._metrics,
            ("GET", "/openapi.json"): self._openapi,
            ("POST", "/admin/reload"): self._admin_reload,
            ("GET", "/admin/config"): self._admin_config,
        }

    # -- ASGI ---------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            handler = self._routes.get((scope["method"], scope["path"]))
            if handler is None:
                await self._not_found(scope, send)
                return
            await handler(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as e:
                    log.error("startup failed: %s", e)
                    await send({"type": "lifespan.startup.failed", "message": str(e)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- lifecycle ----------------------------------------------------------------------

    async def startup(self) -> None:
        """Start the deployment (load, build, check, warm, activate), the lake and the
        shadow worker; turn ready."""
        self.warmer.bind(asyncio.get_running_loop())
        snapshot = await asyncio.to_thread(self.deployment.start)
        spec = snapshot.config.spec
        if spec.lake is not None:
            url = snapshot.config.lake_url
            assert url is not None
            self.lake = LakeWriter(
                url,
                max_rows_per_file=spec.lake.max_rows_per_file,
                flush_interval_s=spec.lake.flush_interval_s,
                max_pending_rows=spec.lake.max_pending_rows,
            )
            self.lake.start()
            lake = self.lake
            self.metrics.watch_lake(
                lambda: {
                    "written_rows": lake.written_rows,
                    "dropped_rows": lake.dropped_rows,
                    "lost_rows": lake.lost_rows,
                    "failed_files": lake.failed_files,
                    "pending_rows": lake.pending_rows,
                }
            )
        self.shadows = ShadowRunner(
            spec.server.shadow_queue,
            on_done=self._record_shadows,
            on_shed=lambda p, n: self.metrics.shadow_shed.labels(p).inc(n),
            on_failed=lambda p, n: self.metrics.shadow_failed.labels(p).inc(n),
        )
        self.shadows.start()
        self.service = ScoringService(self.deployment)
        self.metrics.watch_circuit(self._store_circuit_open)
        if spec.server.watch_config:
            self._watch_task = asyncio.get_running_loop().create_task(self._watch_config())
        self._set_ready(True)
        log.info("ready: config %s (version %s)", self.config_path, snapshot.version)

    @property
    def auth(self) -> Authenticator:
        """The live version's authentication rules; before start, no key is valid."""
        if not self.deployment.started:
            return _LOCKED
        return self.deployment.auth

    def _set_ready(self, ready: bool) -> None:
        self.ready = ready
        self.metrics.ready.set(1 if ready else 0)

    def begin_shutdown(self) -> None:
        """Turn not-ready at once (called on SIGTERM, before connections drain)."""
        self._set_ready(False)

    async def shutdown(self) -> None:
        """Not ready, then run queued shadows and flush the lake (bounded waits)."""
        self._set_ready(False)
        if self._watch_task is not None:
            self._watch_task.cancel()
        if self.shadows is not None:
            self.shadows.drain_light()
            await asyncio.to_thread(self.shadows.stop, 20.0)
        if self.lake is not None:
            await asyncio.to_thread(self.lake.close, 30.0)
        self.stores.close()
        gc.unfreeze()  # what was frozen at start-up is collectable again once stopped
        log.info("stopped")

    # -- scoring ------------------------------------------------------------------------

    async def _score(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        received_at = time.time()
        path = "/v1/score"
        service = self.service
        batch = False
        try:
            if service is None or not self.ready:
                raise HTTPError(503, "not_ready", "the service is starting or stopping; retry")
            principal = authenticate(self.auth, _header(scope, b"authorization"))
            limits = service.snapshot.config.spec.server
            body = await _read_body(receive, limits.max_body_bytes)
            request = decode_score_request(body, limits.max_batch_events)
            batch = request.batch
            events = request.events
            for i, event in enumerate(events):
                self.auth.require_tenant(
                    principal, event.intent.get("tenant"), i if request.batch else None
                )
            intents = [e.intent for e in events]
            event_ids = [e.event_id for e in events]
            if not request.batch:
                # Checked here, once, so a bad event fails alone before it joins a micro-batch.
                row = FeatureTable.from_row(events[0].features, checked=request.checked)
                results = [
                    await self._batcher.submit(
                        service, intents[0], row, event_ids[0], started, received_at
                    )
                ]
            else:
                table = FeatureTable.from_rows(
                    [e.features for e in events], checked=request.checked
                )
                if len(events) > _INLINE_EVENTS or service.snapshot.remote:
                    budget = limits.request_budget_ms
                    if budget is not None:
                        # to_thread copies the context: the worker sees the deadline.
                        REQUEST_DEADLINE.set(started + budget / 1e3)
                    outcome = await asyncio.to_thread(
                        service.score_live, intents, table, event_ids=event_ids
                    )
                else:
                    outcome = service.score_live(intents, table, event_ids=event_ids)
                results = outcome.results
                self._record_scored(outcome, [started] * len(results), [received_at] * len(results))
        except Exception as exc:
            await self._error(send, path, exc, batch=batch)
            return
        body_out = encode_scores(event_ids, [r.live.score for r in results], request.batch)
        headers = [
            *_JSON,
            (b"x-muse-config-version", results[0].config_version.encode()),
        ]
        await _respond(send, 200, body_out, headers)
        elapsed = time.perf_counter() - started
        self.metrics.response(path, 200)
        self.metrics.observe_live(results, elapsed)

    def _record_scored(
        self, outcome: LiveOutcome, started: list[float], received_at: list[float]
    ) -> None:
        """Lake rows for live results (each with its request's arrival and latency) and
        the shadow work of the batch, queued for the shadow worker or, when it only
        transforms outputs the live pass computed, for the event loop's next turn."""
        if self.lake is not None:
            now = time.perf_counter()
            columns = LakeColumns()
            add_live(
                columns,
                outcome.results,
                [round(at * 1e6) for at in received_at],
                [(now - t0) * 1e3 for t0 in started],
            )
            self.lake.append_columns(columns)
        work = outcome.deferred
        if work is not None and self.shadows is not None:
            light = not work.runs_models and work.n_events <= _INLINE_EVENTS
            self.shadows.submit(ShadowJob(work, min(received_at)), light=light)

    def _record_shadows(self, job: ShadowJob, results: list[ScoreResult], seconds: float) -> None:
        self.metrics.observe_shadows(results, seconds)
        if self.lake is not None:
            columns = LakeColumns()
            if add_shadows(columns, results, round(job.received_at * 1e6), seconds * 1e3):
                self.lake.append_columns(columns)

    # -- admin --------------------------------------------------------------------------

    async def _admin_reload(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = "/admin/reload"
        try:
            self.auth.require_admin(authenticate(self.auth, _header(scope, b"authorization")))
            version = await self.reload()
        except Exception as exc:
            await self._error(send, path, exc)
            return
        await self._json(send, path, 200, {"status": "reloaded", "config_version": version})

    async def reload(self) -> str:
        """Prepare the config file's new version beside the live one (load, build, check,
        warm), then swap it in (:meth:`Deployment.reload`).

        Models already loaded are reused. On any error the live version keeps serving and
        the error propagates (ARCHITECTURE invariant 4); requests in flight finish on the
        snapshot they started with.
        """
        async with self._reload_lock:
            if self.service is None:
                raise HTTPError(503, "not_ready", "the service is not started")
            try:
                snapshot = await asyncio.to_thread(self.deployment.reload, self.config_path)
            except MuseError:
                self.metrics.reloads.labels("rejected").inc()
                raise
            self.metrics.reloads.labels("ok").inc()
            log.info("reloaded: config version %s", snapshot.version)
            return snapshot.version

    async def _watch_config(self) -> None:
        last = self.config_path.stat().st_mtime_ns
        while True:
            await asyncio.sleep(2.0)
            try:
                now = self.config_path.stat().st_mtime_ns
            except OSError:
                continue
            if now != last:
                last = now
                try:
                    await self.reload()
                except Exception as e:
                    log.error("config change rejected, still serving the previous one: %s", e)

    async def _admin_config(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = "/admin/config"
        try:
            self.auth.require_admin(authenticate(self.auth, _header(scope, b"authorization")))
            if self.service is None:
                raise HTTPError(503, "not_ready", "the service is not started")
        except Exception as exc:
            await self._error(send, path, exc)
            return
        await self._json(send, path, 200, describe(self.deployment.live))

    def _store_circuit_open(self) -> bool:
        store = self.service.snapshot.store if self.service is not None else None
        backend = store.backend if store is not None else None
        return isinstance(backend, RedisStore) and backend.breaker.state != "closed"

    # -- health, metrics, docs ----------------------------------------------------------

    async def _live(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._json(send, "/health/live", 200, {"status": "alive"})

    async def _ready(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.ready and self.service is not None:
            body = {"status": "ready", "config_version": self.service.snapshot.version}
            await self._json(send, "/health/ready", 200, body)
        else:
            await self._json(send, "/health/ready", 503, {"status": "not ready"})

    async def _metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await asyncio.to_thread(self.metrics.render)
        await _respond(send, 200, body, [(b"content-type", CONTENT_TYPE.encode())])

    async def _openapi(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._json(send, "/openapi.json", 200, openapi_document())

    async def _not_found(self, scope: Scope, send: Send) -> None:
        allowed = sorted(m for m, p in self._routes if p == scope["path"])
        headers = list(_JSON)
        if allowed:
            err = HTTPError(
                405, "method_not_allowed", f"{scope['method']} is not allowed here; use {allowed}"
            )
            headers.append((b"allow", ", ".join(allowed).encode()))
        else:
            err = HTTPError(404, "not_found", f"no endpoint {scope['path']!r}; see /openapi.json")
        self.metrics.response("other", err.status)
        await _respond(send, err.status, error_body(err), headers)

    # -- helpers ------------------------------------------------------------------------

    async def _json(self, send: Send, path: str, status: int, doc: object) -> None:
        self.metrics.response(path, status)
        await _respond(send, status, _encode(doc), list(_JSON))

    async def _error(self, send: Send, path: str, exc: BaseException, batch: bool = False) -> None:
        err = from_exception(exc, batch=batch)
        if err.status >= 500 and err.code == "internal":
            log.exception("unexpected error on %s", path, exc_info=exc)
        self.metrics.response(path, err.status)
        headers = list(_JSON)
        if err.status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="muse"'))
        await _respond(send, err.status, error_body(err), headers)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HTTPError(400, "client_disconnected", "the client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, "body_too_large", f"request body exceeds {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
