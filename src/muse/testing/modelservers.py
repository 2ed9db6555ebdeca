"""Real Open Inference Protocol (KServe V2) model servers, run as child processes.

:func:`start_triton` runs Triton Inference Server 2.51 (the CPU build shipped in the
``nvidia-pytriton`` wheel) on a repository from :func:`~muse.testing.triton_repository`;
:func:`start_mlserver` runs MLServer 1.7 on a folder from
:func:`~muse.testing.mlserver_settings`. Each server runs from its own cached venv
(:func:`~muse.testing.ensure_venv`), listens on 127.0.0.1 only (HTTP and gRPC; metrics
are off), logs to a file, and is returned once it and every model in its repository are
ready. A :class:`RunningServer` stops by PID: SIGTERM, then SIGKILL to its whole process
group after a grace period; it can be killed (a crash) and restarted on the same ports::

    repo = triton_repository({"m1": Path("models/m1.txt")}, tmp / "repo")
    with start_triton(repo) as server:
        client = tritonclient.http.InferenceServerClient(server.http_target)

Every model server gets ``OMP_NUM_THREADS=1``: tests and benchmarks run the client and the
server on the same few cores, and OpenMP's default of one thread per core would
oversubscribe them.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import math
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from muse.testing.venvs import (
    ModelServerError,
    ServerKind,
    ensure_venv,
    tail,
    triton_dist,
    venv_info,
)

__all__ = ["HOST", "RunningServer", "free_port", "free_ports", "start_mlserver", "start_triton"]

#: The only address the servers listen on.
HOST = "127.0.0.1"
#: Default longest wait for a server and its models to turn ready.
START_DEADLINE_S = 120.0
#: Default grace period between SIGTERM and SIGKILL.
STOP_GRACE_S = 15.0
#: Environment variables never passed to a server: they would make it load other packages
#: or, for ``MLSERVER_*``, override the settings the folder and the ports give it.
_DROPPED_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "CONDA_PREFIX")
_THREADS_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
#: Triton's Python backend keeps one shared-memory region per model instance in /dev/shm,
#: and MLServer's parallel workers use multiprocessing semaphores (``sem.mp-*``) there; a
#: killed server leaves them behind, so stop() and kill() remove the ones it had mapped.
_SHM = Path("/dev/shm")
#: A log line reporting an error: glog's ``E1123 ...`` (Triton) or a Python exception line.
_ERROR = re.compile(r"^E\d{4} |^\w+(\.\w+)*(Error|Exception): |\bERROR\b")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it: bind to port 0)."""
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on 127.0.0.1 right now (all bound at once, then released)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(n):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind((HOST, 0))
            ports.append(int(s.getsockname()[1]))
        return ports


