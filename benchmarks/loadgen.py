"""A small HTTP/1.1 load generator in pure Python, for the server benchmarks in this folder.

What it measures: how many requests per second an HTTP server answers, and how long each
answer takes, over persistent (keep-alive) connections on 127.0.0.1. Why it exists: httpx
costs well over 100 µs of client CPU per request, so a client built on it measures itself,
not the server. This one drives non-blocking sockets directly from one thread (epoll or
select, no event loop framework, no per-request objects), sends a request prepared once as
bytes and parses answers with a few ``bytes.find`` calls (``Content-Length``, chunked, or
read-until-close bodies), so it costs a few µs of CPU per request and a single core of it
outruns one Python server process by a wide margin (run ``--selftest`` to check on this
machine; it reports the generator's own CPU per request and the ceiling that implies).

Two modes:

* :func:`run_closed` — ``concurrency`` connections, each sending its next request when the
  previous answer has arrived (throughput at a fixed number of requests in flight);
* :func:`run_open` — requests scheduled on a timetable at ``rate_per_s`` regardless of the
  answers, each timed from its *scheduled* send time, so a stalled server is charged for
  every request it delayed (no coordinated omission). A pool of connections carries them;
  a request whose time has come while every connection is busy waits for one, and that
  wait counts in its latency.

Waiting for sockets normally sleeps (epoll / select); ``spin`` / ``spin_s`` busy-poll
instead, because on a VM waking an idle vCPU can take longer than a server's answer.

Both stop at ``duration_s`` or ``max_requests``, whichever comes first, then wait at most
``drain_s`` for answers in flight. Latencies go into a preallocated array of doubles; the
:class:`Result` gives counts, throughput and p50 / p99 / p99.9 / max over the 2xx answers.
``errors`` counts non-2xx answers, socket and protocol errors, and requests left
unanswered (or, open loop, unsent) when the drain ends.

Command line (prints the :class:`Result` as one JSON object; ``--cpu`` pins the process)::

    python benchmarks/loadgen.py --port 8000 --path /v1/score --body '{"a": 1}' \\
        --header 'Content-Type: application/json' --concurrency 16 --duration 5 --cpu 1
    python benchmarks/loadgen.py --port 8000 --rate 1000 --duration 5 --cpu 1   # open loop
    python benchmarks/loadgen.py --selftest    # ceiling against a trivial asyncio server

The helpers at the bottom (free port, CPU time of a process tree from ``/proc``, stopping a
process tree by PID) are shared with ``asgi_stack.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import cast

import numpy as np

__all__ = [
    "Result",
    "build_request",
    "busy_seconds",
    "cpu_ticks",
    "descendants",
    "free_port",
    "is_alive",
    "parse_response",
    "pin_to_cpu",
    "proc_cpu_seconds",
    "run_closed",
    "run_open",
    "steal_fraction",
    "stop_process_tree",
    "wait_http_ready",
]

MAX_HEADER_BYTES = 65_536
RECV_BYTES = 262_144
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Result:
    """Outcome of one load run; latencies are over 2xx answers only, in milliseconds."""

    mode: str  # "closed" or "open"
    concurrency: int  # connections (closed: requests in flight; open: pool size)
    rate_per_s: float  # open loop target rate; 0 for closed loop
    count: int  # 2xx answers
    errors: int  # non-2xx, socket/protocol errors, unanswered or unsent at the end
    sent: int
    elapsed_s: float  # start to last answer (or end of drain)
    throughput_per_s: float  # 2xx answers per second of elapsed
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    mean_ms: float
    gen_cpu_s: float  # CPU time of the generator itself during the run
    p99_send_lag_ms: float  # open loop: delay of actual sends behind the schedule, p99
    max_send_lag_ms: float  # open loop: worst such delay (generator or scheduler stalls)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Result:
        return cls(**json.loads(text))


def build_request(
    host: str,
    port: int,
    path: str,
    body: bytes,
    headers: Sequence[tuple[str, str]] = (),
    method: str | None = None,
) -> bytes:
    """One HTTP/1.1 keep-alive request as bytes (POST when there is a body, else GET)."""
    verb = method or ("POST" if body else "GET")
    lines = [f"{verb} {path} HTTP/1.1", f"Host: {host}:{port}"]
    if body or verb in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    lines.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def parse_response(buf: bytes) -> tuple[int, int, bool] | None:
    """Parse the response at the start of ``buf``: ``(status, end, close)`` or ``None``.

    ``None`` means incomplete (read more). ``end`` is the offset just past the response, or
    -1 when the body has neither ``Content-Length`` nor chunked encoding and so runs to
    the end of the connection. ``close`` is true when the server will close the connection.
    Raises :class:`ValueError` on something that is not an HTTP/1.x response.
    """
    hend = buf.find(b"\r\n\r\n")
    if hend < 0:
        if len(buf) > MAX_HEADER_BYTES:
            raise ValueError("response header too large")
        return None
    if buf[:7] != b"HTTP/1.":
        raise ValueError(f"not an HTTP/1.x response: {buf[:20]!r}")
    status = int(buf[9:12])
    head = buf[:hend].lower()
    body_start = hend + 4
    if buf[7:8] == b"0":  # HTTP/1.0: closes unless it says keep-alive
        close = b"\r\nconnection: keep-alive" not in head
    else:
        close = b"\r\nconnection: close" in head
    if status < 200 or status in (204, 304):
        return status, body_start, close
    i = head.find(b"\r\ncontent-length:")
    if i >= 0:
        j = head.find(b"\r\n", i + 17)
        end = body_start + int(head[i + 17 : j if j >= 0 else hend])
        return (status, end, close) if len(buf) >= end else None
    i = head.find(b"\r\ntransfer-encoding:")
    if i >= 0:
        j = head.find(b"\r\n", i + 20)
        if b"chunked" in head[i + 20 : j if j >= 0 else hend]:
            pos = body_start
            while True:
                line_end = buf.find(b"\r\n", pos)
                if line_end < 0:
                    return None
                size = int(buf[pos:line_end].split(b";", 1)[0], 16)
                if size == 0:
                    # last chunk: optional trailer fields, then an empty line
                    t = buf.find(b"\r\n\r\n", line_end)
                    return None if t < 0 else (status, t + 4, close)
                pos = line_end + 2 + size + 2
                if pos > len(buf):
                    return None
    return status, -1, True


class _Conn:
    """One keep-alive connection: socket, unparsed bytes, send time of its request."""

    __slots__ = ("buf", "eof_status", "fd", "index", "sched", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.buf = b""
        self.eof_status = 0  # status of a response whose body runs to end of connection
        self.sched = 0.0  # closed loop: actual send time; open loop: scheduled send time
        self.index = 0  # open loop: the number of the request in flight

    def feed(self, data: bytes) -> tuple[int, bool] | None:
        """Add received bytes (``b""`` = EOF); ``(status, close)`` once the answer is whole."""
        if not data:
            if self.eof_status:
                status, self.eof_status = self.eof_status, 0
                return status, True
            raise ConnectionError("connection closed by the server")
        buf = self.buf + data if self.buf else data
        if self.eof_status:
            self.buf = buf
            return None
        while True:
            parsed = parse_response(buf)
            if parsed is None:
                self.buf = buf
                return None
            status, end, close = parsed
            if status < 200:  # interim answer (100 Continue): the real one follows
                buf = buf[end:]
                continue
            if end < 0:
                self.eof_status = status
                self.buf = b""
                return None
            self.buf = buf[end:]
            return status, close

    def send(self, req: bytes) -> None:
        n = self.sock.send(req)
        if n < len(req):  # rare for a few hundred bytes: finish it blocking, bounded
            self.sock.settimeout(2.0)
            try:
                self.sock.sendall(req[n:])
            finally:
                self.sock.setblocking(False)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _connect(host: str, port: int, timeout: float) -> _Conn:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    return _Conn(sock)


def _summarise(
    mode: str,
    concurrency: int,
    rate: float,
    lat: array[float],
    n_ok: int,
    n_err: int,
    sent: int,
    elapsed: float,
    cpu: float,
    lags: array[float] | None = None,
) -> Result:
    if n_ok:
        values = np.frombuffer(lat, dtype=np.float64, count=n_ok) * 1e3
        p50, p99, p999 = (float(v) for v in np.percentile(values, [50.0, 99.0, 99.9]))
        vmax, mean = float(values.max()), float(values.mean())
    else:
        p50 = p99 = p999 = vmax = mean = float("nan")
    lag_ms = (
        np.frombuffer(lags, dtype=np.float64, count=min(sent, len(lags))) * 1e3
        if lags is not None
        else np.empty(0)
    )
    return Result(
        mode=mode,
        concurrency=concurrency,
        rate_per_s=rate,
        count=n_ok,
        errors=n_err,
        sent=sent,
        elapsed_s=elapsed,
        throughput_per_s=n_ok / elapsed if elapsed > 0 else 0.0,
        p50_ms=p50,
        p99_ms=p99,
        p999_ms=p999,
        max_ms=vmax,
        mean_ms=mean,
        gen_cpu_s=cpu,
        p99_send_lag_ms=float(np.percentile(lag_ms, 99.0)) if lag_ms.size else 0.0,
        max_send_lag_ms=float(lag_ms.max()) if lag_ms.size else 0.0,
    )


def run_closed(
    host: str,
    port: int,
    path: str,
    body: bytes,
    headers: Sequence[tuple[str, str]] = (),
    concurrency: int = 16,
    duration_s: float = 5.0,
    max_requests: int = 1_000_000,
    *,
    method: str | None = None,
    drain_s: float = 2.0,
    connect_timeout_s: float = 2.0,
    spin: bool = False,
) -> Result:
    """Closed loop: ``concurrency`` connections, each sends again as soon as it is answered.

    Latency is from the send to the complete answer. A connection that fails is counted
    as an error and replaced while time remains; the run ends early if none is left.
    ``spin`` busy-polls instead of sleeping in epoll: on a VM, waking an idle vCPU can
    take longer than the server needs for a request, so a sleeping generator can leave
    the server idle between batches even with many requests in flight.
    """
    if concurrency < 1 or max_requests < 1 or duration_s <= 0:
        raise ValueError("concurrency, max_requests and duration_s must be positive")
    req = build_request(host, port, path, body, headers, method)
    lat = array("d", bytes(8 * max_requests))
    ep = select.epoll()
    conns: dict[int, _Conn] = {}
    n_ok = n_err = sent = 0
    perf = time.perf_counter
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a full collection would stall the generator for milliseconds
    cpu0 = time.process_time()
    t0 = perf()
    deadline = t0 + duration_s
    hard_end = deadline + drain_s
    last = t0

    def open_and_send() -> None:
        nonlocal sent, n_err
        try:
            c = _connect(host, port, connect_timeout_s)
        except OSError:
            n_err += 1
            return
        conns[c.fd] = c
        ep.register(c.fd, select.EPOLLIN)
        c.sched = perf()
        try:
            c.send(req)
        except OSError:
            drop(c)
            n_err += 1
            return
        sent += 1

    def drop(c: _Conn) -> None:
        del conns[c.fd]
        with contextlib.suppress(OSError, ValueError):
            ep.unregister(c.fd)
        c.close()

    try:
        for _ in range(min(concurrency, max_requests)):
            open_and_send()
        poll = ep.poll
        while conns:
            now = perf()
            if now >= hard_end:
                n_err += len(conns)  # unanswered
                break
            if now < deadline:
                events = poll(0.0 if spin else 0.05)
            else:
                events = poll(min(0.05, hard_end - now))
            for fd, _ev in events:
                c = conns.get(fd)
                if c is None:
                    continue
                try:
                    data = c.sock.recv(RECV_BYTES)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                try:
                    done = c.feed(data)
                except (ConnectionError, ValueError):
                    n_err += 1
                    drop(c)
                    if sent < max_requests and perf() < deadline:
                        open_and_send()
                    continue
                if done is None:
                    continue
                now = last = perf()
                status, close = done
                if 200 <= status < 300:
                    lat[n_ok] = now - c.sched
                    n_ok += 1
                else:
                    n_err += 1
                if sent < max_requests and now < deadline:
                    if close:
                        drop(c)
                        open_and_send()
                        continue
                    c.sched = now
                    try:
                        c.send(req)
                    except OSError:
                        n_err += 1
                        drop(c)
                        open_and_send()
                        continue
                    sent += 1
                else:
                    drop(c)
    finally:
        for c in list(conns.values()):
            drop(c)
        ep.close()
        if gc_was_enabled:
            gc.enable()
    elapsed = (last if n_ok else perf()) - t0
    return _summarise(
        "closed",
        concurrency,
        0.0,
        lat,
        n_ok,
        n_err,
        sent,
        elapsed,
        time.process_time() - cpu0,
    )


def run_open(
    host: str,
    port: int,
    path: str,
    body: bytes,
    headers: Sequence[tuple[str, str]] = (),
    rate_per_s: float = 1000.0,
    duration_s: float = 5.0,
    max_requests: int = 1_000_000,
    *,
    connections: int = 32,
    method: str | None = None,
    drain_s: float = 2.0,
    connect_timeout_s: float = 2.0,
    spin_s: float = 0.0,
    request_for: Callable[[int], bytes] | None = None,
    answered: bytearray | None = None,
) -> Result:
    """Open loop: request ``i`` is due at ``t0 + i / rate_per_s``, answered or not.

    ``request_for(i)``, when given, builds request ``i`` (e.g. with its own event id; it
    should cost microseconds) instead of sending ``body`` every time; ``answered``, when
    given (at least ``rate_per_s * duration_s`` bytes long), gets ``answered[i] = 1`` for
    every request answered 2xx, so a caller can tell exactly which ones were acknowledged.

    Latency runs from the scheduled time, so time a request spends waiting for a free
    connection (because the server is slow to answer earlier ones) is charged to it.
    ``connections`` keep-alive connections are opened up front and used in turn (longest
    idle first, so none sits idle long enough for the server's keep-alive timeout). Waiting uses ``select`` (microsecond timeouts; epoll rounds up to whole
    milliseconds, which would add up to 1 ms of generator lateness to every request).
    """
    if rate_per_s <= 0 or connections < 1 or max_requests < 1 or duration_s <= 0:
        raise ValueError("rate_per_s, connections, max_requests and duration_s must be positive")
    req = build_request(host, port, path, body, headers, method)
    total = min(max_requests, max(1, int(rate_per_s * duration_s)))
    lat = array("d", bytes(8 * total))
    lags = array("d", bytes(8 * total))
    interval = 1.0 / rate_per_s
    idle: deque[_Conn] = deque()
    busy: dict[int, _Conn] = {}
    n_ok = n_err = sent = 0
    perf = time.perf_counter
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a full collection would stall the generator for milliseconds
    cpu0 = time.process_time()
    try:
        for _ in range(connections):
            try:
                idle.append(_connect(host, port, connect_timeout_s))
            except OSError:
                n_err += 1
        t0 = perf()
        hard_end = t0 + duration_s + drain_s
        last = t0
        while True:
            now = perf()
            due = min(total, int((now - t0) * rate_per_s) + 1)
            while sent < due and idle:
                c = idle.popleft()
                c.sched = t0 + sent * interval
                c.index = sent
                try:
                    c.send(req if request_for is None else request_for(sent))
                except OSError:
                    n_err += 1
                    c.close()
                    with contextlib.suppress(OSError):
                        idle.append(_connect(host, port, connect_timeout_s))
                    sent += 1
                    continue
                lags[sent] = now - c.sched
                busy[c.fd] = c
                sent += 1
            if sent >= total and not busy:
                break
            if now >= hard_end:
                n_err += len(busy) + (total - sent)  # unanswered + never sent
                break
            # until the next request is due (if a connection is free to send it)
            timeout = max(0.0, t0 + sent * interval - now) if sent < total and idle else 0.05
            timeout = min(timeout, 0.05, max(0.0, hard_end - now))
            if timeout < spin_s:
                timeout = 0.0  # busy-poll: waking an idle vCPU can take milliseconds
            if busy:
                ready, _, _ = select.select(busy.keys(), (), (), timeout)
            elif not idle:
                n_err += total - sent  # every connection failed
                break
            else:
                if timeout:
                    time.sleep(timeout)
                continue
            for fd in ready:
                c = busy[fd]
                try:
                    data = c.sock.recv(RECV_BYTES)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                try:
                    done = c.feed(data)
                except (ConnectionError, ValueError):
                    n_err += 1
                    del busy[fd]
                    c.close()
                    with contextlib.suppress(OSError):
                        idle.append(_connect(host, port, connect_timeout_s))
                    continue
                if done is None:
                    continue
                now = last = perf()
                status, close = done
                if 200 <= status < 300:
                    lat[n_ok] = now - c.sched
                    n_ok += 1
                    if answered is not None:
                        answered[c.index] = 1
                else:
                    n_err += 1
                del busy[fd]
                if close:
                    c.close()
                    with contextlib.suppress(OSError):
                        idle.append(_connect(host, port, connect_timeout_s))
                else:
                    idle.append(c)
    finally:
        for c in (*idle, *busy.values()):
            c.close()
        if gc_was_enabled:
            gc.enable()
    return _summarise(
        "open",
        connections,
        rate_per_s,
        lat,
        n_ok,
        n_err,
        sent,
        last - t0,
        time.process_time() - cpu0,
        lags,
    )


# --------------------------------------------------------------------------- helpers


def pin_to_cpu(cpu: int) -> None:
    """Pin the calling process to one CPU, if the machine has it."""
    if 0 <= cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {cpu})


_HANDED_OUT: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the kernel's choice), never the same one twice
    in this process: servers started side by side bind late (after loading their models),
    and the kernel may offer a port again once its probe socket is closed — then one
    server's readiness probe would be answered by another."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no fresh TCP port after 100 tries")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may contain spaces
    return text[text.rindex(")") + 2 :].split()


def descendants(pid: int) -> list[int]:
    """PIDs of all live descendants of ``pid`` (scans ``/proc``; no psutil here)."""
    parent_of: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                parent_of[int(entry)] = int(fields[1])
    found: list[int] = []
    frontier = [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent_of.items() if pp == p]
        found.extend(kids)
        frontier.extend(kids)
    return found


def proc_cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds of the given processes (``/proc/<pid>/stat``, all threads)."""
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:  # fields[11], [12] are utime, stime (fields 14, 15 of stat)
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLK_TCK


