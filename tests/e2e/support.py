"""Helpers of the end-to-end tests: a deployment copy, servers on real ports, HTTP helpers.

Two ways to run the service, both over real HTTP on 127.0.0.1:

* :class:`MuseProcess` runs ``muse serve`` as a child process, exactly as an operator
  does, and stops it by PID with SIGTERM (graceful), killing it only if it hangs;
* :class:`ThreadServer` runs :class:`~muse.serving.app.MuseApp` under uvicorn in a
  background thread, for tests that must inject something into the process (a
  :class:`~muse.backends.pool.ModelPool` whose models fail or sleep) or call the app
  object (``begin_shutdown``).

No fixed sleeps for synchronisation: everything waits with :func:`wait_until`, which polls
a condition until a deadline.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn
import yaml
from prometheus_client.parser import text_string_to_metric_families

from muse.backends import ModelPool
from muse.service import ScoringService
from muse.serving.app import MuseApp
from muse.serving_config import hash_api_key

__all__ = [
    "ALL_PREDICTORS",
    "MAX_BODY",
    "MAX_EVENTS",
    "MODEL_NAMES",
    "QUICKSTART",
    "SAMPLE",
    "TENANTS",
    "UNROUTED_TENANT",
    "Deployment",
    "MuseProcess",
    "ThreadServer",
    "event",
    "features",
    "free_port",
    "metric_value",
    "readme_examples",
    "wait_until",
]

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "examples" / "quickstart"
SAMPLE: dict[str, float] = json.loads((QUICKSTART / "sample_event.json").read_text())
TENANTS = ("bank1", "bank2", "fintech3")
#: What a client response must never contain: physical models, predictors, fingerprints.
MODEL_NAMES = ("m1", "m2", "m3")
ALL_PREDICTORS = ("single-v1", "ensemble-v1")
HOST = "127.0.0.1"
#: Server limits of the shared open server (``server:`` section).
MAX_BODY = 4096
MAX_EVENTS = 50
#: A tenant no scoring rule of the shared open server matches.
UNROUTED_TENANT = "acme"
#: Longest a server may take to turn ready (imports, model loads, warm-up).
START_TIMEOUT_S = 30.0
#: Longest a graceful stop may take before the process is killed (and the test fails).
STOP_TIMEOUT_S = 30.0

T = TypeVar("T")

#: A README example: ``$ curl … /v1/score … -d 'BODY'`` and, on the next line, the response.
_README_EXAMPLE = re.compile(
    r"^\$ curl -s -X POST \S+(/v1/score) .*?-d '(\{.*\})'\n(\{.*\})$", re.M
)


def readme_examples() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """The README's ``curl`` examples: (path, request body, the response it shows)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return [(m[1], json.loads(m[2]), json.loads(m[3])) for m in _README_EXAMPLE.finditer(text)]


def wait_until(
    condition: Callable[[], T | None], timeout: float, what: str, interval: float = 0.02
) -> T:
    """Poll ``condition`` until it returns a truthy value (returned) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it: bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def features(i: int) -> dict[str, float]:
    """Deterministic, distinct, plausible features of event ``i`` (the sample, perturbed)."""
    out: dict[str, float] = {}
    for j, (name, value) in enumerate(SAMPLE.items()):
        factor = 1.0 + 0.15 * (((i * 7 + j * 3) % 13) - 6) / 6
        out[name] = round(value * factor + 0.01 * ((i + j) % 5), 6)
    return out


def event(
    event_id: str, tenant: str, feats: Mapping[str, Any] | None = None, **intent: Any
) -> dict[str, Any]:
    """One event of the wire format ``{event_id, intent, features}``."""
    return {
        "event_id": event_id,
        "intent": {"tenant": tenant, **intent},
        "features": dict(SAMPLE if feats is None else feats),
    }


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels`` (0 if none)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


class Deployment:
    """A private copy of the quickstart (muse.yaml, models/, transforms/, features/, sample_event.json).

    Each test gets its own folder and score lake; the edits rewrite only the copy's YAML.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = root / "muse.yaml"
        self.lake = root / "lake"

    @classmethod
    def copy_quickstart(cls, dest: Path) -> Deployment:
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("muse.yaml", "sample_event.json"):
            shutil.copy2(QUICKSTART / name, dest / name)
        for folder in ("models", "transforms", "features"):
            shutil.copytree(QUICKSTART / folder, dest / folder)
        deployment = cls(dest)
        deployment.set_lake("lake")
        return deployment

    # -- the YAML -----------------------------------------------------------------------

    def doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = yaml.safe_load(self.config.read_text(encoding="utf-8"))
        return doc

    def write(self, doc: Mapping[str, Any], path: Path | None = None) -> None:
        """Write ``doc`` as the config (or to ``path``), atomically: a reload never sees half."""
        target = self.config if path is None else path
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(yaml.safe_dump(dict(doc), sort_keys=False), encoding="utf-8")
        os.replace(tmp, target)

    @contextmanager
    def editing(self) -> Iterator[dict[str, Any]]:
        """``with d.editing() as doc: ...`` rewrites the YAML with the edited ``doc``."""
        doc = self.doc()
        yield doc
        self.write(doc)

    def set_auth(
        self,
        tenants: Mapping[str, Sequence[str]] | None,
        admins: Sequence[str] = (),
        *,
        hashed: bool = True,
    ) -> None:
        """Plain API keys per tenant (stored hashed unless ``hashed=False``); None: ``auth: none``."""
        with self.editing() as doc:
            if tenants is None:
                doc["auth"] = "none"
                return
            h = hash_api_key if hashed else (lambda k: k)
            doc["auth"] = {
                "tenants": {t: [h(k) for k in keys] for t, keys in tenants.items()},
                "admins": [h(k) for k in admins],
            }

    def set_lake(self, url: str, **options: float) -> None:
        with self.editing() as doc:
            doc["lake"] = {**(doc.get("lake") or {}), "url": url, **options}

    def set_server(self, **limits: Any) -> None:
        """``server:`` settings, e.g. ``max_body_bytes=4096, max_batch_events=50``."""
        with self.editing() as doc:
            doc["server"] = {**(doc.get("server") or {}), **limits}

    def save_as(self, name: str) -> Path:
        """A copy of the current YAML beside it (same relative paths), e.g. to load in-process."""
        path = self.root / name
        shutil.copy2(self.config, path)
        return path

    def service(self, path: Path | None = None, pool: ModelPool | None = None) -> ScoringService:
        """The scoring core of this config, in this process: the reference for expected scores."""
        return ScoringService.from_config(self.config if path is None else path, pool=pool)


