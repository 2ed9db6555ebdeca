"""Benchmark: which Python HTTP stack should serve muse's ``POST /v1/score``.

What is measured: the same scoring endpoint — decode a JSON event, score one row with one
in-process LightGBM model (``examples/quickstart/models/m1.txt``, 8 of the event's 10
features, one thread, as muse serves it), answer ``{"event_id": ..., "score": ...}`` — on
five stacks, each a single server process pinned to CPU 0, loaded from CPU 1:

(a) Starlette on uvicorn (uvloop, httptools, no access log), ``await request.json()`` and
    ``JSONResponse`` — the bare baseline to beat;
(b) the same Starlette app decoding/encoding with msgspec (typed ``Struct``);
(c) a raw ASGI callable (no framework) with msgspec, on the same uvicorn;
(d) that raw ASGI callable on granian (``--interface asgi``, 1 worker, default loop:
    ``auto``, which picks rloop, else uvloop; rloop is not installed, so uvloop);
(e) the same handler on granian's native RSGI interface.

Why: the scoring core costs a few µs plus the model's ~25 µs (``bench_predictor.py``); the
HTTP stack around it may cost several times that, and muse has to pick one by measurement.

How: every candidate is started once, one after the other, and left idle while the
others are measured (an idle server costs nothing measurable). Then, in interleaved
rounds (each round loads every candidate once, in rotated order, so drifts of this
shared VM hit all alike): a short warm-up, a closed loop at 16 connections (throughput,
p50/p99), and an open loop at 1,000 requests/s (p50/p99/p99.9, timed from the scheduled
send, so stalls are not hidden). The load comes from ``loadgen.py`` (pure Python, raw
sockets, ~7 µs of CPU per request: see ``python benchmarks/loadgen.py --selftest``) run
as a subprocess pinned to CPU 1. In the open loop it busy-polls for the last 0.5 ms
before each send, because waking an idle vCPU on this VM can take milliseconds; its p99
lag behind the timetable is reported. Otherwise it sleeps: a generator spinning on CPU 1
makes the kernel move other sessions' processes onto the server's CPU 0 (``--spin``
busy-polls in the closed loop too, for an otherwise idle machine).

Server CPU per request comes from ``/proc/<pid>/stat`` (utime + stime of the server
process and its children) around each run — the figure least disturbed by the VM. Other
sessions share this machine, so each run also records ``steal`` (the share of CPU 0 the
hypervisor took) and ``other`` (the share other processes used, from ``/proc/stat``).
Each run waits (at most 3 s) for both CPUs to go quiet; many short rounds (5 x 3 s
closed + 3 s open per candidate) rather than a few long ones leave enough runs; and the
medians are taken over the runs during which steal + other stayed under 10% of CPU 0
(over all runs if none did; the table says how many were clean). CPU per request is
also shown as its minimum over all runs: interference only adds to it. Ratios are
against (a) in the same run: of the medians, and per round where both runs were clean.
The model's ``predict`` of one row and the JSON/msgspec decode + encode are timed in
process on CPU 0 before the servers start and after every round (servers idle), to show
how much of a request is model and how much plumbing.

Run: ``.venv/bin/python benchmarks/asgi_stack.py`` (about 4 minutes; ``--quick`` for a
~1 minute smoke run). Everything it starts is stopped by PID, also on errors.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import lightgbm
import msgspec
import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

import loadgen

if TYPE_CHECKING:
    from granian._granian import RSGIHTTPProtocol as HTTPProtocol
    from granian.rsgi import Scope as RSGIScope

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODEL = ROOT / "examples" / "quickstart" / "models" / "m1.txt"
EVENT = ROOT / "examples" / "quickstart" / "sample_event.json"
HOST = "127.0.0.1"
PATH = "/v1/score"
SERVER_CPU = 0
LOADGEN_CPU = 1

CONCURRENCY = 16
OPEN_RATE = 1000.0
OPEN_CONNECTIONS = 32
OPEN_SPIN_MS = 0.5  # open loop: the generator busy-polls only this close to a send
DISTURBED = 0.10  # a run is left out of the medians if others took this share of CPU 0
QUIET_WAIT_S = 3.0  # before each run, wait at most this long for other processes to pause
READY_TIMEOUT_S = 60.0  # importing lightgbm (it imports scikit-learn) takes ~3 s here
MAX_REQUESTS = 1_000_000


@dataclass(frozen=True)
class Settings:
    rounds: int = 5
    closed_s: float = 3.0
    open_s: float = 3.0
    warmup_first_s: float = 1.5
    warmup_s: float = 0.5
    budget_s: float = 270.0  # whole script; rounds that would not fit are skipped


QUICK = Settings(rounds=1, closed_s=2.0, open_s=2.0, warmup_first_s=1.0, warmup_s=0.5)

# ----------------------------------------------------------------------- the endpoint


class Intent(msgspec.Struct):
    tenant: str


class ScoreRequest(msgspec.Struct):
    event_id: str
    intent: Intent
    features: dict[str, float]


class ScoreResponse(msgspec.Struct):
    event_id: str
    score: float


def request_body() -> bytes:
    """The request every candidate serves: the quickstart's sample event, 10 features."""
    features = json.loads(EVENT.read_text())
    payload = {"event_id": "e1", "intent": {"tenant": "bank1"}, "features": features}
    return json.dumps(payload).encode()


