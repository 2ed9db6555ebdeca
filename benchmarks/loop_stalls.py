"""Benchmark of the machine, not of muse: how often an idle event loop wakes up late.

An open-loop latency figure (``serve_load.py``: p99 at 1,000 req/s) can be no better than
the machine lets a process run on time. This script pins a bare uvloop loop to one CPU
(the server's, by default), lets it sleep 1 ms at a time for a few seconds, and counts the
wake-ups that came late by more than 1, 2, 5 and 10 ms. Nothing else runs in the loop, so
every late wake-up is the hypervisor's or the kernel's: on a quiet dedicated core there
are none. Run it beside ``serve_load.py`` results to read their tails.

Run: ``.venv/bin/python benchmarks/loop_stalls.py [--seconds 10] [--cpu 0]`` (about 10 s).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from collections.abc import Sequence

import uvloop

THRESHOLDS_MS = (1.0, 2.0, 5.0, 10.0)
SLEEP_S = 0.001


async def measure(seconds: float) -> tuple[int, list[float]]:
    """Wake-ups and how late each came (ms beyond the 1 ms asked for)."""
    late: list[float] = []
    wakeups = 0
    end = time.perf_counter() + seconds
    while (start := time.perf_counter()) < end:
        await asyncio.sleep(SLEEP_S)
        late.append((time.perf_counter() - start - SLEEP_S) * 1e3)
        wakeups += 1
    return wakeups, late


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--cpu", type=int, default=0, help="CPU to pin to (-1: do not pin)")
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= 600:
        parser.error("--seconds must be in (0, 600]")
    if args.cpu >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    wakeups, late = uvloop.run(measure(args.seconds))
    late.sort()
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.machine()} "
        f"{platform.system()} {platform.release()}; Python {sys.version.split()[0]}; "
        f"pinned to CPU {args.cpu}; load average {os.getloadavg()[0]:.2f}"
    )
    print(f"{wakeups} wake-ups of a 1 ms sleep in {args.seconds:g} s")
    for threshold in THRESHOLDS_MS:
        n = sum(1 for x in late if x > threshold)
        print(f"  late by > {threshold:4.0f} ms: {n:6d}  ({n / args.seconds:.2f} per second)")
    print(f"  worst {late[-1]:.2f} ms; p99 {late[int(0.99 * (len(late) - 1))]:.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
