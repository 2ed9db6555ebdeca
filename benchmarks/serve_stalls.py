"""Benchmark: where ``muse serve``'s event loop stalls under 1,000 req/s, and why.

Starts ``muse serve`` on the headline copy of the quickstart (``serve_load.py``'s: 3-expert
ensemble live, one shadow, score lake on), pinned to CPU 0, with three probes installed in
the server process before it starts: a task in the event loop that sleeps 1 ms at a time
and records every wake-up late by more than 2 ms (a *stall*: nothing could run on the loop
meanwhile), the garbage collector's callbacks (every collection over 0.5 ms, by
generation), and the score lake's batch writes (when, how long). It then drives the open
loop of ``serve_load.py`` (1,000 req/s over 32 connections, from CPU 1) for a few rounds
and reports the client p99 per round, the stalls, how many of them fell while a lake batch
was being written, and the collections. ``loop_stalls.py`` gives the machine's own rate
of late wake-ups for comparison.

Run: ``.venv/bin/python benchmarks/serve_stalls.py [--rounds 3] [--seconds 5]`` (~40 s).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import loadgen  # noqa: E402
import serve_load  # noqa: E402

STALL_MS = 2.0
GC_MS = 0.5


def run_server(config: str, port: int, events_path: str) -> None:
    """Server mode: install the probes, then ``muse serve`` (until SIGTERM)."""
    events: list[tuple[float, str, float]] = []  # (unix time, kind, ms)
    started = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        elif (ms := (time.perf_counter() - started[0]) * 1e3) > GC_MS:
            events.append((time.time(), f"gc{info['generation']}", ms))

    gc.callbacks.append(on_gc)

    import muse.scorelog.writer as writer
    import muse.serving.app as app_module

    write_batch = writer.LakeWriter._write_batch

    def timed_write(self: Any, batch: Any) -> None:
        t0 = time.time()
        write_batch(self, batch)
        events.append((t0, "lake", (time.time() - t0) * 1e3))

    writer.LakeWriter._write_batch = timed_write  # type: ignore[method-assign]
    startup = app_module.MuseApp.startup

    async def probed_startup(self: Any) -> None:
        await startup(self)

        async def probe() -> None:
            while True:
                t = time.perf_counter()
                await asyncio.sleep(0.001)
                late = (time.perf_counter() - t) * 1e3 - 1.0
                if late > STALL_MS:
                    events.append((time.time(), "stall", late))

        asyncio.get_running_loop().create_task(probe())

    app_module.MuseApp.startup = probed_startup  # type: ignore[method-assign]

    def dump(*_: Any) -> None:
        Path(events_path).write_text(json.dumps(events))

    def keep_dumping() -> None:  # the server may be killed: keep the file current
        while True:
            time.sleep(0.5)
            dump()

    threading.Thread(target=keep_dumping, daemon=True).start()
    from muse.cli import app

    sys.argv = [
        "muse",
        "serve",
        config,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    try:
        app()
    finally:
        dump()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--serve", nargs=3, metavar=("CONFIG", "PORT", "EVENTS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.serve:
        run_server(args.serve[0], int(args.serve[1]), args.serve[2])
        return 0
    if not (1 <= args.rounds <= 20 and 0 < args.seconds <= 60):
        parser.error("--rounds must be in 1..20 and --seconds in (0, 60]")
    loadgen.pin_to_cpu(serve_load.LOADGEN_CPU)
    body = serve_load.event_body("bank2", serve_load.sample_features())
    with tempfile.TemporaryDirectory() as tmp:
        cfg = serve_load.write_config(Path(tmp) / "headline", True)
        port = loadgen.free_port()
        events_path = Path(tmp) / "events.json"
        log = (Path(tmp) / "serve.log").open("w")
        argv_server = [sys.executable, __file__, "--serve", str(cfg), str(port), str(events_path)]
        proc = subprocess.Popen(
            ["taskset", "-c", str(serve_load.SERVER_CPU), *argv_server],
            stdout=log,
            stderr=log,
            cwd=str(cfg.parent),
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        try:
            ready = loadgen.build_request("127.0.0.1", port, "/health/ready", b"")
            loadgen.wait_http_ready("127.0.0.1", port, ready, 90, lambda: proc.poll() is None)
            windows = []
            print(
                f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; server pinned to "
                f"CPU {serve_load.SERVER_CPU}; 1,000 req/s over 32 connections, {args.rounds} x {args.seconds:g} s"
            )
            for r in range(args.rounds):
                t0 = time.time()
                res = loadgen.run_open(
                    "127.0.0.1",
                    port,
                    serve_load.PATH,
                    body,
                    serve_load.JSON_HEADERS,
                    1000,
                    args.seconds,
                    100_000,
                    connections=32,
                    spin_s=serve_load.OPEN_SPIN_MS / 1e3,
                )
                windows.append((t0, time.time()))
                print(
                    f"round {r + 1}: p50 {res.p50_ms:.2f} p99 {res.p99_ms:.2f} p99.9 {res.p999_ms:.2f} ms; "
                    f"generator lag p99 {res.p99_send_lag_ms:.2f} ms"
                )
            time.sleep(1.0)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        events = (
            [tuple(e) for e in json.loads(events_path.read_text())] if events_path.exists() else []
        )
    under_load = [e for e in events if any(a <= e[0] <= b for a, b in windows)]
    stalls = [e for e in under_load if e[1] == "stall"]
    lakes = [e for e in events if e[1] == "lake"]
    near = [s for s in stalls if any(t - 0.05 <= s[0] <= t + ms / 1e3 + 0.1 for t, _, ms in lakes)]
    load_s = sum(b - a for a, b in windows)
    lake_s = sum(0.15 + ms / 1e3 for t, _, ms in lakes if any(a <= t <= b for a, b in windows))
    print(
        f"loop stalls > {STALL_MS:g} ms under load: {len(stalls)} in {load_s:.0f} s "
        f"(> 5 ms: {sum(1 for s in stalls if s[2] > 5)}; worst {max((s[2] for s in stalls), default=0):.1f} ms)"
    )
    print(
        f"  during a lake batch write (+-0.1 s): {len(near)}, in {lake_s / load_s * 100:.0f} % of the time"
    )
    for gen in (0, 1, 2):
        pauses = sorted(e[2] for e in under_load if e[1] == f"gc{gen}")
        if pauses:
            print(
                f"  collections of generation {gen} over {GC_MS} ms: {len(pauses)}, worst {pauses[-1]:.1f} ms"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