class Scorer:
    """One LightGBM model scoring one row, called the way muse's LightGBM backend calls it."""

    def __init__(self, model_path: Path = MODEL) -> None:
        self.booster = lightgbm.Booster(model_file=str(model_path))
        self.names: tuple[str, ...] = tuple(self.booster.feature_name())

    def row(self, features: Mapping[str, float]) -> np.ndarray:
        return np.array([[features[n] for n in self.names]], dtype=np.float64)

    def predict(self, row: np.ndarray) -> float:
        return float(self.booster.predict(row, num_threads=1)[0])

    def score(self, features: Mapping[str, float]) -> float:
        return self.predict(self.row(features))


_DECODER = msgspec.json.Decoder(ScoreRequest)
_ENCODER = msgspec.json.Encoder()
_JSON_HEADERS_ASGI = [(b"content-type", b"application/json")]
_NOT_FOUND = b'{"error":"not found"}'
_BAD_REQUEST = b'{"error":"invalid request"}'


def make_starlette_json_app() -> Starlette:
    """(a) Starlette, stdlib JSON through ``request.json()`` and ``JSONResponse``."""
    scorer = Scorer()

    async def score(request: Request) -> Response:
        try:
            payload = await request.json()
            event_id = str(payload["event_id"])
            _tenant = payload["intent"]["tenant"]
            value = scorer.score(payload["features"])
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": "invalid request"}, status_code=422)
        return JSONResponse({"event_id": event_id, "score": value})

    return Starlette(routes=[Route(PATH, score, methods=["POST"])])


def make_starlette_msgspec_app() -> Starlette:
    """(b) Starlette, msgspec decoding into a typed Struct and encoding the answer."""
    scorer = Scorer()

    async def score(request: Request) -> Response:
        try:
            req = _DECODER.decode(await request.body())
        except msgspec.DecodeError:  # includes ValidationError
            return Response(_BAD_REQUEST, status_code=422, media_type="application/json")
        out = ScoreResponse(event_id=req.event_id, score=scorer.score(req.features))
        return Response(_ENCODER.encode(out), media_type="application/json")

    return Starlette(routes=[Route(PATH, score, methods=["POST"])])


def _score_bytes(scorer: Scorer, body: bytes) -> tuple[int, bytes]:
    try:
        req = _DECODER.decode(body)
    except msgspec.DecodeError:
        return 422, _BAD_REQUEST
    out = ScoreResponse(event_id=req.event_id, score=scorer.score(req.features))
    return 200, _ENCODER.encode(out)


