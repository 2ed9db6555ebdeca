"""Chaos under load: one dependency broken while a bounded load runs, with the score lake on.

Shared by ``tests/e2e/test_chaos.py`` (each case for a few seconds, in ``make test``) and
``benchmarks/chaos.py`` (longer runs whose figures are recorded). Everything is real: the
server is ``muse serve`` in its own process, Redis and Triton are the real servers, the lake
is Parquet on disk and its fault is the kernel refusing writes.

A run: four client threads send single events for ``seconds``; after a third of it the
case's dependency breaks, after another third it is repaired, and the last third shows the
recovery. Each event either *needs* the broken part (a card whose features only Redis has,
a tenant whose predictor has an expert on Triton) or not; in the lake and reload cases no
answer needs the broken part. The report says what failed and why, how long recovery took
after the repair, and whether every acknowledged event reached the lake exactly once (when
the lake itself broke: after the writer retried, and otherwise counted as lost).

Cases:

- ``redis``: the feature store's Redis is killed (SIGKILL, by PID) and restarted on its port;
- ``triton``: the Triton server of a remote expert is killed and restarted;
- ``slow-model``: a proxy in front of Triton holds every answer 5× the request budget
  (``server.request_budget_ms``), then stops delaying;
- ``lake``: the lake's folder turns read-only (a read-only bind mount, in a mount namespace
  of the server's own: no privilege needed, nothing outside the server sees it), then
  writable again, within the writer's ``retry_for_s``;
- ``sighup``: the config is reloaded by ``SIGHUP`` every 100 ms for the whole run.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self

import httpx
import numpy as np
import pyarrow.dataset as ds

from tests.e2e.support import SAMPLE, Deployment, MuseProcess, event, metric_value
from tests.e2e.test_feature_store import LEAN, PREFIX, STORE_FEATURES, use_redis
from tests.redis_server import RedisServer, hset_rows

__all__ = ["CASES", "ChaosReport", "DelayProxy", "run_case"]

Case = Literal["redis", "triton", "slow-model", "lake", "sighup"]
CASES: tuple[Case, ...] = ("redis", "triton", "slow-model", "lake", "sighup")

CARDS = [f"card-{i:05d}" for i in range(200)]
#: Request budget of the slow-model case; the proxy then delays answers by 5× this.
BUDGET_MS = 100.0
#: Requests per client thread at most (the load is bounded in count as well as in time).
MAX_PER_WORKER = 200_000
WORKERS = 4


@dataclass(frozen=True)
class Call:
    """One request of the load: when it was sent, whether it needed the broken part, and
    what came back (status 0: no HTTP answer, ``code`` then names the exception)."""

    sent: float
    needs: bool
    status: int
    code: str
    elapsed: float
    event_id: str


@dataclass
class ChaosReport:
    """What one run measured (times in seconds, relative to the run's start)."""

    case: Case
    seconds: float
    fault: str
    needs: str
    calls: list[Call]
    broken_at: float
    repaired_at: float
    #: From the repair to the first success of what needed the broken part (the lake case:
    #: to the first rows written again). None: never within the run.
    recovery_s: float | None
    acknowledged: set[str] = field(default_factory=set)
    #: Distinct acknowledged events with a live row in the lake.
    written: int = 0
    written_twice: int = 0
    written_unacknowledged: int = 0
    #: Rows in the lake of any role, and the server's own count at its graceful stop.
    lake_rows: int = 0
    server_written: int | None = None
    server_dropped: int | None = None
    server_lost: int | None = None
    #: Attempts the server's lake writer made to write a failed file again.
    write_retries: int = 0
    reloads: int = 0

    @property
    def sent(self) -> int:
        return len(self.calls)

    def failures(self, *, needs: bool) -> Counter[str]:
        """Failed calls of one kind by ``"<status> <code>"``."""
        return Counter(
            f"{c.status} {c.code}" for c in self.calls if c.needs == needs and c.status != 200
        )

    def failed_outside_fault(self) -> int:
        """Failures of needing calls sent before the break or after recovery (with slack for
        requests in flight at either edge: 0.5 s before, 1 s after)."""
        start = self.broken_at - 0.5
        end = self.repaired_at + (self.recovery_s if self.recovery_s is not None else 0) + 1.0
        return sum(
            1 for c in self.calls if c.needs and c.status != 200 and not (start <= c.sent <= end)
        )

    def failed_elapsed(self) -> list[float]:
        """Durations of the needing calls that failed."""
        return sorted(c.elapsed for c in self.calls if c.needs and c.status != 200)

    def other_p99_ms(self, during: bool) -> float | None:
        """p99 latency of the calls that did not need the broken part, before the break or
        while it was broken."""
        window = (self.broken_at, self.repaired_at) if during else (0.0, self.broken_at)
        xs = [
            c.elapsed
            for c in self.calls
            if not c.needs and c.status == 200 and window[0] <= c.sent < window[1]
        ]
        return float(np.percentile(xs, 99) * 1e3) if xs else None

    def lines(self) -> list[str]:
        """The report as printed by ``benchmarks/chaos.py``."""
        out = [
            f"{self.case}: {self.sent:,} requests in {self.seconds:.0f} s; {self.fault} "
            f"from {self.broken_at:.1f} s to {self.repaired_at:.1f} s",
        ]
        tally = Counter(
            f"{'needs' if c.needs else 'other'} {c.status} {c.code}".rstrip() for c in self.calls
        )
        for key, n in sorted(tally.items()):
            out.append(f"  {key:<45} {n:>7,}")
        out.append(f"  events that need the broken part: {self.needs}")
        out.append(
            f"  failures of events not needing it: {sum(self.failures(needs=False).values())}; "
            f"of needing events outside the fault: {self.failed_outside_fault()}"
        )
        slow = self.failed_elapsed()
        if slow:
            out.append(
                f"  a failed needing event took: median {np.median(slow) * 1e3:.1f} ms, "
                f"max {slow[-1] * 1e3:.1f} ms"
            )
        before, during = self.other_p99_ms(False), self.other_p99_ms(True)
        if before is not None and during is not None:
            out.append(f"  p99 of the other events: {before:.2f} ms before, {during:.2f} ms during")
        if self.case == "sighup":
            out.append(f"  SIGHUP reloads sent: {self.reloads}")
        else:
            out.append(
                f"  recovery after the repair: {self.recovery_s:.3f} s"
                if self.recovery_s is not None
                else "  no recovery within the run"
            )
        out.append(
            f"  lake: {len(self.acknowledged):,} acknowledged, {self.written:,} of them written, "
            f"{self.written_twice} written twice, {self.written_unacknowledged} written but "
            f"not acknowledged; server: {self.server_written} rows written, "
            f"{self.server_dropped} dropped, {self.server_lost} lost (counted), "
            f"{self.write_retries} write retries; {self.lake_rows:,} rows in the files"
        )
        return out


class DelayProxy:
    """A TCP proxy on 127.0.0.1 that holds every chunk the upstream sends back for
    ``delay_s`` (0: a plain relay), changeable while it runs.

    Written here because a delaying proxy is forty lines of asyncio, while the usual tool
    (Toxiproxy) is neither in Debian's packages nor on PyPI.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.delay_s = 0.0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._relay, "127.0.0.1", 0), self._loop
        ).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        if self._server is not None:
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            self._pump(reader, up_writer, delayed=False),
            self._pump(up_reader, writer, delayed=True),
        )

    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, *, delayed: bool
    ) -> None:
        try:
            while data := await src.read(65_536):
                if delayed and self.delay_s > 0:
                    await asyncio.sleep(self.delay_s)
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            dst.close()


class ReadOnlyLake:
    """The server runs in a mount namespace of its own in which its lake folder is a bind
    mount of itself; :meth:`set` remounts that mount read-only or writable.

    The kernel then refuses writes to the folder (EROFS) even for root, which ``chmod`` would
    not. A user namespace makes this work without privilege, and the mount is seen by the
    server alone: it vanishes with the server, and the files it wrote stay on disk.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def wrapper(self) -> list[str]:
        script = 'mount --bind "$0" "$0" && exec "$@"'
        return [
            "unshare", "--user", "--map-root-user", "--mount", "--propagation", "private",
            "sh", "-c", script, str(self.folder),
        ]  # fmt: skip

    def set(self, pid: int, *, read_only: bool) -> None:
        """Remount in the namespace of ``pid``; retried while a file is open for writing
        (the kernel refuses to make a mount read-only under an open writer: EBUSY)."""
        mode = "ro" if read_only else "rw"
        command = [
            "nsenter", "-t", str(pid), "--user", "--mount", "--preserve-credentials",
            "mount", "-o", f"remount,bind,{mode}", str(self.folder),
        ]  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"remount {mode} failed: {done.stderr.strip()}")
            time.sleep(0.01)


