"""A real Docker engine for the image tests: Debian's ``docker.io``, started by the test.

The daemon runs with a data root, exec root and socket of its own under a temporary
folder, no iptables and no bridge (containers share the host's network, where they reach
127.0.0.1 and the package registries only), and is stopped by its PID. Images come from no
registry: the base is built from Debian's packages by ``deploy/docker/debian-base.sh``.

Needs root (dockerd and debootstrap do). When ``dockerd`` or ``debootstrap`` is missing, it
is installed from Debian's packages, as the haproxy of the fleet tests is.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.debian import apt_install

__all__ = [
    "IMAGE_UID",
    "DockerDaemon",
    "DockerError",
    "ensure_docker_packages",
    "published_quickstart",
]

#: The user muse's image runs as (the Dockerfile's ``USER``).
IMAGE_UID = 10001

#: Debian's packages: the engine (dockerd, containerd, runc, docker-init) and debootstrap.
PACKAGES = ("docker.io", "debootstrap")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


class DockerError(RuntimeError):
    """The Docker engine could not be installed, started or used."""


def ensure_docker_packages() -> None:
    """Install Debian's docker.io and debootstrap when their commands are missing."""
    if shutil.which("dockerd") and shutil.which("debootstrap"):
        return
    problem = apt_install(PACKAGES, "the image tests")
    if problem is not None or not shutil.which("dockerd"):
        raise DockerError(problem or "docker.io installed, but no dockerd on the PATH")


class DockerDaemon:
    """``dockerd`` on a private socket; :meth:`docker` runs the client against it."""

    def __init__(self) -> None:
        # Short: containerd's sockets live under the exec root (108-byte limit on paths).
        self.root = Path(tempfile.mkdtemp(prefix="muse-dk-", dir="/tmp"))
        self.socket = self.root / "docker.sock"
        self.log = self.root / "dockerd.log"
        self.process: subprocess.Popen[bytes] | None = None
        client = shutil.which("docker")
        if client is None:
            raise DockerError("no docker client on the PATH (Debian's docker.io provides one)")
        self.client = client
        (self.root / "client").mkdir()
        (self.root / "daemon.json").write_text("{}")
        self.env = {
            **os.environ,
            "DOCKER_HOST": f"unix://{self.socket}",
            "DOCKER_CONFIG": str(self.root / "client"),  # no user's credentials or contexts
            "DOCKER_BUILDKIT": "0",  # the engine's classic builder: no buildx plugin needed
        }

    def start(self) -> DockerDaemon:
        command = [
            "dockerd",
            "--config-file",
            str(self.root / "daemon.json"),
            "--data-root",
            str(self.root / "data"),
            "--exec-root",
            str(self.root / "exec"),
            "--pidfile",
            str(self.root / "dockerd.pid"),
            "--host",
            f"unix://{self.socket}",
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
        ]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DockerError(f"dockerd exited at start:\n{self.tail()}")
            if self.socket.exists() and self.docker("info", check=False).returncode == 0:
                return self
            time.sleep(0.2)
        self.stop()
        raise DockerError(f"dockerd not answering after {START_TIMEOUT_S:.0f} s:\n{self.tail()}")

    def docker(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 600.0,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``docker ARGS`` against this daemon; raises with its output when ``check``."""
        done = subprocess.run(
            [self.client, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            cwd=cwd,
            check=False,
        )
        if check and done.returncode != 0:
            raise DockerError(
                f"docker {' '.join(args)} exited {done.returncode}:\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return done

    def run_script(
        self,
        command: Sequence[str],
        *,
        env_extra: Mapping[str, str] | None = None,
        timeout: float = 900.0,
    ) -> str:
        """A script that uses ``docker`` (the base-image builder) against this daemon."""
        env = {**self.env, "DOCKER": self.client, **(env_extra or {})}
        done = subprocess.run(
            list(command), capture_output=True, text=True, timeout=timeout, env=env
        )
        if done.returncode != 0:
            raise DockerError(f"{command[0]} exited {done.returncode}:\n{done.stderr[-3000:]}")
        return done.stdout

    def run_replica(self, image: str, name: str, root: Path, port: int, *env: str) -> None:
        """A scoring replica of ``image`` in a detached container ``name``: host network,
        read-only root, the version cache on a tmpfs, ``root/store`` and ``root/lake``
        mounted and named by ``MUSE_STORE``/``MUSE_LAKE``; ``env``: more ``KEY=VALUE``."""
        extra = [arg for pair in env for arg in ("--env", pair)]
        self.docker(
            "run",
            "--detach",
            "--name",
            name,
            "--network",
            "host",
            "--read-only",
            "--tmpfs",
            f"/var/cache/muse:uid={IMAGE_UID},gid={IMAGE_UID}",
            "--volume",
            f"{root / 'store'}:/srv/store",
            "--volume",
            f"{root / 'lake'}:/srv/lake",
            "--env",
            "MUSE_STORE=/srv/store",
            "--env",
            "MUSE_LAKE=/srv/lake",
            *extra,
            image,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        )

    def image_size(self, tag: str) -> int:
        """Bytes of ``tag`` unpacked (what ``docker images`` shows as SIZE)."""
        out = self.docker("image", "inspect", tag).stdout
        return int(json.loads(out)[0]["Size"])

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM to dockerd (it stops its containers and containerd), by PID; then the
        folders, once nothing is mounted under them."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        for mount in _mounts_under(self.root):
            subprocess.run(["umount", "-l", mount], capture_output=True, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def _mounts_under(root: Path) -> list[str]:
    """Mount points below ``root``, deepest first (overlay layers a killed daemon left)."""
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return []
    points = [line.split()[1] for line in lines if len(line.split()) > 1]
    return sorted((p for p in points if p.startswith(f"{root}/")), key=len, reverse=True)


def published_quickstart(root: Path) -> str:
    """The quickstart published and promoted into ``root/store``, with ``root/lake``, both
    writable by the image's user (replicas write heartbeats and lake files); its version."""
    from muse.fleet import DeploymentStore
    from muse.fleet.promotion import promote
    from muse.fleet.publish import publish
    from tests.config_fixtures import Deployment as Quickstart

    quickstart = Quickstart.copy_quickstart(root / "deploy")
    store = DeploymentStore(root / "store")
    version = publish(quickstart.config, store).version.id
    promote(store, version, switch_delay_s=0)
    for folder in (root / "store", root / "lake"):
        folder.mkdir(exist_ok=True)
        subprocess.run(["chown", "-R", f"{IMAGE_UID}:{IMAGE_UID}", str(folder)], check=True)
    return version