def make_raw_asgi_app() -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """(c), (d) A bare ASGI 3 callable: one route, msgspec, lifespan acknowledged."""
    scorer = Scorer()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if scope["path"] != PATH or scope["method"] != "POST":
                status, out = 404, _NOT_FOUND
            else:
                body = b""
                while True:
                    message = await receive()
                    body += message.get("body", b"")
                    if not message.get("more_body", False):
                        break
                status, out = _score_bytes(scorer, body)
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [*_JSON_HEADERS_ASGI, (b"content-length", b"%d" % len(out))],
                }
            )
            await send({"type": "http.response.body", "body": out})
        elif scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    return app


class RSGIApp:
    """(e) The same handler on granian's RSGI interface (body in one await, bytes out)."""

    def __init__(self) -> None:
        self.scorer = Scorer()
        self.headers = [("content-type", "application/json")]

    async def __call__(self, scope: RSGIScope, proto: HTTPProtocol) -> None:
        if scope.proto != "http":
            return
        if scope.path != PATH or scope.method != "POST":
            proto.response_bytes(404, self.headers, _NOT_FOUND)
            return
        status, out = _score_bytes(self.scorer, await proto())
        proto.response_bytes(status, self.headers, out)


def make_rsgi_app() -> RSGIApp:
    return RSGIApp()


# ----------------------------------------------------------------------- candidates


@dataclass(frozen=True)
class Candidate:
    key: str
    label: str
    server: str  # "uvicorn" or "granian"
    factory: str  # a make_* function of this module
    interface: str = "asgi"

    def argv(self, port: int) -> list[str]:
        target = f"asgi_stack:{self.factory}"
        if self.server == "uvicorn":
            return [
                sys.executable,
                "-m",
                "uvicorn",
                target,
                "--factory",
                "--app-dir",
                str(HERE),
                "--host",
                HOST,
                "--port",
                str(port),
                "--workers",
                "1",
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--no-access-log",
                "--log-level",
                "warning",
            ]
        return [
            sys.executable,
            "-m",
            "granian",
            "--interface",
            self.interface,
            "--factory",
            "--working-dir",
            str(HERE),
            "--host",
            HOST,
            "--port",
            str(port),
            "--workers",
            "1",
            "--log-level",
            "warning",
            target,
        ]


CANDIDATES = (
    Candidate("a", "starlette+json / uvicorn (baseline)", "uvicorn", "make_starlette_json_app"),
    Candidate("b", "starlette+msgspec / uvicorn", "uvicorn", "make_starlette_msgspec_app"),
    Candidate("c", "raw ASGI+msgspec / uvicorn", "uvicorn", "make_raw_asgi_app"),
    Candidate("d", "raw ASGI+msgspec / granian", "granian", "make_raw_asgi_app"),
    Candidate("e", "RSGI+msgspec / granian", "granian", "make_rsgi_app", interface="rsgi"),
)


@dataclass
class Running:
    cand: Candidate
    port: int
    proc: subprocess.Popen[bytes]
    log: IO[bytes]
    children: list[int] = field(default_factory=list)
    rss_mib: float = 0.0

    @property
    def pids(self) -> list[int]:
        return [self.proc.pid, *self.children]

    def log_tail(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-3000:].decode(errors="replace")


@dataclass(frozen=True)
class Run:
    """One load run against one server: the generator's result and the server's CPU."""

    result: loadgen.Result
    server_cpu_s: float
    steal: float  # share of CPU 0 taken by the hypervisor during the run
    foreign: float  # share of CPU 0 busy with processes other than the server

    @property
    def cpu_us_per_req(self) -> float:
        return self.server_cpu_s / self.result.count * 1e6 if self.result.count else float("nan")


