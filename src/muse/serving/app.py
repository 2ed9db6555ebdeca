"""The HTTP service: a plain ASGI application around the scoring core.

No web framework: seven routes do not need one, and on the request path every
microsecond of plumbing counts (see ``benchmarks/STACK.md``). The app only parses, calls
:class:`~muse.service.ScoringService` and maps errors (STYLE rule 2).

Lifecycle (ASGI lifespan): load the config and its models, open the feature store (it
must answer: a Redis PING), start the score lake and the shadow worker, warm every
predictor up with synthetic events, then turn ready. On shutdown: not ready first, then
shadows drained and the lake flushed, so every acknowledged record is written (invariant
7), then the feature store's connections closed.
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
import numpy as np

from muse.backends.base import REMOTE_KINDS, REQUEST_DEADLINE
from muse.backends.pool import ModelPool
from muse.config import load_config
from muse.errors import BackendError, ConfigError, MuseError
from muse.features.table import FeatureTable
from muse.featurestore import RedisStore, StorePool
from muse.scorelog import LakeColumns, LakeWriter
from muse.scorelog.results import add_live, add_shadows
from muse.service import LiveOutcome, ScoreResult, ScoringService, Snapshot, build_snapshot
from muse.serving.auth import Authenticator
from muse.serving.batching import MicroBatcher
from muse.serving.errors import HTTPError, error_body, from_exception
from muse.serving.metrics import CONTENT_TYPE, Metrics
from muse.serving.openapi import openapi_document
from muse.serving.shadows import ShadowJob, ShadowRunner
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


class MuseApp:
    """ASGI app serving one deployment config. Constructing it does no I/O."""

    def __init__(self, config_path: str | Path, *, pool: ModelPool | None = None) -> None:
        self.config_path = Path(config_path)
        self.pool = pool if pool is not None else ModelPool()
        self.metrics = Metrics()
        self.stores = StorePool(observer=self.metrics)
        self.ready = False
        self.service: ScoringService | None = None
        self.auth = Authenticator.from_config(None)
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
        """Load, start the lake and shadows, warm up, turn ready."""
        config = await asyncio.to_thread(load_config, self.config_path)
        snapshot = await asyncio.to_thread(build_snapshot, config, self.pool, self.stores)
        try:
            await asyncio.to_thread(check_store, snapshot)
        except MuseError:
            self.stores.close()
            raise
        await asyncio.to_thread(check_remote, snapshot, config.spec.server.remote_ready_timeout_s)
        spec = config.spec
        if spec.auth is None:
            raise ConfigError(
                "the config has no `auth` section: give tenants' API key hashes, or `auth: none` "
                "for local use",
                source=str(self.config_path),
            )
        self.auth = Authenticator.from_config(spec.auth)
        if not self.auth.enabled:
            log.warning(
                "AUTHENTICATION IS OFF (auth: none): anyone who can reach this port can score "
                "events as any tenant and reload the config. Use it for local work only."
            )
        if spec.lake is not None:
            assert config.lake_url is not None
            self.lake = LakeWriter(
                config.lake_url,
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
        await asyncio.to_thread(warm_up, snapshot, spec.server.warmup_events)
        self.service = ScoringService(snapshot, self.pool, self.stores)
        freeze_heap()
        self.metrics.watch_circuit(self._store_circuit_open)
        if spec.server.watch_config:
            self._watch_task = asyncio.get_running_loop().create_task(self._watch_config())
        self._set_ready(True)
        log.info("ready: config %s (version %s)", self.config_path, snapshot.version)

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
            principal = self.auth.authenticate(_header(scope, b"authorization"))
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
            self.auth.require_admin(self.auth.authenticate(_header(scope, b"authorization")))
            version = await self.reload()
        except Exception as exc:
            await self._error(send, path, exc)
            return
        await self._json(send, path, 200, {"status": "reloaded", "config_version": version})

    async def reload(self) -> str:
        """Build, check and warm the new snapshot beside the live one, then swap it in.

        Models already loaded are reused. On any error the live snapshot keeps serving and
        the error propagates (ARCHITECTURE invariant 4); requests in flight finish on the
        snapshot they started with.
        """
        async with self._reload_lock:
            service = self.service
            if service is None:
                raise HTTPError(503, "not_ready", "the service is not started")
            try:
                config = await asyncio.to_thread(load_config, self.config_path)
                if config.spec.auth is None:
                    # Never let a reload switch authentication off by omission.
                    raise ConfigError(
                        "the new config has no `auth` section; keep the API keys, or write "
                        "`auth: none` explicitly",
                        source=str(self.config_path),
                    )
                snapshot = await asyncio.to_thread(build_snapshot, config, self.pool, self.stores)
                await asyncio.to_thread(check_store, snapshot)
                await asyncio.to_thread(
                    check_remote, snapshot, config.spec.server.remote_ready_timeout_s
                )
                await asyncio.to_thread(warm_up, snapshot, config.spec.server.warmup_events)
            except MuseError:
                self.metrics.reloads.labels("rejected").inc()
                raise
            service.swap(snapshot)
            self.pool.retain(snapshot.config.model_specs.values())
            freeze_heap()
            store = snapshot.config.feature_store
            self.stores.retain(None if store is None else store.source)
            self.auth = Authenticator.from_config(config.spec.auth)
            if not self.auth.enabled:
                log.warning("AUTHENTICATION IS OFF after reload (auth: none): local use only")
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
            self.auth.require_admin(self.auth.authenticate(_header(scope, b"authorization")))
            if self.service is None:
                raise HTTPError(503, "not_ready", "the service is not started")
        except Exception as exc:
            await self._error(send, path, exc)
            return
        await self._json(send, path, 200, describe(self.service.snapshot))

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


def freeze_heap() -> None:
    """Collect, then move every object alive out of the garbage collector's reach
    (``gc.freeze``); called once started and after each reload.

    Why: loaded models, configs and runtimes are ~125k long-lived objects, and a full
    collection walks them all — ~70 ms with the GIL held, every few seconds under load,
    which alone breaks a 5 ms p99. Frozen objects are never scanned again (reference
    counting still frees them), so later collections, the one here after a reload
    included, walk only what was created since (~0.1 ms). What a replaced snapshot left in
    reference cycles among frozen objects stays: measured, < 1 object per reload.
    """
    gc.collect()
    gc.freeze()


def warm_up(snapshot: Snapshot, n_events: int) -> None:
    """Score synthetic events through every predictor (paper §3.1.2's warm-up).

    Events are generated from each predictor's models' feature lists, scored one by one
    and as a batch, for the default map and for a tenant with a map of its own, so every
    code path (and each runtime's lazy initialisation) has run before traffic arrives.
    """
    if n_events <= 0:
        return
    rng = np.random.default_rng(0)
    for predictor in snapshot.predictors.values():
        names = sorted({f for e in predictor.experts for f in e.backend.feature_names})
        columns = {f: rng.normal(size=n_events) for f in names}
        table = FeatureTable(columns)
        tenants = ["-warm-up-", *list(predictor.tenant_maps)[:1]]
        for tenant in tenants:
            predictor.score(table, tenant)
            for i in range(min(n_events, 16)):
                predictor.score(
                    FeatureTable.from_row({f: float(c[i]) for f, c in columns.items()}), tenant
                )


def check_remote(snapshot: Snapshot, timeout_s: float) -> None:
    """Wait until every remote (kserve-v2) model answers its V2 readiness endpoints.

    Raises :class:`~muse.errors.BackendError` naming the models still not ready after
    ``timeout_s``: the service (or a reload) must not turn ready with an expert that
    cannot answer. Once serving, an outage only fails the predictors that need it.
    """
    remote = [b for b in snapshot.backends.values() if b.kind in REMOTE_KINDS]
    deadline = time.monotonic() + timeout_s
    while True:
        waiting = [b for b in remote if not b.ready(min(2.0, timeout_s))]  # type: ignore[attr-defined]
        if not waiting:
            return
        if time.monotonic() >= deadline:
            names = ", ".join(b.describe() for b in waiting)  # type: ignore[attr-defined]
            raise BackendError(
                f"not ready after {timeout_s:g} s: {names}; check the model servers "
                "(GET <url>/v2/health/ready)"
            )
        time.sleep(0.2)


def check_store(snapshot: Snapshot) -> None:
    """Raise :class:`~muse.errors.FeatureStoreError` unless the snapshot's store answers.

    Readiness, not liveness: once serving, a store outage fails only the events that need
    it (fast, through its circuit breaker), so it must not take the service out of rotation.
    """
    if snapshot.store is not None:
        snapshot.store.backend.check()


def describe(snapshot: Snapshot) -> dict[str, Any]:
    """What ``GET /admin/config`` shows: version, routes, predictors and their maps."""
    config = snapshot.config
    return {
        "config_version": snapshot.version,
        "config_digest": config.digest,
        "routing": snapshot.router.to_config(),
        "predictors": {
            name: {
                "fingerprint": p.fingerprint,
                "experts": [
                    {"model": e.model, "beta": e.beta, "weight": e.weight} for e in p.experts
                ],
                "default_map": p.default_map.version,
                "tenant_maps": {t: m.version for t, m in p.tenant_maps.items()},
            }
            for name, p in snapshot.predictors.items()
        },
        "feature_store": None
        if snapshot.store is None
        else {
            "backend": snapshot.store.backend.description,
            "key": [k.name for k in snapshot.store.spec.keys],
            "features": {
                f.name: "required" if f.required else {"default": f.default}
                for f in snapshot.store.spec.features
            },
        },
    }


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