class RunningServer:
    """A model server child process on fixed ports of 127.0.0.1.

    Built started by :func:`start_triton` / :func:`start_mlserver`. ``stop()`` and ``kill()``
    end it; ``restart()`` starts it again with the same command, ports and log file (the
    log is appended to). Use it as a context manager to stop it on exit.
    """

    def __init__(
        self,
        *,
        kind: ServerKind,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: Path,
        http_port: int,
        grpc_port: int,
        models: Sequence[str],
        log_path: Path,
        deadline_s: float = START_DEADLINE_S,
        warm_up: bool = True,
        shm_prefix: str | None = None,
    ) -> None:
        self.kind: ServerKind = kind
        self.http_port = http_port
        self.grpc_port = grpc_port
        self.models: tuple[str, ...] = tuple(models)
        self.log_path = log_path
        self.deadline_s = deadline_s
        self.warm_up = warm_up
        self._argv = tuple(argv)
        self._env = dict(env)
        self._cwd = cwd
        self._shm_prefix = shm_prefix
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        #: Seconds the last start took until every model was ready.
        self.start_seconds = 0.0

    def __repr__(self) -> str:
        state = f"pid={self._process.pid}" if self._process is not None else "stopped"
        return f"<RunningServer {self.kind} {self.http_url} grpc={self.grpc_target} {state}>"

    # -- addresses ------------------------------------------------------------------------

    @property
    def http_url(self) -> str:
        """Base URL of the V2 HTTP/REST API, e.g. ``http://127.0.0.1:8000``."""
        return f"http://{HOST}:{self.http_port}"

    @property
    def http_target(self) -> str:
        """``host:port`` of the V2 HTTP/REST API (what ``tritonclient.http`` takes)."""
        return f"{HOST}:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        """``host:port`` of the V2 gRPC API (what gRPC channels and tritonclient take)."""
        return f"{HOST}:{self.grpc_port}"

    @property
    def pid(self) -> int:
        """PID of the server process (also its process group id)."""
        if self._process is None:
            raise ModelServerError(f"{self.kind} server on {self.http_url} is not running")
        return self._process.pid

    @property
    def running(self) -> bool:
        """Whether the server process was started and has not exited."""
        return self._process is not None and self._process.poll() is None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, deadline_s: float | None = None) -> Self:
        """Start the process, wait until the server and every model are ready, then warm up.

        Warming up (when ``warm_up``) sends each model one inference of a single row of
        zeros, shaped and typed as its metadata declares: the first inference after "ready"
        is slow (about 100 ms for MLServer's worker, 30 ms for Triton's stub), and tests
        with tight timeouts must not see that. On failure (the process exits, the deadline
        passes, a warm-up inference fails) the process is stopped and
        :class:`ModelServerError` carries the log's error lines and tail.
        """
        if self.running:
            raise ModelServerError(f"{self!r} is already running; stop() it first")
        deadline = self.deadline_s if deadline_s is None else deadline_s
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self._log.write(f"\n==== muse.testing: starting {' '.join(self._argv)}\n".encode())
        self._log.flush()
        started = time.monotonic()
        try:
            self._process = subprocess.Popen(
                self._argv,
                cwd=self._cwd,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() reaches every child
            )
        except OSError as exc:
            self._log.close()
            self._log = None
            raise ModelServerError(f"could not run {self._argv[0]!r}: {exc}") from exc
        try:
            self._wait_ready(started + deadline, deadline)
            if self.warm_up:
                for model in self.models:
                    self._warm_up(model, timeout=max(1.0, started + deadline - time.monotonic()))
        except BaseException:
            self.stop(grace_s=5.0)
            raise
        self.start_seconds = time.monotonic() - started
        return self

    def stop(self, grace_s: float = STOP_GRACE_S) -> int | None:
        """Stop gracefully: SIGTERM to the server, SIGKILL to its process group after ``grace_s``.

        Returns the server's exit status (negative: the signal that ended it, so ``-9``
        means it had to be killed) once it has exited and nothing is left of its process
        group; None when it was not running.
        """
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=grace_s)
        return self._finish(process)

    def kill(self) -> int | None:
        """End the server abruptly (SIGKILL to its whole process group), as a crash would.

        Returns its exit status (``-9`` unless it had already exited); None when not running.
        """
        process = self._process
        if process is None:
            return None
        return self._finish(process)

    def restart(self, deadline_s: float | None = None) -> Self:
        """``stop()`` (if running), then ``start()`` on the same ports."""
        self.stop()
        return self.start(deadline_s)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- probes ---------------------------------------------------------------------------

    def is_ready(self, timeout: float = 2.0) -> bool:
        """``GET /v2/health/ready`` and ``/v2/models/<name>/ready`` of every model all answer 200."""
        paths = ["/v2/health/ready"] + [f"/v2/models/{m}/ready" for m in self.models]
        return all(self._get_ok(p, timeout) for p in paths) and self._accepts(self.grpc_port)

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the server's log."""
        return tail(self.log_path, lines)

    def _diagnosis(self) -> str:
        """The log's error lines, then its tail: Triton ends a failed start with tables."""
        errors = [line for line in tail(self.log_path, 400).splitlines() if _ERROR.search(line)]
        head = "errors logged:\n" + "\n".join(errors[-12:]) + "\n" if errors else ""
        return f"{head}log tail:\n{self.log_tail(30)}"

    def _wait_ready(self, deadline: float, budget: float) -> None:
        assert self._process is not None
        while True:
            code = self._process.poll()
            if code is not None:
                raise ModelServerError(
                    f"{self.kind} server exited with code {code} before it was ready "
                    f"(log {self.log_path})\n{self._diagnosis()}"
                )
            if self.is_ready(timeout=1.0):
                return
            if time.monotonic() >= deadline:
                raise ModelServerError(
                    f"{self.kind} server was not ready within {budget:.0f}s: "
                    f"{self.http_url}/v2/health/ready and models {list(self.models)} "
                    f"(log {self.log_path})\n{self._diagnosis()}"
                )
            time.sleep(0.05)

    def _warm_up(self, model: str, timeout: float) -> None:
        url = f"{self.http_url}/v2/models/{model}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                metadata = json.load(response)
            inputs = [
                {
                    "name": tensor["name"],
                    "datatype": tensor["datatype"],
                    "shape": [1 if d < 0 else d for d in tensor["shape"]],
                }
                for tensor in metadata["inputs"]
            ]
            for tensor in inputs:
                tensor["data"] = [0] * math.prod(tensor["shape"])
            body = json.dumps({"inputs": inputs}).encode()
            request = urllib.request.Request(
                f"{url}/infer", body, {"content-type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            reason = str(exc)
            if isinstance(exc, urllib.error.HTTPError):
                reason += ": " + exc.read().decode(errors="replace")[:500]
            raise ModelServerError(
                f"warming up model {model!r} of the {self.kind} server failed: {reason} "
                f"(inputs from {url}); pass warm_up=False to skip it\n{self._diagnosis()}"
            ) from exc

    def _get_ok(self, path: str, timeout: float) -> bool:
        try:
            with urllib.request.urlopen(self.http_url + path, timeout=timeout) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    @staticmethod
    def _accepts(port: int) -> bool:
        try:
            with socket.create_connection((HOST, port), timeout=1.0):
                return True
        except OSError:
            return False

    def _finish(self, process: subprocess.Popen[bytes]) -> int:
        """SIGKILL whatever is left of the process group, reap the server, clean up."""
        # Only the server's own files: multiprocessing semaphores it has mapped, and anything
        # under its private prefix (Triton names its regions with it).
        patterns = ["sem.mp-*"] + ([f"{self._shm_prefix}*"] if self._shm_prefix else [])
        leftovers = _shm_mapped_by(_live_members(process.pid), patterns)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        try:
            try:
                code = process.wait(timeout=30.0)
            except subprocess.TimeoutExpired as exc:
                raise ModelServerError(
                    f"{self.kind} server pid {process.pid} survived SIGKILL for 30s"
                ) from exc
            self._wait_group_gone(process.pid, timeout=10.0)
        finally:
            self._process = None
            if self._log is not None:
                self._log.close()
                self._log = None
            if self._shm_prefix:
                leftovers.update(_SHM.glob(f"{self._shm_prefix}*"))
            for path in leftovers:
                path.unlink(missing_ok=True)
        return code

    def _wait_group_gone(self, pgid: int, timeout: float) -> None:
        # A child holding an inherited listening socket would keep the port bound after
        # the server is gone; a zombie holds nothing, so only live members count.
        deadline = time.monotonic() + timeout
        while _live_members(pgid):
            if time.monotonic() >= deadline:
                raise ModelServerError(
                    f"processes {sorted(_live_members(pgid))} of the {self.kind} server's "
                    f"group {pgid} are still alive {timeout:.0f}s after SIGKILL"
                )
            time.sleep(0.02)


def start_triton(
    repository: Path,
    *,
    http_port: int | None = None,
    grpc_port: int | None = None,
    deadline_s: float = START_DEADLINE_S,
    log_path: Path | None = None,
    venv: Path | None = None,
    warm_up: bool = True,
) -> RunningServer:
    """Run ``tritonserver`` on ``repository`` and return it once every model is ready.

    Ports default to free ones of 127.0.0.1; both APIs bind 127.0.0.1 only, metrics (and
    the SageMaker / Vertex AI endpoints) are off. ``log_path`` defaults to
    ``<repository>/../triton-<http_port>.log``; ``venv`` to :func:`ensure_venv("triton")`.
    ``warm_up``: see :meth:`RunningServer.start`.
    """
    repository = repository.resolve()
    models = _triton_models(repository)
    info = venv_info(venv if venv is not None else ensure_venv("triton"))
    dist = triton_dist(info)
    http_port, grpc_port = _ports(http_port, grpc_port)
    env = _server_env(info.path)
    # The backend stub embeds libpython of the venv's interpreter: make it findable.
    env["LD_LIBRARY_PATH"] = _join_paths(str(info.python_libdir), env.get("LD_LIBRARY_PATH"))
    env["MUSE_TRITON_SITE_PACKAGES"] = str(info.site_packages)
    shm_prefix = f"muse-triton-{uuid.uuid4().hex[:12]}-"

    argv = [
        str(dist / "bin" / "tritonserver"),
        f"--model-repository={repository}",
        f"--backend-directory={dist / 'backends'}",
        f"--http-address={HOST}",
        f"--http-port={http_port}",
        f"--grpc-address={HOST}",
        f"--grpc-port={grpc_port}",
        "--allow-metrics=false",
        "--allow-sagemaker=false",
        "--allow-vertex-ai=false",
        "--strict-readiness=true",
        "--exit-on-error=true",
        "--exit-timeout-secs=5",
        "--pinned-memory-pool-byte-size=0",
        "--log-verbose=0",
        f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
    ]
    server = RunningServer(
        kind="triton",
        argv=argv,
        env=env,
        cwd=repository,
        http_port=http_port,
        grpc_port=grpc_port,
        models=models,
        log_path=log_path or repository.parent / f"triton-{http_port}.log",
        deadline_s=deadline_s,
        warm_up=warm_up,
        shm_prefix=shm_prefix,
    )
    return server.start()


def start_mlserver(
    folder: Path,
    *,
    http_port: int | None = None,
    grpc_port: int | None = None,
    deadline_s: float = START_DEADLINE_S,
    log_path: Path | None = None,
    venv: Path | None = None,
    warm_up: bool = True,
) -> RunningServer:
    """Run ``mlserver start folder`` and return it once every model is ready.

    ``folder`` is one made by :func:`~muse.testing.mlserver_settings` (its settings.json
    binds 127.0.0.1 and turns metrics off); the ports, free ones by default, are passed as
    ``MLSERVER_HTTP_PORT`` / ``MLSERVER_GRPC_PORT``. ``log_path`` defaults to
    ``<folder>/../mlserver-<http_port>.log``; ``venv`` to :func:`ensure_venv("mlserver")`.
    ``warm_up``: see :meth:`RunningServer.start`.
    """
    folder = folder.resolve()
    models = _mlserver_models(folder)
    info = venv_info(venv if venv is not None else ensure_venv("mlserver"))
    http_port, grpc_port = _ports(http_port, grpc_port)
    env = _server_env(info.path)
    env["MLSERVER_HTTP_PORT"] = str(http_port)
    env["MLSERVER_GRPC_PORT"] = str(grpc_port)
    server = RunningServer(
        kind="mlserver",
        argv=[str(info.path / "bin" / "mlserver"), "start", str(folder)],
        env=env,
        cwd=folder,
        http_port=http_port,
        grpc_port=grpc_port,
        models=models,
        log_path=log_path or folder.parent / f"mlserver-{http_port}.log",
        deadline_s=deadline_s,
        warm_up=warm_up,
    )
    return server.start()


def _ports(http_port: int | None, grpc_port: int | None) -> tuple[int, int]:
    """The given ports, free distinct ones of 127.0.0.1 for those not given."""
    taken = {p for p in (http_port, grpc_port) if p}
    spare = iter(p for p in free_ports(4) if p not in taken)
    http, grpc = http_port or next(spare), grpc_port or next(spare)
    if http == grpc:
        raise ModelServerError(f"http_port and grpc_port must differ, both are {http}")
    return http, grpc


def _server_env(venv: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _DROPPED_ENV and not k.startswith("MLSERVER_")
    }
    env.update(_THREADS_ENV)
    env["PATH"] = _join_paths(str(venv / "bin"), env.get("PATH"))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _join_paths(first: str, rest: str | None) -> str:
    return f"{first}:{rest}" if rest else first


def _triton_models(repository: Path) -> list[str]:
    models = sorted(p.parent.name for p in repository.glob("*/config.pbtxt"))
    if not models:
        raise ModelServerError(
            f"{repository} has no model (no <name>/config.pbtxt); build it with triton_repository()"
        )
    return models


def _mlserver_models(folder: Path) -> list[str]:
    models = []
    for settings in sorted(folder.glob("*/model-settings.json")):
        name = json.loads(settings.read_text(encoding="utf-8")).get("name")
        models.append(name or settings.parent.name)
    if not models:
        raise ModelServerError(
            f"{folder} has no model (no <name>/model-settings.json); build it with mlserver_settings()"
        )
    return models


def _live_members(pgid: int) -> set[int]:
    """PIDs of the processes in group ``pgid`` that are not zombies (read from /proc)."""
    members = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited while we looked
            continue
        # Fields after the parenthesised command: state, ppid, pgrp, ...
        state, _, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            members.add(int(entry.name))
    return members


def _shm_mapped_by(pids: set[int], patterns: Sequence[str]) -> set[Path]:
    """Files of /dev/shm matching ``patterns`` that processes ``pids`` have mapped."""
    found = set()
    for pid in pids:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
        except OSError:  # exited while we looked
            continue
        for line in maps.splitlines():
            path = line.split(maxsplit=5)[5:]
            if path and path[0].startswith(f"{_SHM}/"):
                file = Path(path[0].removesuffix(" (deleted)"))
                if any(fnmatch.fnmatchcase(file.name, p) for p in patterns):
                    found.add(file)
    return found