def proc_rss_mib(pids: Sequence[int]) -> float:
    """Resident memory of the given processes, MiB (``VmRSS``; shared pages counted twice)."""
    total_kib = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
    return total_kib / 1024


CpuTicks = dict[int, tuple[int, int, int]]


def cpu_ticks() -> CpuTicks:
    """Per CPU: (all, idle + iowait, steal) ticks from ``/proc/stat``, to diff around a run."""
    out: CpuTicks = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            name, *values = line.split()
            t = [int(v) for v in values[:8]] + [0] * (8 - len(values[:8]))
            out[int(name[3:])] = (sum(t), t[3] + t[4], t[7])  # guest time is inside user
    return out


def steal_fraction(before: CpuTicks, after: CpuTicks, cpus: Sequence[int]) -> float:
    """Share of the given CPUs' time the hypervisor gave to other guests between two reads."""
    both = [c for c in set(cpus) if c in before and c in after]
    total = sum(after[c][0] - before[c][0] for c in both)
    return sum(after[c][2] - before[c][2] for c in both) / total if total > 0 else 0.0


def busy_seconds(before: CpuTicks, after: CpuTicks, cpu: int) -> tuple[float, float]:
    """(busy, wall) seconds of one CPU between two reads; busy excludes idle and steal."""
    if cpu not in before or cpu not in after:
        return 0.0, 0.0
    total, idle, steal = (a - b for a, b in zip(after[cpu], before[cpu], strict=True))
    return (total - idle - steal) / CLK_TCK, total / CLK_TCK