def wait_quiet(max_wait_s: float, window_s: float = 0.5, limit: float = 0.10) -> float:
    """Wait (at most ``max_wait_s``) until both CPUs are nearly idle; return the wait.

    Other sessions share this machine; a run started while they are busy measures them.
    Our servers are idle between runs, so any load seen here belongs to someone else.
    """
    t0 = time.monotonic()
    while True:
        before = loadgen.cpu_ticks()
        time.sleep(window_s)
        after = loadgen.cpu_ticks()
        shares = []
        for cpu in (SERVER_CPU, LOADGEN_CPU):
            busy, wall = loadgen.busy_seconds(before, after, cpu)
            shares.append(busy / wall if wall else 0.0)
        if max(shares) < limit or time.monotonic() - t0 >= max_wait_s:
            return time.monotonic() - t0


def _pin_server() -> None:
    os.sched_setaffinity(0, {SERVER_CPU})


def _pin_loadgen() -> None:
    os.sched_setaffinity(0, {LOADGEN_CPU})


def start(cand: Candidate, body: bytes, expected: float) -> Running:
    """Start one candidate pinned to the server CPU; check its answer; record its PIDs."""
    port = loadgen.free_port(HOST)
    log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server; stop() closes it
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        cand.argv(port),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        preexec_fn=_pin_server,  # before exec: every process and thread it starts inherits
        env=env,
        cwd=str(ROOT),
    )
    running = Running(cand, port, proc, log)
    try:
        answer = loadgen.wait_http_ready(
            HOST,
            port,
            loadgen.build_request(HOST, port, PATH, body, [("Content-Type", "application/json")]),
            READY_TIMEOUT_S,
            alive=lambda: proc.poll() is None,
        )
        got = json.loads(answer)
        if got.get("event_id") != "e1" or abs(float(got["score"]) - expected) > 1e-12:
            raise RuntimeError(f"{cand.key}: wrong answer {answer!r}, expected score {expected}")
        running.children = loadgen.descendants(proc.pid)
        running.rss_mib = loadgen.proc_rss_mib(running.pids)
    except BaseException:
        sys.stderr.write(f"--- {cand.key} failed to start; its output:\n{running.log_tail()}\n")
        stop(running)
        raise
    return running


def stop(running: Running) -> None:
    try:
        loadgen.stop_process_tree(running.proc, running.children)
    finally:
        running.log.close()


def load(
    running: Running, body: bytes, duration_s: float, rate: float | None = None, spin: bool = False
) -> Run:
    """One loadgen subprocess on the generator CPU against ``running``, server CPU around it."""
    cmd = [
        sys.executable,
        str(HERE / "loadgen.py"),
        "--port",
        str(running.port),
        "--path",
        PATH,
        "--body",
        body.decode(),
        "--header",
        "Content-Type: application/json",
        "--duration",
        str(duration_s),
        "--max-requests",
        str(MAX_REQUESTS),
        "--cpu",
        str(LOADGEN_CPU),
    ]
    if rate is None:
        cmd += ["--concurrency", str(CONCURRENCY), "--spin-ms", "1" if spin else "0"]
    else:
        cmd += ["--rate", str(rate), "--concurrency", str(OPEN_CONNECTIONS)]
        cmd += ["--spin-ms", str(OPEN_SPIN_MS)]
    cpu0, ticks0 = loadgen.proc_cpu_seconds(running.pids), loadgen.cpu_ticks()
    done = subprocess.run(
        cmd,
        capture_output=True,
        timeout=duration_s + 30,
        check=False,
        preexec_fn=_pin_loadgen,  # its imports too stay off the server's CPU
    )
    cpu1, ticks1 = loadgen.proc_cpu_seconds(running.pids), loadgen.cpu_ticks()
    if done.returncode != 0:
        raise RuntimeError(f"loadgen failed: {done.stderr.decode(errors='replace')[-2000:]}")
    result = loadgen.Result.from_json(done.stdout.decode().strip().splitlines()[-1])
    server_s = cpu1 - cpu0
    busy0, wall0 = loadgen.busy_seconds(ticks0, ticks1, SERVER_CPU)
    return Run(
        result,
        server_s,
        loadgen.steal_fraction(ticks0, ticks1, [SERVER_CPU]),
        max(0.0, busy0 - server_s) / wall0 if wall0 else 0.0,
    )


