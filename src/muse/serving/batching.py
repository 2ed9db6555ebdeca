"""Micro-batching of concurrent single-event requests into one scoring pass.

Each model call has a fixed cost that dwarfs its per-row cost (XGBoost's Python-side
overhead alone is ~100 µs, a 1-row LightGBM call ~20 µs), so scoring the single-event
requests that arrive together as one batch — one call per model — is what lets a service
with a 3-expert ensemble keep up with a one-model server. Batching is opportunistic: the
first request of an event-loop turn schedules a flush for the end of that turn, so an idle
service adds no wait at all, and a busy one batches exactly what queued up meanwhile.

A merged batch that fails (one event names an undeclared attribute, lacks a feature its
route needs, …) is scored again event by event, so an error reaches only its own request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from muse.backends.base import REQUEST_DEADLINE
from muse.features.table import FeatureTable
from muse.service import LiveOutcome, ScoreResult, ScoringService

__all__ = ["MicroBatcher"]

#: Largest merged batch; beyond, the rest waits for the next flush.
MAX_BATCH = 256

Recorder = Callable[[LiveOutcome, list[float], list[float]], None]


@dataclass(slots=True)
class _Pending:
    service: ScoringService
    intent: Mapping[str, Any]
    features: FeatureTable
    event_id: str
    started: float
    received_at: float
    future: asyncio.Future[ScoreResult]


class MicroBatcher:
    """Collects single events within an event-loop turn and scores them together.

    ``record(outcome, started, received_at)`` is called once per scored batch (lake rows,
    shadow work); it runs on the event loop, like the scoring.
    """

    def __init__(self, record: Recorder) -> None:
        self._record = record
        self._pending: list[_Pending] = []
        self._scheduled = False
        self.batches = 0
        self.events = 0
        self.in_flight = 0

    async def submit(
        self,
        service: ScoringService,
        intent: Mapping[str, Any],
        features: FeatureTable,
        event_id: str,
        started: float,
        received_at: float,
    ) -> ScoreResult:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ScoreResult] = loop.create_future()
        self._pending.append(
            _Pending(service, intent, features, event_id, started, received_at, future)
        )
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        items, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        self._scheduled = bool(self._pending)
        if self._scheduled:
            asyncio.get_running_loop().call_soon(self._flush)
        groups: dict[tuple[int, tuple[str, ...]], list[_Pending]] = {}
        for item in items:
            if item.future.done():  # the client went away
                continue
            key = (id(item.service), tuple(item.features))
            groups.setdefault(key, []).append(item)
        for group in groups.values():
            self._score(group)

    def _score(self, group: list[_Pending]) -> None:
        service = group[0].service
        if service.snapshot.remote:
            # Remote experts wait on the network: score in a worker thread so the event
            # loop keeps taking requests (and batching them) meanwhile.
            loop = asyncio.get_running_loop()
            self.in_flight += 1

            budget = service.snapshot.config.spec.server.request_budget_ms
            deadline = None if budget is None else min(g.started for g in group) + budget / 1e3

            def work() -> None:
                token = REQUEST_DEADLINE.set(deadline)
                try:
                    done = _compute(group)
                finally:
                    REQUEST_DEADLINE.reset(token)
                loop.call_soon_threadsafe(self._settle, done)

            loop.run_in_executor(None, work)
            return
        self._apply(_compute(group))

    def _settle(self, done: list[tuple[list[_Pending], LiveOutcome | BaseException]]) -> None:
        self.in_flight -= 1
        self._apply(done)

    def _apply(self, done: list[tuple[list[_Pending], LiveOutcome | BaseException]]) -> None:
        for items, outcome in done:
            if isinstance(outcome, BaseException):
                for item in items:
                    if not item.future.done():
                        item.future.set_exception(outcome)
            else:
                self._deliver(items, outcome)

    def _deliver(self, group: list[_Pending], outcome: LiveOutcome) -> None:
        self.batches += 1
        self.events += len(group)
        for item, result in zip(group, outcome.results, strict=True):
            if not item.future.done():
                item.future.set_result(result)
        self._record(outcome, [g.started for g in group], [g.received_at for g in group])


def _compute(group: list[_Pending]) -> list[tuple[list[_Pending], LiveOutcome | BaseException]]:
    """Score a group as one batch; if that fails, each event alone, so an error reaches only
    its own request. Touches no future: safe in a worker thread."""
    service = group[0].service
    try:
        outcome = service.score_live(
            [g.intent for g in group],
            group[0].features
            if len(group) == 1
            else FeatureTable.concat([g.features for g in group]),
            event_ids=[g.event_id for g in group],
        )
        return [(group, outcome)]
    except Exception as e:
        if len(group) == 1:
            return [(group, e)]
    done: list[tuple[list[_Pending], LiveOutcome | BaseException]] = []
    for item in group:
        try:
            one = item.service.score_live([item.intent], item.features, event_ids=[item.event_id])
            done.append(([item], one))
        except Exception as e:
            done.append(([item], e))
    return done
