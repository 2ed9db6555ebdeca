"""One ``/metrics`` for all the worker processes of a server (``muse serve --workers N``).

A scrape reaches one worker, chosen by the kernel; Prometheus must still see the whole
server. prometheus-client's multiprocess mode does this for its own metric classes by
writing every observation to a memory-mapped file, but it cannot carry custom collectors
— and our per-event histograms are one (:mod:`muse.serving.metrics`: batch observation,
~10× cheaper), as are the lake's counters. So the workers share their metrics here, on
demand, through a folder the parent process makes:

1. The worker that is scraped writes a **request** (``scrape.json`` with a new token) and
   its own dump.
2. Every worker watches the request (one ``stat`` every 50 ms) and answers with a
   **dump** of its registry, ``<pid>.json``, tagged with the token.
3. The scraped worker waits (≤ 1 s) for every live worker's answer and **merges**:
   counters and histograms are summed — a worker that exited keeps its last dump, so
   totals never go backwards when uvicorn replaces a worker — and gauges are kept per
   worker with a ``worker`` label (a gauge of a worker gone is dropped).

Nothing is written between scrapes: the cost is one dump per worker per scrape, off the
event loop.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

__all__ = ["METRICS_DIR_ENV", "SharedMetrics"]

#: The folder the workers of one server share (set by the parent process).
METRICS_DIR_ENV = "MUSE_METRICS_DIR"
_REQUEST = "scrape.json"
_WATCH_S = 0.05
_WAIT_S = 1.0
#: Summed across workers; every other type is kept per worker.
_SUMMED = frozenset({"counter", "histogram", "summary", "unknown"})


class _Sample(msgspec.Struct, array_like=True):
    name: str
    labels: dict[str, str]
    value: float


class _Family(msgspec.Struct, array_like=True):
    name: str
    type: str
    documentation: str
    samples: list[_Sample]


class _Dump(msgspec.Struct):
    pid: int
    token: str
    families: list[_Family]


_encode = msgspec.json.Encoder().encode
_decode_dump = msgspec.json.Decoder(_Dump).decode


class SharedMetrics:
    """This worker's side of the shared folder: answers scrape requests with a dump of
    ``registry``, and renders the merged metrics of every worker when it is scraped."""

    def __init__(self, registry: CollectorRegistry, folder: Path) -> None:
        self.registry = registry
        self.folder = Path(folder)
        self.pid = os.getpid()
        self._answered = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.dump("")  # known to the others from the start
        self._thread = threading.Thread(target=self._watch, name="muse-metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop answering; the last dump stays, so this worker's counters stay counted."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        self.dump(self._answered)

    # -- answering ------------------------------------------------------------------------

    def dump(self, token: str) -> None:
        """Write this worker's metrics, tagged ``token`` (written beside, then renamed)."""
        with self._lock:
            families = [
                _Family(
                    m.name,
                    m.type,
                    m.documentation,
                    [_Sample(s.name, dict(s.labels), float(s.value)) for s in m.samples],
                )
                for m in self.registry.collect()
            ]
            data = _encode(_Dump(self.pid, token, families))
            target = self.folder / f"{self.pid}.json"
            tmp = self.folder / f".{self.pid}.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, target)
            self._answered = token

    def _watch(self) -> None:
        request = self.folder / _REQUEST
        while not self._stop.wait(_WATCH_S):
            try:
                token = request.read_text(encoding="utf-8")
            except OSError:
                continue
            if token and token != self._answered:
                with contextlib.suppress(OSError):
                    self.dump(token)

    # -- scraping -------------------------------------------------------------------------

    def render(self) -> bytes:
        """Every worker's metrics, merged (see the module doc)."""
        token = f"{self.pid}-{secrets.token_hex(6)}"
        request = self.folder / _REQUEST
        tmp = self.folder / f".{_REQUEST}.{self.pid}.tmp"
        tmp.write_text(token, encoding="utf-8")
        os.replace(tmp, request)
        self.dump(token)
        deadline = time.monotonic() + _WAIT_S
        while True:
            dumps = self._read()
            waiting = [d for d in dumps if d.token != token and _alive(d.pid)]
            if not waiting or time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Merged(dumps))
        return generate_latest(registry)

    def _read(self) -> list[_Dump]:
        out = []
        for path in sorted(self.folder.glob("*.json")):
            if path.name == _REQUEST:
                continue
            try:
                out.append(_decode_dump(path.read_bytes()))
            except (OSError, msgspec.DecodeError):
                continue  # replaced while read: the next scrape sees it
        return out


class _Merged(Collector):
    def __init__(self, dumps: list[_Dump]) -> None:
        self._dumps = dumps

    def collect(self) -> Iterable[Any]:
        merged: dict[str, Metric] = {}
        sums: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
        for dump in self._dumps:
            alive = _alive(dump.pid)
            for fam in dump.families:
                metric = merged.get(fam.name)
                if metric is None:
                    metric = merged[fam.name] = Metric(fam.name, fam.documentation, fam.type)
                    sums[fam.name] = {}
                if fam.type in _SUMMED:
                    acc = sums[fam.name]
                    for s in fam.samples:
                        key = (s.name, tuple(sorted(s.labels.items())))
                        if s.name.endswith("_created"):  # when first created: the earliest
                            acc[key] = min(acc.get(key, s.value), s.value)
                        else:
                            acc[key] = acc.get(key, 0.0) + s.value
                elif alive:
                    for s in fam.samples:
                        metric.add_sample(s.name, {**s.labels, "worker": str(dump.pid)}, s.value)
        for name, metric in merged.items():
            for (sample, labels), value in sums[name].items():
                metric.add_sample(sample, dict(labels), value)
            yield metric


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - another user's process: alive
        return True
    return True