# ----------------------------------------------------------------------- in process


def _time_call(fn: Callable[[], object], repeats: int = 7, sample_s: float = 0.03) -> float:
    """Median µs per call over ``repeats`` samples, each a loop calibrated to ``sample_s``."""
    loops = 1
    while True:
        t = time.perf_counter()
        for _ in range(loops):
            fn()
        if (elapsed := time.perf_counter() - t) >= sample_s / 4 or loops >= 1 << 20:
            break
        loops *= 2
    loops = max(1, int(loops * sample_s / max(elapsed, 1e-9)))
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(loops):
            fn()
        samples.append((time.perf_counter() - t) / loops * 1e6)
    return statistics.median(samples)


PREDICT = "LightGBM predict, 1 row (1, 8) float64"


def timed_on_server_cpu(scorer: Scorer, body: bytes) -> dict[str, float]:
    """:func:`in_process_costs` with this process moved to the servers' CPU meanwhile."""
    os.sched_setaffinity(0, {SERVER_CPU})
    try:
        return in_process_costs(scorer, body)
    finally:
        os.sched_setaffinity(0, {LOADGEN_CPU})  # the orchestrator otherwise only waits


def in_process_costs(scorer: Scorer, body: bytes) -> dict[str, float]:
    """µs per call of the request's parts, without HTTP: model, row, decode/encode."""
    payload = json.loads(body)
    req = _DECODER.decode(body)
    row = scorer.row(payload["features"])
    starlette_dumps = JSONResponse({"event_id": "e1", "score": 0.5}).render
    out = {"event_id": "e1", "score": 0.40679893}

    def json_path() -> None:
        p = json.loads(body)
        starlette_dumps({"event_id": p["event_id"], "score": scorer.score(p["features"])})

    def msgspec_path() -> None:
        r = _DECODER.decode(body)
        _ENCODER.encode(ScoreResponse(event_id=r.event_id, score=scorer.score(r.features)))

    def json_codec() -> None:
        json.loads(body)
        starlette_dumps(out)

    def msgspec_codec() -> None:
        _DECODER.decode(body)
        _ENCODER.encode(ScoreResponse(event_id="e1", score=0.40679893))

    return {
        PREDICT: _time_call(lambda: scorer.predict(row)),
        "build the row from the features dict": _time_call(lambda: scorer.row(req.features)),
        "json.loads + JSONResponse.render": _time_call(json_codec),
        "msgspec decode (Struct) + encode": _time_call(msgspec_codec),
        "handler without HTTP, json (a)": _time_call(json_path),
        "handler without HTTP, msgspec (b-e)": _time_call(msgspec_path),
    }


# ----------------------------------------------------------------------- reporting


def _med(values: Sequence[float]) -> float:
    clean = [v for v in values if v == v]  # drop NaN
    return statistics.median(clean) if clean else float("nan")


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def machine_header() -> list[str]:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    libs = ", ".join(
        f"{d} {_version(d)}"
        for d in ("starlette", "uvicorn", "uvloop", "httptools", "granian", "msgspec")
    )
    return [
        f"# date {dt.date.today().isoformat()}; {platform.machine()} Linux {platform.release()}; "
        f"{os.cpu_count()} CPUs ({model}); Python {platform.python_version()}",
        f"# {libs}, lightgbm {lightgbm.__version__}, numpy {np.__version__}",
        f"# server pinned to CPU {SERVER_CPU}, loadgen to CPU {LOADGEN_CPU}; closed loop "
        f"{CONCURRENCY} connections; open loop {OPEN_RATE:.0f} req/s over "
        f"{OPEN_CONNECTIONS} connections",
    ]