def is_alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def stop_process_tree(
    proc: subprocess.Popen[bytes], known_children: Sequence[int] = (), timeout_s: float = 8.0
) -> None:
    """Stop ``proc`` (SIGTERM, then SIGKILL) and then any of its descendants still alive.

    Descendants are signalled by PID: those recorded earlier (``known_children``) and those
    found now. Only processes this benchmark started are touched.
    """
    kids = set(known_children) | set(descendants(proc.pid))
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout_s)
    deadline = time.monotonic() + timeout_s
    for pid in sorted(kids):
        while is_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if is_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def wait_http_ready(
    host: str,
    port: int,
    request: bytes,
    timeout_s: float,
    alive: Callable[[], bool] = lambda: True,
) -> bytes:
    """Send ``request`` until a 2xx answer comes back; return the answer's body."""
    deadline = time.monotonic() + timeout_s
    last_error = "no attempt"
    while time.monotonic() < deadline and alive():
        try:
            with socket.create_connection((host, port), timeout=2.0) as s:
                s.sendall(request)
                buf = b""
                parsed = None
                while parsed is None or parsed[1] < 0:
                    chunk = s.recv(RECV_BYTES)
                    if not chunk:
                        raise ConnectionError("closed before a whole answer")
                    buf += chunk
                    parsed = parse_response(buf)
                status, end, _ = parsed
                if 200 <= status < 300:
                    head_end = buf.index(b"\r\n\r\n") + 4
                    payload = buf[head_end:end]
                    chunked = b"chunked" in buf[:head_end].lower()
                    return _dechunk(payload) if chunked else payload
                last_error = f"status {status}"
        except OSError as exc:
            last_error = repr(exc)
        time.sleep(0.1)
    raise TimeoutError(f"{host}:{port} not ready after {timeout_s:.0f} s ({last_error})")