class _Load:
    """``WORKERS`` threads sending single events until stopped (or ``MAX_PER_WORKER`` each)."""

    def __init__(
        self,
        url: str,
        needs: Callable[[str, int], dict[str, Any]] | None,
        other: Callable[[str, int], dict[str, Any]],
        start: float,
    ) -> None:
        self.url = url
        self.needs = needs
        self.other = other
        self.start = start
        self.stop_event = threading.Event()
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(w,), daemon=True) for w in range(WORKERS)
        ]

    def __enter__(self) -> Self:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        for t in self._threads:
            t.join(30)

    def _run(self, worker: int) -> None:
        with httpx.Client(base_url=self.url, timeout=5.0) as client:
            for i in range(MAX_PER_WORKER):
                if self.stop_event.is_set():
                    return
                eid = f"w{worker}-{i}"
                needs = self.needs is not None and i % 2 == 0
                body = self.needs(eid, i) if needs and self.needs else self.other(eid, i)
                sent = time.monotonic()
                status, code = 0, ""
                try:
                    r = client.post("/v1/score", json=body)
                    status = r.status_code
                    if status != 200:
                        code = r.json()["error"]["code"]
                except httpx.HTTPError as e:
                    code = type(e).__name__
                call = Call(sent - self.start, needs, status, code, time.monotonic() - sent, eid)
                with self._lock:
                    self.calls.append(call)
                time.sleep(0.002)

    def first_success_after(self, t: float, timeout: float) -> float | None:
        """Seconds from ``t`` (run time) to the first success of a needing call sent after it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                ok = [c.sent for c in self.calls if c.needs and c.status == 200 and c.sent >= t]
            if ok:
                return min(ok) - t
            time.sleep(0.02)
        return None


def _lake_written(url: str) -> float:
    return metric_value(httpx.get(f"{url}/metrics", timeout=5).text, "muse_lake_written_rows_total")


_CLOSED = re.compile(
    r"score lake \S+ closed: (\d+) rows in \d+ files written, (\d+) dropped, (\d+) lost"
)


def run_case(case: Case, seconds: float, root: Path) -> ChaosReport:
    """Run ``case`` for ``seconds`` (at least 6) with its files under ``root``; every process
    it starts is stopped by PID before it returns, pass or fail."""
    if case not in CASES:
        raise ValueError(f"unknown chaos case {case!r}; choose from {', '.join(CASES)}")
    seconds = max(seconds, 6.0)
    lake = root / "lake"
    lake.mkdir(parents=True)
    with contextlib.ExitStack() as cleanup:
        needs: Callable[[str, int], dict[str, Any]] | None = None
        other: Callable[[str, int], dict[str, Any]] = lambda eid, i: event(eid, "bank1")  # noqa: E731
        wrapper: Sequence[str] = ()
        break_: Callable[[], None]
        repair: Callable[[], None]
        if case in ("redis", "lake", "sighup"):
            d = Deployment.copy_quickstart(root / "deploy")
        if case == "redis":
            redis = RedisServer(root / "redis").start()
            cleanup.callback(redis.stop)
            use_redis(d, redis)
            rows = {c: {f: SAMPLE[f] for f in STORE_FEATURES} for c in CARDS}
            hset_rows(redis, PREFIX, rows)

            def needs(eid: str, i: int) -> dict[str, Any]:
                return event(eid, "bank1", LEAN, card_id=CARDS[i % len(CARDS)])

            fault, needing = "Redis killed", "a card whose features only Redis has"
            break_ = redis.kill

            def repair() -> None:
                redis.start()
                hset_rows(redis, PREFIX, rows)
        elif case in ("triton", "slow-model"):
            from tests.modelservers.support import start as start_model_server
            from tests.modelservers.test_remote_e2e import remote_deployment

            triton = start_model_server("triton", root / "triton")
            cleanup.callback(triton.stop)
            url = triton.http_url
            if case == "slow-model":
                proxy = DelayProxy(triton.http_port).start()
                cleanup.callback(proxy.stop)
                url = proxy.url
            d = remote_deployment(root / "deploy", url, remote=True)

            def needs(eid: str, i: int) -> dict[str, Any]:
                return event(eid, "bank2")

            needing = "tenant bank2, whose predictor has an expert on Triton"
            if case == "triton":
                fault = "Triton killed"

                def break_() -> None:
                    triton.kill()

                def repair() -> None:
                    triton.restart()
            else:
                d.set_server(request_budget_ms=BUDGET_MS)
                fault = f"answers delayed {5 * BUDGET_MS / 1e3:g} s (budget {BUDGET_MS:g} ms)"

                def break_() -> None:
                    proxy.delay_s = 5 * BUDGET_MS / 1e3

                def repair() -> None:
                    proxy.delay_s = 0.0
        elif case == "lake":
            with d.editing() as doc:  # every lake row is then one acknowledged event
                doc["routing"]["shadowRules"] = []
            read_only = ReadOnlyLake(lake)
            wrapper = read_only.wrapper()
            fault, needing = "lake folder read-only", "none (the lake is off the request path)"

            def break_() -> None:
                read_only.set(server.pid, read_only=True)

            def repair() -> None:
                read_only.set(server.pid, read_only=False)
        else:
            fault, needing = "SIGHUP every 100 ms", "none"

            def break_() -> None:
                pass

            repair = break_

        d.set_lake(str(lake), flush_interval_s=1)
        server = MuseProcess(d.config, root / "serve.log", wrapper=wrapper).start()
        cleanup.callback(server.stop)
        started = time.monotonic()
        recovery: float | None = None
        reloads = 0
        with _Load(server.url, needs, other, started) as load:
            time.sleep(seconds / 3)
            broken_at = time.monotonic() - started
            if case == "sighup":
                while time.monotonic() - started < seconds:
                    server.signal(signal.SIGHUP)
                    reloads += 1
                    time.sleep(0.1)
            else:
                break_()
                time.sleep(max(0.0, started + 2 * seconds / 3 - time.monotonic()))
            if case == "lake":
                before = _lake_written(server.url)
            repair()
            repaired_at = time.monotonic() - started
            if case == "lake":
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline:
                    if _lake_written(server.url) > before:
                        recovery = time.monotonic() - started - repaired_at
                        break
                    time.sleep(0.02)
            elif needs is not None:
                recovery = load.first_success_after(repaired_at, timeout=seconds)
            time.sleep(max(0.0, started + max(seconds, repaired_at + 2.0) - time.monotonic()))
        metrics = httpx.get(f"{server.url}/metrics", timeout=5).text
        output = server.stop_gracefully()
        calls = sorted(load.calls, key=lambda c: c.sent)

    report = ChaosReport(
        case=case,
        seconds=seconds,
        fault=fault,
        needs=needing,
        calls=calls,
        broken_at=broken_at,
        repaired_at=repaired_at,
        recovery_s=recovery,
        acknowledged={c.event_id for c in calls if c.status == 200},
        write_retries=int(metric_value(metrics, "muse_lake_write_retries_total")),
        reloads=reloads,
    )
    if m := _CLOSED.search(output):
        report.server_written, report.server_dropped, report.server_lost = map(int, m.groups())
    table = ds.dataset(str(lake), format="parquet", partitioning="hive").to_table(
        columns=["event_id", "role"]
    )
    report.lake_rows = table.num_rows
    live = Counter(
        e
        for e, r in zip(table["event_id"].to_pylist(), table["role"].to_pylist(), strict=True)
        if r == "live"
    )
    report.written = sum(1 for e in report.acknowledged if e in live)
    report.written_twice = sum(1 for n in live.values() if n > 1)
    report.written_unacknowledged = sum(1 for e in live if e not in report.acknowledged)
    return report
