"""Shadow scoring off the response path (ARCHITECTURE invariant 3).

The client has its answer before any shadow runs. Shadow work takes one of two lanes:

* **Models to run** (a shadow-only model, maybe slow, maybe remote, maybe hanging): a
  bounded queue served by one worker thread. A shadow that raises is counted, one that
  hangs or is slow only fills the queue, and a full queue sheds new work (counted per
  predictor) instead of growing memory or slowing live requests.
* **Transforms only** (every model the shadows use already ran for the live answer, as
  for a single-model shadow of an ensemble member): a few microseconds of numpy per event
  that cannot hang. Handing them to the thread cost more than the work — a thread wake-up
  and a GIL hand-off per request, and on a busy core the event loop then waits for the GIL
  behind the worker (p99 at 1,000 req/s went from ~3 ms to ~12 ms, ``benchmarks/RESULTS.md``
  section 5). They run on the event loop instead, in a callback queued *after* the
  responses' own callbacks, so no answer waits for them; small jobs only (the app sends
  big batches to the thread), and bounded and shed like the thread's queue.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from muse.service import DeferredShadows, ScoreResult
from muse.threads import yield_to_requests

__all__ = ["ShadowJob", "ShadowRunner"]

log = logging.getLogger("muse.serving.shadows")


@dataclass(frozen=True, slots=True)
class ShadowJob:
    """Shadow work of one request, with when it arrived (for the lake's timestamps)."""

    work: DeferredShadows
    received_at: float


class ShadowRunner:
    """Runs :class:`ShadowJob` s: on a worker thread, or on the event loop when light.

    ``on_done(job, results, seconds)`` receives every event's full result (live and
    shadows); ``on_shed(predictor, n_events)`` and ``on_failed(predictor, n_events)``
    count what was lost. Callbacks run on the thread that ran the job: the worker, or
    the event loop for light jobs (see the module docstring). Each lane holds at most
    ``capacity`` jobs.
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
        self._capacity = capacity
        self._light: deque[ShadowJob] = deque()
        self._drain_scheduled = False

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="muse-shadows", daemon=True)
            self._thread.start()

    def submit(self, job: ShadowJob, *, light: bool = False) -> bool:
        """Queue ``job``; False (and counted as shed) when its lane is full.

        ``light`` (transforms only, see the module docstring): run it on the calling
        thread's event loop, after the callbacks already queued there. Without a running
        loop it goes to the worker thread like any job.
        """
        if light:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                light = False
            else:
                if len(self._light) >= self._capacity:
                    self._shed(job)
                    return False
                self._light.append(job)
                if not self._drain_scheduled:
                    self._drain_scheduled = True
                    loop.call_soon(self.drain_light)
                return True
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self._shed(job)
            return False
        return True

    def _shed(self, job: ShadowJob) -> None:
        for predictor in job.work.predictors:
            self._on_shed(predictor, job.work.n_events)

    def drain_light(self) -> None:
        """Run every queued light job now, on the calling thread.

        The event loop calls it (scheduled by :meth:`submit`); :meth:`stop` calls it too,
        from whichever thread stops the runner, for what is left. Each job runs once: a
        ``deque.popleft`` is atomic, so two threads draining at once share the jobs.
        """
        self._drain_scheduled = False
        while True:
            try:
                job = self._light.popleft()
            except IndexError:
                return
            self._run(job)

    @property
    def pending(self) -> int:
        """Jobs queued and not started, both lanes."""
        return self._queue.qsize() + len(self._light)

    def stop(self, timeout: float) -> bool:
        """Run what is queued (up to ``timeout``), then stop; True if everything ran."""
        self.drain_light()
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
        yield_to_requests()
        while True:
            job = self._queue.get()
            if job is None:
                return
            self._run(job)

    def _run(self, job: ShadowJob) -> None:
        started = time.perf_counter()
        try:
            results = job.work.run()
        except Exception:  # run() never raises by contract; never let the thread die
            log.exception("shadow job failed")
            for predictor in job.work.predictors:
                self._on_failed(predictor, job.work.n_events)
            return
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