def _clean(run: Run) -> bool:
    """Whether a run had CPU 0 (nearly) to itself: neighbours + hypervisor took < 10%."""
    return run.foreign + run.steal < DISTURBED


def _stats(runs: Sequence[Run]) -> tuple[list[Run], str]:
    """The runs to summarise — the undisturbed ones if any — and 'clean/all' for the table."""
    clean = [r for r in runs if _clean(r)]
    return (clean or list(runs)), f"{len(clean)}/{len(runs)}"


def _ratio_rounds(mine: Sequence[Run], base: Sequence[Run], value: Callable[[Run], float]) -> str:
    """Per-round ratios to the baseline; '-' where either run of the pair was disturbed."""
    out = []
    for m, b in zip(mine, base, strict=False):
        ok = _clean(m) and _clean(b) and value(b) > 0
        out.append(f"{value(m) / value(b):.2f}" if ok else "-")
    return "/".join(out)


def report(
    cfg: Settings,
    runs: dict[str, list[tuple[Run, Run]]],
    servers: dict[str, Running],
    rounds_done: int,
) -> tuple[list[str], dict[str, Any]]:
    """The two tables (closed loop, open loop) and a summary dict per candidate."""
    base = CANDIDATES[0].key
    if base not in runs:
        return ["baseline (a) produced no data"], {}

    def rps(r: Run) -> float:
        return r.result.throughput_per_s

    def cpu(r: Run) -> float:
        return r.cpu_us_per_req

    summary: dict[str, Any] = {}
    base_closed = [c for c, _ in runs[base]]
    for cand in CANDIDATES:
        if cand.key not in runs:
            continue
        closed_all = [c for c, _ in runs[cand.key]]
        opened_all = [o for _, o in runs[cand.key]]
        closed, n_closed = _stats(closed_all)
        opened, n_opened = _stats(opened_all)
        summary[cand.key] = {
            "key": cand.key,
            "label": cand.label,
            "clean": n_closed,
            "rps": _med([rps(c) for c in closed]),
            "p50": _med([c.result.p50_ms for c in closed]),
            "p99": _med([c.result.p99_ms for c in closed]),
            "cpu_us": _med([cpu(c) for c in closed]),
            "cpu_us_min": min(cpu(c) for c in closed_all),
            "srv_util": _med([c.server_cpu_s / c.result.elapsed_s for c in closed]),
            "errors": sum(r.result.errors for r in (*closed_all, *opened_all)),
            "rps_rounds": _ratio_rounds(closed_all, base_closed, rps),
            "cpu_rounds": _ratio_rounds(closed_all, base_closed, cpu),
            "o_clean": n_opened,
            "o_rate": _med([rps(o) for o in opened]),
            "o_p50": _med([o.result.p50_ms for o in opened]),
            "o_p99": _med([o.result.p99_ms for o in opened]),
            "o_p999": _med([o.result.p999_ms for o in opened]),
            "o_cpu_us": _med([cpu(o) for o in opened]),
            "o_lag99": _med([o.result.p99_send_lag_ms for o in opened]),
            "rss_mib": servers[cand.key].rss_mib if cand.key in servers else float("nan"),
        }
    b = summary[base]
    for s in summary.values():
        s["x_rps"] = s["rps"] / b["rps"]
        s["x_cpu"] = s["cpu_us"] / b["cpu_us"]
        s["capacity"] = 1e6 / s["cpu_us"]  # req/s one whole core would give at this cost
    lines = [
        f"closed loop, {CONCURRENCY} connections, {cfg.closed_s:.0f} s x {rounds_done} rounds. "
        f"Medians over the undisturbed runs ('clean': other processes + steal < "
        f"{DISTURBED:.0%} of CPU {SERVER_CPU}; all runs if none was); 'x a' = ratio to the "
        "baseline (of the medians; per round where both runs were clean); 'srv CPU' = "
        "server CPU time / wall; '1-core/s' = 1e6 / CPU µs per request, the rate one whole "
        "core would sustain at that cost (derived).",
        f"{'':<38} {'clean':>5} {'req/s':>6} {'x a':>5} {'per round x a':>24} {'p50 ms':>6} "
        f"{'p99 ms':>6} {'CPU µs/req':>10} {'min':>4} {'x a':>5} {'per round x a':>24} "
        f"{'1-core/s':>8} {'srv CPU':>7} {'RSS MiB':>7}",
    ]
    for s in summary.values():
        lines.append(
            f"({s['key']}) {s['label']:<34} {s['clean']:>5} {s['rps']:>6.0f} {s['x_rps']:>5.2f} "
            f"{s['rps_rounds']:>24} {s['p50']:>6.2f} {s['p99']:>6.2f} {s['cpu_us']:>10.0f} "
            f"{s['cpu_us_min']:>4.0f} {s['x_cpu']:>5.2f} {s['cpu_rounds']:>24} "
            f"{s['capacity']:>8.0f} {s['srv_util']:>7.0%} {s['rss_mib']:>7.0f}"
        )
    lines += [
        "",
        f"open loop, {OPEN_RATE:.0f} req/s, {cfg.open_s:.0f} s x {rounds_done} rounds "
        "(latency from the scheduled send; medians over the clean runs, as above; 'lag p99' = "
        "the generator's own lateness behind its timetable)",
        f"{'':<38} {'clean':>5} {'got/s':>6} {'p50 ms':>6} {'p99 ms':>6} {'p99.9 ms':>8} "
        f"{'CPU µs/req':>10} {'lag p99':>7} {'errors':>6}",
    ]
    for s in summary.values():
        lines.append(
            f"({s['key']}) {s['label']:<34} {s['o_clean']:>5} {s['o_rate']:>6.0f} "
            f"{s['o_p50']:>6.2f} {s['o_p99']:>6.2f} {s['o_p999']:>8.2f} {s['o_cpu_us']:>10.0f} "
            f"{s['o_lag99']:>7.2f} {s['errors']:>6d}"
        )
    return lines, summary


