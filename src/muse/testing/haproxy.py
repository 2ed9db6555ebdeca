"""A real load balancer in front of real replicas: Debian's haproxy, for fleet tests and
benchmarks.

:func:`haproxy_binary` finds ``haproxy`` on the machine, or installs Debian's package
without root: ``apt-get download`` of haproxy and the libraries a minimal Debian lacks,
unpacked with ``dpkg-deb -x`` under the cache (``<repo>/.cache/debian``), run with
``LD_LIBRARY_PATH``. :func:`start_haproxy` runs it on a generated config — round robin,
an active health check on ``/health/ready``, retries on connection failures — and
:class:`RunningHaproxy` stops it by PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from muse.errors import MuseError
from muse.testing.venvs import cache_root

__all__ = ["HaproxyError", "RunningHaproxy", "haproxy_binary", "haproxy_config", "start_haproxy"]

HOST = "127.0.0.1"
#: Debian bookworm's haproxy and the libraries it links that a minimal system lacks.
_PACKAGES = ("haproxy", "liblua5.3-0", "libopentracing-c-wrapper0", "libopentracing1")


class HaproxyError(MuseError, RuntimeError):
    """haproxy could not be found, installed or started."""


def haproxy_binary() -> tuple[Path, dict[str, str]]:
    """The ``haproxy`` executable and the environment it needs to run.

    On the ``PATH`` (or ``/usr/sbin``): used as is. Otherwise Debian's package is
    downloaded once and unpacked under the cache (no root needed; needs ``apt-get``
    and access to Debian's package mirror).
    """
    found = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").is_file() else None
    )
    if found:
        return Path(found), {}
    root = cache_root().parent / "debian" / "haproxy"
    binary = root / "usr" / "sbin" / "haproxy"
    if not binary.is_file():
        _unpack_debian(root)
    libs = sorted(str(p) for p in (root / "usr" / "lib").glob("*-linux-gnu*") if p.is_dir())
    return binary, {"LD_LIBRARY_PATH": ":".join(libs)} if libs else {}


def _unpack_debian(root: Path) -> None:
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise HaproxyError(
            "no haproxy on this machine and no apt-get/dpkg-deb to fetch Debian's: "
            "install haproxy (apt-get install haproxy)"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent) as tmp:
        done = _download(tmp)
        if done.returncode != 0 and os.geteuid() == 0:
            # A machine whose package lists were never fetched: fetch them, then retry.
            subprocess.run(["apt-get", "update"], capture_output=True, timeout=600, check=False)
            done = _download(tmp)
        debs = sorted(Path(tmp).glob("*.deb"))
        if done.returncode != 0 or len(debs) < len(_PACKAGES):
            raise HaproxyError(f"apt-get download {' '.join(_PACKAGES)} failed: {done.stderr}")
        staged = Path(tmp) / "root"
        for deb in debs:
            subprocess.run(["dpkg-deb", "-x", str(deb), str(staged)], check=True, timeout=120)
        if root.exists():
            shutil.rmtree(root)
        os.replace(staged, root)


def _download(folder: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["apt-get", "download", *_PACKAGES],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def haproxy_config(
    port: int,
    backends: Sequence[tuple[str, int]],
    *,
    stats_port: int | None = None,
    check_interval_ms: int = 200,
) -> str:
    """An haproxy config for ``backends`` (name, port) on 127.0.0.1.

    What a fleet needs from its balancer: an active health check on ``/health/ready``
    (a replica stopping turns not-ready first, and one still starting is not sent
    traffic), retries on another replica when a connection fails or a kept-alive
    connection closed before answering (the request never reached the application), and
    nothing retried once a replica accepted it.
    """
    lines = [
        "global",
        "    maxconn 4096",
        "defaults",
        "    mode http",
        "    timeout connect 1s",
        "    timeout client 30s",
        "    timeout server 30s",
        "    timeout http-keep-alive 10s",
        "    retries 3",
        "    option redispatch 1",
        "    retry-on conn-failure empty-response",
        "frontend muse",
        f"    bind {HOST}:{port}",
        "    default_backend replicas",
        "backend replicas",
        "    balance roundrobin",
        "    option httpchk GET /health/ready",
        "    http-check expect status 200",
        f"    default-server inter {check_interval_ms}ms fastinter {check_interval_ms}ms "
        "fall 1 rise 1",
    ]
    lines += [f"    server {name} {HOST}:{p} check" for name, p in backends]
    if stats_port is not None:
        lines += [
            "frontend stats",
            f"    bind {HOST}:{stats_port}",
            "    stats enable",
            "    stats uri /stats",
        ]
    return "\n".join(lines) + "\n"


@dataclass
class RunningHaproxy:
    """A started haproxy: its port and process; stop it with :meth:`stop` (by PID)."""

    port: int
    config: Path
    log: Path
    proc: subprocess.Popen[bytes]
    binary: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in ``timeout``."""
        if self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout)


def start_haproxy(
    folder: Path,
    port: int,
    backends: Sequence[tuple[str, int]],
    *,
    check_interval_ms: int = 200,
    ready_timeout_s: float = 20.0,
) -> RunningHaproxy:
    """Run haproxy in the foreground (``-db``) on a config written to ``folder``, and
    return once it accepts connections on ``port``."""
    binary, env = haproxy_binary()
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "haproxy.cfg"
    config.write_text(
        haproxy_config(port, backends, check_interval_ms=check_interval_ms), encoding="utf-8"
    )
    log = folder / "haproxy.log"
    full_env = {**os.environ, **env}
    check = subprocess.run(
        [str(binary), "-c", "-f", str(config)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=30,
        check=False,
    )
    if check.returncode != 0:
        raise HaproxyError(f"haproxy rejects its config: {check.stdout}{check.stderr}")
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(binary), "-db", "-f", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
        )
    running = RunningHaproxy(port, config, log, proc, binary, env)
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise HaproxyError(f"haproxy exited with {proc.returncode}: {running.output()}")
        try:
            httpx.get(f"{running.url}/health/live", timeout=1.0)
            return running
        except httpx.TransportError:
            time.sleep(0.05)
    running.stop()
    raise HaproxyError(f"haproxy did not accept connections on {port}: {running.output()}")