def _dechunk(body: bytes) -> bytes:
    out, pos = b"", 0
    while True:
        line_end = body.index(b"\r\n", pos)
        size = int(body[pos:line_end].split(b";", 1)[0], 16)
        if size == 0:
            return out
        out += body[line_end + 2 : line_end + 2 + size]
        pos = line_end + 2 + size + 2


# --------------------------------------------------------------------------- self-test

_TRIVIAL_BODY = b'{"event_id":"e1","score":0.5}'
_TRIVIAL_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(_TRIVIAL_BODY)).encode()
    + b"\r\n\r\n"
    + _TRIVIAL_BODY
)


class _TrivialHTTP(asyncio.Protocol):
    """Answers every request with the same canned 200; understands Content-Length only."""

    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        answers = 0
        while True:
            hend = buf.find(b"\r\n\r\n")
            if hend < 0:
                break
            i = buf.lower().find(b"\r\ncontent-length:", 0, hend)
            n = int(buf[i + 17 : buf.index(b"\r\n", i + 17)]) if i >= 0 else 0
            end = hend + 4 + n
            if len(buf) < end:
                break
            buf = buf[end:]
            answers += 1
        self.buf = buf
        if answers and self.transport is not None:
            self.transport.write(_TRIVIAL_RESPONSE * answers)


