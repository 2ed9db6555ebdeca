"""The HTTP service: a plain ASGI application around the scoring core.

No web framework: seven routes do not need one, and on the request path every
microsecond of plumbing counts (see ``benchmarks/STACK.md``). The app only parses, calls
:class:`~muse.service.ScoringService` and maps errors (STYLE rule 2); versions — load,
build, check, warm, swap, retire — are the :class:`~muse.deployment.Deployment`'s, whose
warm-up the app sends down its own request path (:mod:`muse.serving.warmup`).

Two sources of versions: a config file (``muse serve CONFIG``: ``/admin/reload``, SIGHUP
or a file watch swap the file's new content in), or a deployment store
(``muse serve --store URL``, :class:`StoreSource`): the app serves the store's active
version and a :class:`~muse.fleet.follower.Follower` keeps it on it — prepare on a
promotion, switch at the activation time with every other replica.

Lifecycle (ASGI lifespan): start the deployment (its first version prepared and
activated), start the score lake and the shadow worker, then turn ready (and follow the
store). On shutdown: not ready first, then the store no longer followed, shadows drained
and the lake flushed, so every acknowledged record is written (invariant 7), then the
feature store's connections closed.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
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
from muse.fleet.follower import POLL_S, Follower, FollowerEvents, default_replica_id
from muse.fleet.promotion import promote
from muse.fleet.publish import publish
from muse.fleet.store import DeploymentStore, StoreError
from muse.scorelog import LakeColumns, LakeWriter
from muse.scorelog.results import add_live, add_shadows
from muse.service import LiveOutcome, ScoreResult, ScoringService
from muse.serving.auth import authenticate
from muse.serving.batching import MicroBatcher
from muse.serving.errors import HTTPError, error_body, from_exception
from muse.serving.metrics import CONTENT_TYPE, Metrics
from muse.serving.multiprocess import METRICS_DIR_ENV
from muse.serving.openapi import snapshot_document
from muse.serving.shadows import ShadowJob, ShadowRunner
from muse.serving.warmup import HttpWarmer
from muse.serving.wire import decode_score_request, encode_scores
from muse.snapshot import Snapshot

__all__ = ["MuseApp", "StoreSource"]

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


@dataclass(frozen=True, slots=True)
class StoreSource:
    """Serve a deployment store's active version and follow it (``muse serve --store``).

    ``cache`` is the local folder versions are unpacked into. ``lake`` is the score lake
    every version writes to (a version's own ``lake.url`` is used only when it is an
    absolute path or a URL: a folder relative to an unpacked version would split the lake
    by version). ``publish_from``: a config file that ``/admin/reload`` publishes to the
    store and promotes — how ``muse serve CONFIG --workers N`` reloads every worker.
    """

    url: str
    cache: Path
    lake: str | None = None
    replica: str | None = None
    poll_s: float = POLL_S
    publish_from: Path | None = None


class MuseApp:
    """ASGI app serving one deployment: a config file, or a deployment store's active
    version (``source``). Constructing it does no I/O."""

    def __init__(
        self,
        config_path: str | Path | None = None,
        *,
        pool: ModelPool | None = None,
        source: StoreSource | None = None,
    ) -> None:
        if (config_path is None) == (source is None):
            raise ValueError("serve a config file or a deployment store, exactly one")
        self.source = source
        #: The config file served (None: a store's versions, unpacked as they come).
        self.config_path = Path(config_path) if config_path is not None else None
        self.pool = pool if pool is not None else ModelPool()
        self.metrics = Metrics()
        self.stores = StorePool(observer=self.metrics)
        self.warmer = HttpWarmer()
        self.deployment = Deployment(
            # A follower names each version's file as it unpacks it.
            self.config_path or Path("muse.yaml"),
            pool=self.pool,
            stores=self.stores,
            warmer=self.warmer,
            require_auth=True,
            freeze_heap=True,
        )
        self.ready = False
        #: Set when the shutdown begins (connections drained): scoring is refused (503).
        self.stopping = False
        #: When the last scoring request arrived (monotonic): a drain ends once it is old.
        self.last_request = 0.0
        self.service: ScoringService | None = None
        self.lake: LakeWriter | None = None
        self.shadows: ShadowRunner | None = None
        self._reload_lock = asyncio.Lock()
        self._batcher = MicroBatcher(self._record_scored)
        self._watch_task: asyncio.Task[None] | None = None
        self.follower: Follower | None = None
        if source is not None:
            self.follower = Follower(
                DeploymentStore(source.url),
                self.deployment,
                cache=source.cache,
                replica=source.replica,
                poll_s=source.poll_s,
                events=FollowerEvents(
                    switched=self._switched,
                    prepared=lambda v: self.metrics.promotion_answers.labels("prepared").inc(),
                    refused=lambda v: self.metrics.promotion_answers.labels("refused").inc(),
                    store_error=self.metrics.deployment_store_errors.inc,
                ),
            )
        self.replica = self.follower.replica if self.follower else default_replica_id()
        #: /openapi.json of the snapshot version it describes, encoded once per version.
        self._openapi_doc: tuple[str | None, bytes] | None = None
        #: Called once started, on the event loop (the server hooks its signals there).
        self.on_started: Callable[[], None] | None = None
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
        if self.follower is not None:
            snapshot = await asyncio.to_thread(self.follower.start)
        else:
            snapshot = await asyncio.to_thread(self.deployment.start)
        self.metrics.serving(self.replica, snapshot.version)
        shared = os.environ.get(METRICS_DIR_ENV)
        if shared:
            self.metrics.share(Path(shared))
        spec = snapshot.config.spec
        url = self._lake_url(snapshot)
        if spec.lake is not None and url is not None:
            self.lake = LakeWriter(
                url,
                max_rows_per_file=spec.lake.max_rows_per_file,
                flush_interval_s=spec.lake.flush_interval_s,
                max_pending_rows=spec.lake.max_pending_rows,
                retry_for_s=spec.lake.retry_for_s,
            )
            self.lake.start()
            lake = self.lake
            self.metrics.watch_lake(
                lambda: {
                    "written_rows": lake.written_rows,
                    "dropped_rows": lake.dropped_rows,
                    "lost_rows": lake.lost_rows,
                    "failed_files": lake.failed_files,
                    "write_retries": lake.write_retries,
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
        if spec.server.watch_config and self.config_path is not None:
            self._watch_task = asyncio.get_running_loop().create_task(self._watch_config())
        self._set_ready(True)
        if self.on_started is not None:
            self.on_started()
        if self.follower is not None:
            self.follower.start_thread()
            log.info(
                "ready: replica %s, version %s of %s",
                self.replica,
                snapshot.version,
                self.follower.store.url,
            )
        else:
            log.info("ready: config %s (version %s)", self.config_path, snapshot.version)

    def _lake_url(self, snapshot: Snapshot) -> str | None:
        """Where this process writes its lake rows (see :class:`StoreSource`)."""
        spec = snapshot.config.spec
        if spec.lake is None:
            return None
        if self.source is None:
            return snapshot.config.lake_url
        if self.source.lake is not None:
            return self.source.lake
        if "://" in spec.lake.url or Path(spec.lake.url).is_absolute():
            return spec.lake.url
        raise StoreError(
            f"version {snapshot.version} writes its score lake to {spec.lake.url!r}, a folder "
            "relative to its muse.yaml; a replica following a store writes one lake for every "
            "version: give it with --lake URL (or an absolute path or URL in the config)"
        )

    def _switched(self, version: str) -> None:
        """The follower swapped a new version in (its thread)."""
        self.metrics.switches.inc()
        self.metrics.serving(self.replica, version)

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

    async def drain(self, quiet_s: float = 0.5) -> float:
        """Keep serving, not ready, until no scoring request arrived for ``quiet_s`` or
        ``server.drain_s`` passed; the seconds it took. Why: a load balancer (or
        Kubernetes' endpoints) keeps sending until its health check sees not-ready; a
        server that stopped accepting at once would fail those requests."""
        self.begin_shutdown()
        started = time.monotonic()
        service = self.service
        limit = service.snapshot.config.spec.server.drain_s if service is not None else 0.0
        while True:
            now = time.monotonic()
            if now - started >= limit or now - max(self.last_request, started) >= quiet_s:
                return now - started
            await asyncio.sleep(0.05)

    async def shutdown(self) -> None:
        """Not ready, then run queued shadows and flush the lake (bounded waits)."""
        self._set_ready(False)
        self.stopping = True
        if self._watch_task is not None:
            self._watch_task.cancel()
        if self.follower is not None:
            await asyncio.to_thread(self.follower.stop)
        if self.shadows is not None:
            self.shadows.drain_light()
            await asyncio.to_thread(self.shadows.stop, 20.0)
        if self.lake is not None:
            await asyncio.to_thread(self.lake.close, 30.0)
        self.stores.close()
        self.metrics.unshare()
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
            # Not-ready alone does not refuse: while draining (SIGTERM, before the balancer
            # noticed) requests keep being served; only before start and once stopping.
            if service is None or self.stopping:
                raise HTTPError(503, "not_ready", "the service is starting or stopping; retry")
            self.last_request = time.monotonic()
            principal = authenticate(self.auth, _header(scope, b"authorization"))
            _require_json(_header(scope, b"content-type"))
            limits = service.snapshot.config.spec.server
            _check_length(_header(scope, b"content-length"), limits.max_body_bytes)
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
                    [e.features for e in events],
                    checked=request.checked,
                    # Store features and a split's sticky feature may be sent by some
                    # events of a batch only (the others: the store, or the event id).
                    optional=service.snapshot.optional_features,
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
            if self.source is not None:
                return await self._republish()
            try:
                snapshot = await asyncio.to_thread(self.deployment.reload, self.config_path)
            except MuseError:
                self.metrics.reloads.labels("rejected").inc()
                raise
            self.metrics.reloads.labels("ok").inc()
            log.info("reloaded: config version %s", snapshot.version)
            return snapshot.version

    async def _republish(self) -> str:
        """Reload a replica that follows a store: publish ``publish_from`` and promote it
        (every worker prepares, then all switch); 409 when there is no such file."""
        source = self.source
        follower = self.follower
        assert source is not None
        assert follower is not None
        if source.publish_from is None:
            raise HTTPError(
                409,
                "follows_store",
                f"this replica follows the deployment store {source.url}: versions reach it "
                "by `muse publish` then `muse promote`",
            )
        path = source.publish_from

        def run() -> str:
            version = publish(path, follower.store).version.id
            result = promote(follower.store, version)
            if not result.activated:
                detail = "; ".join(f"{r}: {d}" for r, d in result.refused.items())
                raise MuseError(
                    f"version {version} was not activated ({result.state})"
                    + (f": {detail}" if detail else "")
                )
            deadline = time.monotonic() + 30
            while follower.version != version and time.monotonic() < deadline:
                time.sleep(0.02)
            return version

        try:
            version = await asyncio.to_thread(run)
        except MuseError:
            self.metrics.reloads.labels("rejected").inc()
            raise
        self.metrics.reloads.labels("ok").inc()
        log.info("reloaded: published and promoted %s as version %s", path, version)
        return version

    async def _watch_config(self) -> None:
        path = self.config_path
        assert path is not None  # only a config file is watched
        last = path.stat().st_mtime_ns
        while True:
            await asyncio.sleep(2.0)
            try:
                now = path.stat().st_mtime_ns
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
        doc = describe(self.deployment.live)
        doc["replica"] = self.replica
        doc["fleet"] = None if self.follower is None else self.follower.status()
        await self._json(send, path, 200, doc)

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
        snapshot = self.service.snapshot if self.service is not None else None
        key = None if snapshot is None else snapshot.version
        if self._openapi_doc is None or self._openapi_doc[0] != key:
            self._openapi_doc = (key, _encode(snapshot_document(snapshot)))
        self.metrics.response("/openapi.json", 200)
        await _respond(send, 200, self._openapi_doc[1], list(_JSON))

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
        elif err.status == 413:
            # The rest of the body is not read: the connection cannot carry another request.
            headers.append((b"connection", b"close"))
        await _respond(send, err.status, error_body(err), headers)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _check_length(declared: bytes | None, limit: int) -> None:
    """413 at once for a body declared larger than ``limit``, before a byte of it is read
    (a flood of large bodies costs their headers only)."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPError(
            413, "body_too_large", f"request body of {int(declared)} bytes exceeds {limit} bytes"
        )


def _require_json(content_type: bytes | None) -> None:
    """A body declared as something other than JSON is refused (415) before it is read: a
    form or text body that happens to parse as JSON was not meant as a score request. No
    header at all is accepted (minimal clients omit it)."""
    if content_type is None:
        return
    media = content_type.split(b";", 1)[0].strip().lower()
    if media == b"application/json" or (
        media.startswith(b"application/") and media.endswith(b"+json")
    ):
        return
    shown = media.decode("latin-1")[:100]
    raise HTTPError(
        415,
        "unsupported_media_type",
        f"the body must be JSON (content-type: application/json), got {shown!r}",
        "content-type",
    )


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