# ----------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1 round, 2 s runs (smoke test)")
    parser.add_argument("--rounds", type=int, default=Settings.rounds)
    parser.add_argument("--only", default="", help="candidate keys to run, e.g. 'acd'")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument(
        "--spin",
        action="store_true",
        help="closed loop: the generator busy-polls (only sensible on an otherwise idle machine)",
    )
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else Settings(rounds=args.rounds)
    spin = args.spin
    cands = [c for c in CANDIDATES if not args.only or c.key in args.only or c.key == "a"]
    if os.cpu_count() is None or (os.cpu_count() or 1) < 2:
        print("# warning: fewer than 2 CPUs; server and generator share one", file=sys.stderr)
    t_start = time.monotonic()
    body = request_body()
    for line in machine_header():
        print(line, flush=True)
    print(
        f"# closed-loop generator {'busy-polls' if spin else 'sleeps in epoll'}; open loop ", end=""
    )
    print(f"busy-polls within {OPEN_SPIN_MS} ms of a send")

    scorer = Scorer()
    expected = scorer.score(json.loads(body)["features"])
    print(f"# model {MODEL.relative_to(ROOT)}: features {', '.join(scorer.names)}")
    print(f"# request body {len(body)} bytes; expected score {expected:.6f}", flush=True)
    # in-process parts of a request: before any server runs, then after every round
    cost_sets = [timed_on_server_cpu(scorer, body)]

    servers: dict[str, Running] = {}
    runs: dict[str, list[tuple[Run, Run]]] = {}
    rounds_done = 0
    waited = 0.0
    try:
        for cand in cands:
            t = time.monotonic()
            try:
                servers[cand.key] = start(cand, body, expected)
            except Exception as exc:
                print(f"# ({cand.key}) {cand.label}: not measured, failed to start: {exc}")
                if cand.key == "a":
                    return 1
                continue
            r = servers[cand.key]
            print(
                f"# ({cand.key}) {cand.label}: pids {r.pids} on port {r.port}, "
                f"ready in {time.monotonic() - t:.1f} s, RSS {r.rss_mib:.0f} MiB",
                flush=True,
            )
        live = [c for c in cands if c.key in servers]
        per_round = len(live) * (cfg.warmup_s + cfg.closed_s + cfg.open_s + 2.0) + 3.0
        for rnd in range(cfg.rounds):
            if rnd and time.monotonic() - t_start + per_round > cfg.budget_s:
                print(f"# time budget: stopping after {rnd} rounds")
                break
            order = live[rnd % len(live) :] + live[: rnd % len(live)]
            for cand in order:
                running = servers[cand.key]
                waited += wait_quiet(QUIET_WAIT_S)
                load(running, body, cfg.warmup_first_s if rnd == 0 else cfg.warmup_s, None, spin)
                closed = load(running, body, cfg.closed_s, None, spin)
                waited += wait_quiet(QUIET_WAIT_S)
                opened = load(running, body, cfg.open_s, rate=OPEN_RATE)
                runs.setdefault(cand.key, []).append((closed, opened))
                cr, orr = closed.result, opened.result
                print(
                    f"round {rnd + 1} ({cand.key}): closed {cr.throughput_per_s:7.0f} req/s "
                    f"p50 {cr.p50_ms:6.2f} p99 {cr.p99_ms:6.2f} ms "
                    f"cpu {closed.cpu_us_per_req:5.0f} µs/req err {cr.errors} "
                    f"steal {closed.steal:.0%} other {closed.foreign:.0%} | "
                    f"open p50 {orr.p50_ms:5.2f} "
                    f"p99 {orr.p99_ms:6.2f} p99.9 {orr.p999_ms:6.2f} ms err {orr.errors} "
                    f"lag99 {orr.p99_send_lag_ms:.2f} ms other {opened.foreign:.0%}",
                    flush=True,
                )
            rounds_done = rnd + 1
            cost_sets.append(timed_on_server_cpu(scorer, body))  # servers idle meanwhile
    finally:
        for running in servers.values():
            stop(running)
        leftovers = [p for r in servers.values() for p in r.pids if loadgen.is_alive(p)]
        if leftovers:
            print(f"# warning: still alive after stop: {leftovers}", file=sys.stderr)

    print()
    costs = {name: _med([c[name] for c in cost_sets]) for name in cost_sets[0]}
    print(
        f"in process, on CPU {SERVER_CPU} (µs per call; median of {len(cost_sets)} sets, each "
        "the median of 7 samples; min of the sets)"
    )
    for name, us in costs.items():
        print(f"  {name:<42} {us:8.1f}  (min {min(c[name] for c in cost_sets):.1f})")
    print()
    lines, summary = report(cfg, runs, servers, rounds_done)
    for line in lines:
        print(line)
    model_us = costs[PREDICT]
    print()
    print(f"model share of server CPU per request (predict {model_us:.0f} µs alone):")
    for s in summary.values():
        print(
            f"  ({s['key']}) {s['label']:<34} {model_us / s['cpu_us']:>5.0%} of {s['cpu_us']:.0f} µs"
        )
    print(
        f"\n# total {time.monotonic() - t_start:.0f} s, of which {waited:.0f} s waiting for "
        "other processes to go quiet"
    )
    if args.json:
        raw = {
            k: [{"closed": asdict(c.result), "open": asdict(o.result)} for c, o in v]
            for k, v in runs.items()
        }
        args.json.write_text(
            json.dumps({"summary": summary, "in_process_us": cost_sets, "raw": raw})
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