def serve_trivial(port: int, use_uvloop: bool) -> None:
    """Run the trivial server forever (until SIGTERM) on 127.0.0.1:``port``."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_TrivialHTTP, "127.0.0.1", port, backlog=1024)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        async with server:
            await stop.wait()

    if use_uvloop:
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


def _parser_checks() -> None:
    """Quick checks of the response parser on the framings servers use."""
    cl = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    assert parse_response(cl) == (200, len(cl), False)
    assert parse_response(cl[:-1]) is None
    ch = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n"
    )
    assert parse_response(ch) == (200, len(ch), False)
    assert parse_response(ch[:-2]) is None
    tr = ch[:-2] + b"X-Trailer: 1\r\n\r\n"
    assert parse_response(tr) == (200, len(tr), False)
    nc = b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
    assert parse_response(nc) == (204, len(nc), True)
    assert parse_response(b"HTTP/1.0 200 OK\r\n\r\nabc") == (200, -1, True)
    c = _Conn.__new__(_Conn)
    c.buf, c.eof_status = b"", 0
    assert c.feed(b"HTTP/1.1 100 Continue\r\n\r\n" + cl) == (200, False)
    assert c.feed(b"HTTP/1.0 200 OK\r\n\r\nab") is None
    assert c.feed(b"c") is None
    assert c.feed(b"") == (200, True)


def selftest(duration_s: float, concurrencies: Sequence[int]) -> int:
    """Measure this generator against a trivial asyncio (uvloop) server: its ceiling.

    The server runs pinned to CPU 0 and this process to CPU 1. For each concurrency it
    reports throughput, the generator's own CPU per request and the rate that implies for
    one fully used core (1 / CPU per request), the server's CPU use, and the share of
    time the hypervisor took from the two CPUs (steal), which caps both on a shared VM.
    """
    _parser_checks()
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, gen_cpu = (cpus[0], cpus[1]) if len(cpus) > 1 else (cpus[0], cpus[0])
    port = free_port()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--serve-trivial", str(port)]
    cmd += ["--cpu", str(server_cpu)]
    pin_to_cpu(gen_cpu)
    print(f"# loadgen self-test: python {platform.python_version()}, {os.cpu_count()} CPUs")
    body = b'{"event_id": "e1", "features": {"amount": 30.98}}'
    hdrs = [("Content-Type", "application/json")]
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryFile() as log:  # the server's output, shown only on failure
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        print(f"# trivial asyncio+uvloop server pid {proc.pid} on CPU {server_cpu}; ", end="")
        print(f"generator on CPU {gen_cpu}")
        try:
            wait_http_ready("127.0.0.1", port, build_request("127.0.0.1", port, "/", body), 15.0)
            run_closed("127.0.0.1", port, "/", body, hdrs, 16, min(1.0, duration_s))  # warm-up
            for conc in concurrencies:
                s0, st0 = proc_cpu_seconds([proc.pid]), cpu_ticks()
                r = run_closed("127.0.0.1", port, "/", body, hdrs, conc, duration_s, 2_000_000)
                server_s, st1 = proc_cpu_seconds([proc.pid]) - s0, cpu_ticks()
                us = r.gen_cpu_s / max(r.count, 1) * 1e6
                rows.append(
                    {
                        "concurrency": conc,
                        "req_per_s": r.throughput_per_s,
                        "errors": r.errors,
                        "gen_cpu_util": r.gen_cpu_s / r.elapsed_s,
                        "gen_cpu_us_per_req": us,
                        "gen_ceiling_req_per_s": 1e6 / us if us else float("inf"),
                        "server_cpu_util": server_s / r.elapsed_s,
                        "steal": steal_fraction(st0, st1, (server_cpu, gen_cpu)),
                        "p50_ms": r.p50_ms,
                        "p99_ms": r.p99_ms,
                    }
                )
            r = run_open("127.0.0.1", port, "/", body, hdrs, 1000.0, min(3.0, duration_s))
        except BaseException:
            log.seek(0)
            sys.stderr.write(log.read()[-4000:].decode(errors="replace"))
            raise
        finally:
            stop_process_tree(proc)
    head = f"{'conc':>5} {'req/s':>9} {'err':>4} {'gen CPU':>8} {'gen µs/req':>10} "
    head += f"{'gen ceiling/s':>13} {'srv CPU':>8} {'steal':>6} {'p50 ms':>7} {'p99 ms':>7}"
    print(head)
    for row in rows:
        print(
            f"{row['concurrency']:>5.0f} {row['req_per_s']:>9.0f} {row['errors']:>4.0f} "
            f"{row['gen_cpu_util']:>8.0%} {row['gen_cpu_us_per_req']:>10.2f} "
            f"{row['gen_ceiling_req_per_s']:>13.0f} {row['server_cpu_util']:>8.0%} "
            f"{row['steal']:>6.0%} {row['p50_ms']:>7.3f} {row['p99_ms']:>7.3f}"
        )
    print(
        f"# open loop 1000/s against the trivial server: p50 {r.p50_ms:.3f} ms, "
        f"p99 {r.p99_ms:.3f} ms, p99.9 {r.p999_ms:.3f} ms, send lag p99 "
        f"{r.p99_send_lag_ms:.3f} ms / max {r.max_send_lag_ms:.3f} ms, errors {r.errors}"
    )
    print(json.dumps({"selftest": rows, "open_1000": asdict(r)}))
    return 0


# --------------------------------------------------------------------------- CLI


def _headers(values: Sequence[str]) -> Iterator[tuple[str, str]]:
    for value in values:
        name, _, rest = value.partition(":")
        yield name.strip(), rest.strip()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int)
    parser.add_argument("--path", default="/")
    parser.add_argument("--method")
    parser.add_argument("--body", default="", help="request body (text)")
    parser.add_argument("--body-file", type=Path, help="request body from a file")
    parser.add_argument("--header", action="append", default=[], help="'Name: value'")
    parser.add_argument("--concurrency", type=int, default=16, help="connections")
    parser.add_argument("--rate", type=float, help="open loop at this many requests/s")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds")
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    parser.add_argument("--drain", type=float, default=2.0, help="seconds to wait at the end")
    parser.add_argument(
        "--spin-ms",
        type=float,
        default=0.0,
        help="busy-poll instead of sleeping (open loop: when the next send is this close; "
        "closed loop: any value > 0 busy-polls throughout)",
    )
    parser.add_argument("--cpu", type=int, help="pin this process to this CPU")
    parser.add_argument("--selftest", action="store_true", help="measure this generator")
    parser.add_argument("--serve-trivial", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--asyncio-loop", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cpu is not None:
        pin_to_cpu(args.cpu)
    if args.serve_trivial is not None:
        serve_trivial(args.serve_trivial, use_uvloop=not args.asyncio_loop)
        return 0
    if args.selftest:
        return selftest(args.duration if args.duration != 5.0 else 3.0, (1, 16, 64))
    if args.port is None:
        parser.error("--port is required")
    body = args.body_file.read_bytes() if args.body_file else args.body.encode()
    hdrs = list(_headers(args.header))
    if args.rate is not None:
        result = run_open(
            args.host,
            args.port,
            args.path,
            body,
            hdrs,
            args.rate,
            args.duration,
            args.max_requests,
            connections=args.concurrency,
            method=args.method,
            drain_s=args.drain,
            spin_s=args.spin_ms / 1e3,
        )
    else:
        result = run_closed(
            args.host,
            args.port,
            args.path,
            body,
            hdrs,
            args.concurrency,
            args.duration,
            args.max_requests,
            method=args.method,
            drain_s=args.drain,
            spin=args.spin_ms > 0,
        )
    print(result.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
