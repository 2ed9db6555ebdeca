"""The server's warm-up: synthetic requests down the path a real request takes.

:mod:`muse.warmup` says *what* to send (one intent per routing rule, single events and a
batch, events that need the feature store); this module sends it the way the server
receives traffic: each request is encoded as the JSON body a client would post, decoded by
the same decoder (:func:`~muse.serving.wire.decode_score_request`), its features checked
into a table as :meth:`MuseApp._score` does, single events submitted together to a
:class:`~muse.serving.batching.MicroBatcher` on the server's event loop (so they are
scored as one micro-batch, in a worker thread when a model is remote, exactly like
concurrent requests), batches scored as the app scores them, then the deferred shadows.

The deployment prepares a version in a worker thread; the warmer hands the single events
to the event loop and waits, so the loop keeps serving the live version meanwhile. The
micro-batcher here is the warmer's own: nothing of warm-up reaches the lake or metrics.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import msgspec

from muse.backends.pool import ModelPool
from muse.features.table import FeatureTable
from muse.scoring import LiveOutcome, ScoreResult, score_live
from muse.service import ScoringService
from muse.serving.batching import MicroBatcher
from muse.serving.wire import decode_score_request
from muse.snapshot import Snapshot
from muse.warmup import WarmUpReport, WarmUpRequest, run_request, warm_unrouted, warm_up
from muse.warmup import warm_up_requests as requests_for

__all__ = ["HttpWarmer"]

_encode = msgspec.json.Encoder().encode
#: Longest the warmer waits for the event loop to score one request's single events.
_LOOP_TIMEOUT_S = 120.0


class HttpWarmer:
    """A :data:`~muse.warmup.Warmer` that sends warm-up requests through the HTTP path.

    :meth:`bind` gives it the server's event loop (at start-up); unbound — a deployment
    used outside a running server — it warms up through the library path instead.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outcomes: list[LiveOutcome] = []
        self._batcher = MicroBatcher(self._collect)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def __call__(self, snapshot: Snapshot, n_events: int) -> WarmUpReport:
        loop = self._loop
        if loop is None or _on_loop(loop):
            return warm_up(snapshot, n_events)
        service = ScoringService(snapshot, ModelPool())
        limit = snapshot.config.spec.server.max_batch_events
        report = WarmUpReport()

        def send(request: WarmUpRequest) -> list[LiveOutcome]:
            bodies = _bodies(request)
            if request.single:
                report.micro_batched += len(bodies)
                return self._singles(loop, service, bodies, limit)
            return [_batch(snapshot, bodies[0], limit)]

        for request in requests_for(snapshot, n_events):
            run_request(report, request, send)
        warm_unrouted(snapshot, report, n_events)
        return report

    def _singles(
        self,
        loop: asyncio.AbstractEventLoop,
        service: ScoringService,
        bodies: Sequence[bytes],
        limit: int,
    ) -> list[LiveOutcome]:
        """Post ``bodies`` as concurrent single-event requests: decoded here, scored by the
        micro-batcher on the loop (merged as concurrent requests are); their outcomes."""
        rows = []
        for body in bodies:
            parsed = decode_score_request(body, limit)
            (event,) = parsed.events
            rows.append((event, FeatureTable.from_row(event.features, checked=parsed.checked)))

        async def submit() -> list[ScoreResult]:
            started = loop.time()
            return await asyncio.gather(
                *(
                    self._batcher.submit(service, e.intent, row, e.event_id, started, 0.0)
                    for e, row in rows
                )
            )

        self._outcomes = []
        asyncio.run_coroutine_threadsafe(submit(), loop).result(timeout=_LOOP_TIMEOUT_S)
        # The batcher handed each micro-batch's outcome (with its deferred shadows) to
        # _collect, on the loop, before the futures above resolved.
        outcomes, self._outcomes = self._outcomes, []
        return outcomes

    def _collect(self, outcome: LiveOutcome, started: list[float], received: list[float]) -> None:
        self._outcomes.append(outcome)


def _batch(snapshot: Snapshot, body: bytes, limit: int) -> LiveOutcome:
    parsed = decode_score_request(body, limit)
    table = FeatureTable.from_rows([e.features for e in parsed.events], checked=parsed.checked)
    return score_live(
        snapshot,
        [e.intent for e in parsed.events],
        table,
        event_ids=[e.event_id for e in parsed.events],
    )


def _bodies(request: WarmUpRequest) -> Sequence[bytes]:
    """The JSON bodies a client would post for ``request``."""
    events = [
        {"event_id": f"warm-up-{i}", "intent": dict(intent), "features": features}
        for i, (intent, features) in enumerate(zip(request.intents, request.features, strict=True))
    ]
    if request.single:
        return [_encode(e) for e in events]
    return [_encode({"events": events})]


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
