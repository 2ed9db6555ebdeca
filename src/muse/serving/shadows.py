"""Shadow scoring off the response path (ARCHITECTURE invariant 3).

The client has its answer before any shadow runs. Deferred shadow work goes into a
bounded queue served by one worker thread: a shadow that raises is counted, one that hangs
or is slow only fills the queue, and a full queue sheds new work (counted per predictor)
instead of growing memory or slowing live requests. Models release the GIL while they run,
so the worker overlaps with the event loop.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from muse.service import DeferredShadows, ScoreResult

__all__ = ["ShadowJob", "ShadowRunner"]

log = logging.getLogger("muse.serving.shadows")


@dataclass(frozen=True, slots=True)
class ShadowJob:
    """Shadow work of one request, with when it arrived (for the lake's timestamps)."""

    work: DeferredShadows
    received_at: float


class ShadowRunner:
    """A bounded queue of :class:`ShadowJob` and the thread that runs them.

    ``on_done(job, results, seconds)`` receives every event's full result (live and
    shadows); ``on_shed(predictor, n_events)`` and ``on_failed(predictor, n_events)``
    count what was lost. Callbacks run on the worker thread.
    """

    def __init__(
        self,
        capacity: int,
        on_done: Callable[[ShadowJob, list[ScoreResult], float], None],
        on_shed: Callable[[str, int], None],
        on_failed: Callable[[str, int], None],
    ) -> None:
        self._queue: queue.Queue[ShadowJob | None] = queue.Queue(maxsize=capacity)
        self._on_done = on_done
        self._on_shed = on_shed
        self._on_failed = on_failed
        self._thread: threading.Thread | None = None
        self.completed = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="muse-shadows", daemon=True)
            self._thread.start()

    def submit(self, job: ShadowJob) -> bool:
        """Queue ``job``; False (and counted as shed) when the queue is full."""
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            for predictor in job.work.predictors:
                self._on_shed(predictor, job.work.n_events)
            return False
        return True

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def stop(self, timeout: float) -> bool:
        """Run what is queued (up to ``timeout``), then stop; True if everything ran."""
        if self._thread is None:
            return True
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._queue.put(None, timeout=max(0.0, deadline - time.monotonic()))
                break
            except queue.Full:
                if time.monotonic() >= deadline:
                    break
        self._thread.join(max(0.0, deadline - time.monotonic()))
        done = not self._thread.is_alive()
        if not done:
            log.warning("shadow worker still busy at shutdown; %d job(s) abandoned", self.pending)
        self._thread = None
        return done

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            started = time.perf_counter()
            try:
                results = job.work.run()
            except Exception:  # run() never raises by contract; never let the thread die
                log.exception("shadow job failed")
                for predictor in job.work.predictors:
                    self._on_failed(predictor, job.work.n_events)
                continue
            elapsed = time.perf_counter() - started
            failed: dict[str, int] = {}
            for result in results:
                for predictor in result.shadow_errors:
                    failed[predictor] = failed.get(predictor, 0) + 1
            for predictor, n in failed.items():
                self._on_failed(predictor, n)
            try:
                self._on_done(job, results, elapsed)
            except Exception:
                log.exception("recording shadow results failed")
            self.completed += 1
