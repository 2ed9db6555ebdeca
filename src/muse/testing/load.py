"""A bounded concurrent load of single and batch score requests, every answer recorded.

For fleet tests and benchmarks: ``threads`` clients, each with its own keep-alive
connection, send single events and batches for several tenants until :meth:`stop`, a
request count or a duration is reached (always bounded). Each request is recorded with
its events, status, the version header that scored it and when it was sent and
answered, so a test can count failures, measure the mixed-version window and check the
lake holds every acknowledged event exactly once.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = ["Answer", "ScoreLoad", "mixed_window"]


@dataclass(frozen=True, slots=True)
class Answer:
    """One request of the load and how it ended (status 0: no HTTP answer)."""

    event_ids: tuple[str, ...]
    status: int
    version: str | None
    sent: float
    answered: float
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200


class ScoreLoad:
    """Score requests against ``url`` from ``threads`` clients (see the module doc)."""

    def __init__(
        self,
        url: str,
        features: Mapping[str, float],
        *,
        tenants: Sequence[str] = ("bank1", "bank2", "fintech3"),
        threads: int = 4,
        batch_every: int = 4,
        batch_size: int = 5,
        pause_s: float = 0.002,
        max_requests: int = 200_000,
        max_seconds: float = 300.0,
        headers: Mapping[str, str] | None = None,
        prefix: str = "ev",
    ) -> None:
        self.url = url.rstrip("/")
        self.features = dict(features)
        self.tenants = tuple(tenants)
        self.threads = threads
        self.batch_every = batch_every
        self.batch_size = batch_size
        self.pause_s = pause_s
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.headers = dict(headers or {})
        self.prefix = prefix
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._count = itertools.count()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []

    def __enter__(self) -> ScoreLoad:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        for i in range(self.threads):
            t = threading.Thread(target=self._run, args=(i, deadline), daemon=True)
            self._workers.append(t)
            t.start()

    def stop(self, timeout: float = 30.0) -> list[Answer]:
        """Stop sending, wait for the requests in flight; every answer so far."""
        self._stop.set()
        for t in self._workers:
            t.join(timeout)
        return self.snapshot()

    def snapshot(self) -> list[Answer]:
        with self._lock:
            return list(self.answers)

    def wait_for(self, n: int, timeout: float = 30.0) -> None:
        """Block until ``n`` more requests were answered (bounded by ``timeout``)."""
        target = len(self.snapshot()) + n
        deadline = time.monotonic() + timeout
        while len(self.snapshot()) < target and time.monotonic() < deadline:
            time.sleep(0.01)

    def _run(self, worker: int, deadline: float) -> None:
        with httpx.Client(base_url=self.url, timeout=10.0, headers=self.headers) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                n = next(self._count)
                if n >= self.max_requests:
                    return
                self._one(client, n)
                if self.pause_s:
                    time.sleep(self.pause_s)

    def _one(self, client: httpx.Client, n: int) -> None:
        tenant = self.tenants[n % len(self.tenants)]
        size = self.batch_size if self.batch_every and n % self.batch_every == 0 else 1
        ids = tuple(f"{self.prefix}-{n}-{k}" for k in range(size))
        events = [
            {"event_id": i, "intent": {"tenant": tenant}, "features": self.features} for i in ids
        ]
        body: Any = events[0] if size == 1 else {"events": events}
        sent = time.time()
        try:
            r = client.post("/v1/score", json=body)
            answer = Answer(
                ids,
                r.status_code,
                r.headers.get("x-muse-config-version"),
                sent,
                time.time(),
                "" if r.status_code == 200 else r.text[:300],
            )
        except httpx.HTTPError as e:
            answer = Answer(ids, 0, None, sent, time.time(), f"{type(e).__name__}: {e}")
        with self._lock:
            self.answers.append(answer)


def mixed_window(answers: Sequence[Answer], old: str, new: str) -> float:
    """Seconds during which both ``old`` and ``new`` answered: from the first request
    answered by ``new`` to the last one answered by ``old`` (0 when they never overlap).

    Measured on send times of the later and answer times of the earlier, so a request
    that was slow on the old version does not shrink the window.
    """
    first_new = min((a.sent for a in answers if a.version == new), default=None)
    last_old = max((a.answered for a in answers if a.version == old), default=None)
    if first_new is None or last_old is None:
        return 0.0
    return max(0.0, last_old - first_new)