class MuseProcess:
    """``muse serve CONFIG`` (or, with no config, ``muse serve`` with ``extra_args`` such as
    ``--store URL``) as a child process on a free port; stdout+stderr go to a file.

    ``wrapper`` is a command that ``exec`` s its arguments (so the PID stays the server's),
    e.g. one that first gives the server a mount namespace of its own.
    """

    def __init__(
        self,
        config: Path | None,
        log: Path,
        extra_args: Sequence[str] = (),
        port: int = 0,
        wrapper: Sequence[str] = (),
    ) -> None:
        self.config = config
        self.log = log
        self.extra_args = tuple(extra_args)
        self.wrapper = tuple(wrapper)
        #: A fixed port (a replica restarted behind a load balancer keeps its own).
        self.fixed_port = port
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def command(*args: str) -> list[str]:
        """The console script beside this interpreter (what users run), else the same entry point."""
        script = Path(sys.executable).parent / "muse"
        if script.is_file():
            return [str(script), *args]
        return [sys.executable, "-c", "from muse.cli import main; main()", *args]

    @staticmethod
    def environment() -> dict[str, str]:
        return {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "250", "NO_COLOR": "1"}

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10.0, **kwargs)

    def start(self) -> MuseProcess:
        """Start and wait until ``/health/ready`` answers 200 (retrying once on a port race)."""
        for _attempt in range(3):
            self.port = self.fixed_port or free_port()
            with self.log.open("ab") as log:
                self.proc = subprocess.Popen(
                    list(self.wrapper)
                    + self.command(
                        "serve",
                        *([] if self.config is None else [str(self.config)]),
                        "--host",
                        HOST,
                        "--port",
                        str(self.port),
                    )
                    + list(self.extra_args),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=self.environment(),
                )
            if self._wait_ready():
                return self
            if "address already in use" not in self.output().lower():
                break
        raise AssertionError(
            f"muse serve exited with {self.proc.returncode if self.proc else '?'} before "
            f"turning ready; output:\n{self.output()}"
        )

    def _wait_ready(self) -> bool:
        assert self.proc is not None
        proc = self.proc

        def ready() -> bool | None:
            if proc.poll() is not None:
                return True  # exited: stop polling, reported below
            try:
                return httpx.get(f"{self.url}/health/ready", timeout=1.0).status_code == 200
            except httpx.TransportError:
                return None

        try:
            wait_until(ready, START_TIMEOUT_S, f"muse serve {self.config} to turn ready")
        except AssertionError:
            self.stop()
            raise AssertionError(
                f"muse serve did not turn ready; output:\n{self.output()}"
            ) from None
        return proc.poll() is None

    def signal(self, sig: int) -> None:
        assert self.proc is not None, "not started"
        assert self.proc.poll() is None, f"exited with {self.proc.returncode}"
        os.kill(self.proc.pid, sig)

    def stop_gracefully(self, timeout: float = STOP_TIMEOUT_S) -> str:
        """SIGTERM and check the stop was graceful; returns the server's output.

        uvicorn re-raises the signal it caught once its shutdown is complete, so a graceful
        stop exits with -SIGTERM (or 0); the app logs ``stopped`` after draining shadows and
        closing the score lake.
        """
        code = self.stop(timeout)
        out = self.output()
        assert code in (0, -signal.SIGTERM), f"exit code {code}; output:\n{out}"
        assert "muse.serving: stopped" in out, out
        return out

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, wait up to ``timeout``; a hang is killed (SIGKILL) and fails the test."""
        proc = self.proc
        if proc is None:
            return 0
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            raise AssertionError(
                f"muse serve (pid {proc.pid}) ignored SIGTERM for {timeout}s and was killed; "
                f"output:\n{self.output()}"
            ) from None


class ThreadServer:
    """A :class:`MuseApp` served by uvicorn in a background thread of the test process."""

    def __init__(self, app: MuseApp) -> None:
        self.app = app
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=HOST,
                port=self.port,
                lifespan="on",
                loop="asyncio",
                http="h11",
                ws="none",
                log_level="warning",
                access_log=False,
            )
        )
        self.thread = threading.Thread(target=self.server.run, name="e2e-uvicorn", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10.0, **kwargs)

    def start(self) -> ThreadServer:
        self.thread.start()

        def up() -> bool:
            return not self.thread.is_alive() or (self.server.started and self.app.ready)

        wait_until(up, START_TIMEOUT_S, "the in-thread server to turn ready")
        if not self.thread.is_alive():
            raise AssertionError("the in-thread server stopped during startup (see the log)")
        return self

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Ask uvicorn to exit (runs the app's graceful shutdown) and wait for the thread."""
        if not self.thread.is_alive():
            return
        self.server.should_exit = True
        self.thread.join(timeout)
        if self.thread.is_alive():
            self.server.force_exit = True
            self.thread.join(5)
            raise AssertionError(f"the in-thread server did not stop within {timeout}s")
