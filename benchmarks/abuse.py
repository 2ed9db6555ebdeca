"""A well-behaved client's latency while abusive clients hit the same ``muse serve``.

The quickstart served with keys on; a well-behaved client sends single events one after the
other (keep-alive) and its latencies are measured alone, then while each abuse runs in
background threads (bounded in count and time): slowloris (connections trickling headers),
idle connections, a flood of large bodies, a burst of wrong API keys, pipelined batches.
Reports, per abuse, the good client's p50/p99, the ratio of its p99 to the unloaded one's
(the target: within 2x), its failures (target: none) and what the abusive clients got.
Several rounds; medians of the rounds (the machine is shared).

``python benchmarks/abuse.py [--requests 2000] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.e2e.support import Deployment, MuseProcess, event  # noqa: E402
from tests.e2e.test_auth import BANK1_KEY, bearer, with_keys  # noqa: E402

Abuse = Callable[[int, threading.Event, Counter[str]], None]


def head(length: int, key: str = BANK1_KEY) -> bytes:
    return (
        f"POST /v1/score HTTP/1.1\r\nhost: muse\r\nauthorization: Bearer {key}\r\n"
        f"content-type: application/json\r\ncontent-length: {length}\r\n\r\n"
    ).encode()


def outcome(sock: socket.socket) -> str:
    try:
        data = sock.recv(64)
    except OSError as e:
        return type(e).__name__
    return data.split(b"\r\n", 1)[0].decode(errors="replace")[9:12] or "closed"


def slowloris(port: int, stop: threading.Event, got: Counter[str]) -> None:
    """50 connections at a time, each trickling its head a byte every 0.2 s."""

    def one() -> None:
        while not stop.is_set():
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.settimeout(30)
                data = head(100)
                try:
                    for i in range(len(data)):
                        if stop.is_set():
                            return
                        s.sendall(data[i : i + 1])
                        time.sleep(0.2)
                except OSError:
                    pass
                got[outcome(s)] += 1

    threads = [threading.Thread(target=one, daemon=True) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def idle(port: int, stop: threading.Event, got: Counter[str]) -> None:
    """500 connections that never send a byte, reopened as the server closes them."""
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(500)]
    while not stop.is_set():
        time.sleep(0.5)
    for s in socks:
        s.settimeout(0.01)
        try:
            got["closed" if s.recv(1) == b"" else "open"] += 1
        except OSError:
            got["open"] += 1
        s.close()


def large_bodies(port: int, stop: threading.Event, got: Counter[str]) -> None:
    """4 clients, each declaring 50 MB bodies in a loop."""

    def one() -> None:
        while not stop.is_set():
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.settimeout(10)
                with contextlib.suppress(OSError):
                    s.sendall(head(50_000_000) + b"{" * 65536)
                got[outcome(s)] += 1
            time.sleep(0.01)

    threads = [threading.Thread(target=one, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def wrong_keys(port: int, stop: threading.Event, got: Counter[str]) -> None:
    """Wrong keys at ~300 requests/s, on one kept-alive connection."""
    body = event("nokey", "bank1")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        i = 0
        while not stop.is_set():
            r = client.post("/v1/score", json=body, headers=bearer(f"wrong-key-{i:08d}"))
            got[str(r.status_code)] += 1
            i += 1
            time.sleep(1 / 300)


def pipelined(port: int, stop: threading.Event, got: Counter[str]) -> None:
    """Bursts of 20 pipelined requests on one connection, 10 bursts a second."""
    body = json.dumps(event("pipe", "bank1")).encode()
    burst = (head(len(body)) + body) * 20
    while not stop.is_set():
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.settimeout(10)
            s.sendall(burst)
            data = b""
            while data.count(b"HTTP/1.1 ") < 20:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            got[f"{data.count(b'HTTP/1.1 200 ')} of 20 answered"] += 1
        time.sleep(0.1)


ABUSES: dict[str, Abuse] = {
    "slowloris x50": slowloris,
    "idle x500": idle,
    "50 MB bodies x4": large_bodies,
    "wrong keys 300/s": wrong_keys,
    "pipelined x20": pipelined,
}


def measure(client: httpx.Client, n: int) -> tuple[list[float], int]:
    latencies, failures = [], 0
    for i in range(n):
        started = time.perf_counter()
        try:
            r = client.post(
                "/v1/score", json=event(f"good-{i}", "bank1"), headers=bearer(BANK1_KEY)
            )
            ok = r.status_code == 200
        except httpx.HTTPError:
            ok = False
        latencies.append(time.perf_counter() - started)
        failures += not ok
    return latencies, failures


def p(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(
        f"{time.strftime('%Y-%m-%d')} {platform.machine()} cores={len(os.sched_getaffinity(0))} "
        f"python {platform.python_version()}; {args.requests} good requests x {args.rounds} rounds"
    )
    results: dict[str, list[tuple[float, float, int]]] = {}
    got_all: dict[str, Counter[str]] = {}
    with tempfile.TemporaryDirectory(prefix="muse-abuse-") as tmp:
        d = with_keys(Deployment.copy_quickstart(Path(tmp) / "deploy"))
        server = MuseProcess(d.config, Path(tmp) / "serve.log", ["--request-timeout", "5"]).start()
        try:
            with server.client() as client:
                measure(client, 300)  # warm
                for _ in range(args.rounds):
                    for name, abuse in (("none", None), *ABUSES.items()):
                        stop = threading.Event()
                        got = got_all.setdefault(name, Counter())
                        thread = None
                        if abuse is not None:
                            thread = threading.Thread(
                                target=abuse, args=(server.port, stop, got), daemon=True
                            )
                            thread.start()
                            time.sleep(1.0)  # let it build up
                        latencies, failures = measure(client, args.requests)
                        stop.set()
                        if thread is not None:
                            thread.join(60)
                        results.setdefault(name, []).append(
                            (p(latencies, 0.5), p(latencies, 0.99), failures)
                        )
                ready = client.get("/health/ready").status_code
            tracebacks = server.output().count("Traceback")
        finally:
            server.stop_gracefully()
    base = statistics.median(r[1] for r in results["none"])
    print(
        f"\n{'abuse':<20}{'p50 ms':>8}{'p99 ms':>8}{'p99/unloaded':>14}{'failed':>8}  abusers got"
    )
    ok = True
    for name, rows in results.items():
        p50 = statistics.median(r[0] for r in rows)
        p99 = statistics.median(r[1] for r in rows)
        failed = sum(r[2] for r in rows)
        ratio = p99 / base
        ok &= failed == 0 and ratio <= 2.0
        shown = ", ".join(f"{k}: {v}" for k, v in got_all[name].most_common(4))
        print(f"{name:<20}{p50:>8.2f}{p99:>8.2f}{ratio:>14.2f}{failed:>8}  {shown}")
    print(f"ready after: {ready}; tracebacks: {tracebacks}")
    print("PASS (p99 within 2x of unloaded, no failures)" if ok else "MISS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
