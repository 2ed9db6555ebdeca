"""muse's container image: how big, how long to build, how fast a replica starts from it.

On a Docker engine of its own (Debian's docker.io, started here, stopped by PID), builds
the Debian base from Debian's packages (``deploy/docker/debian-base.sh``), then the
scoring image and the tools image (``EXTRAS=reports``) with no build cache, and reports:

- each image's size, and what the Python environment takes of it;
- build times (base, scoring image, tools image);
- **cold start**: ``docker run`` of a replica on a deployment store holding the
  quickstart, to its first ``/health/ready`` 200 and to its first score (``--starts``
  times, the median) — what a new pod costs before it takes traffic, image pull aside.

``python benchmarks/bench_image.py [--starts 5]`` (~4 min; needs root). Every container
is removed and the daemon stopped before it exits.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from tests.deploy.docker import DockerDaemon, ensure_docker_packages, published_quickstart  # noqa: E402
from tests.e2e.support import free_port, readme_examples  # noqa: E402

READY_TIMEOUT_S = 120.0


def timed(action: str, fn: Callable[..., object], *args: Any, **kwargs: Any) -> float:
    """Seconds ``fn(*args, **kwargs)`` took (printed as it goes: builds take minutes)."""
    started = time.perf_counter()
    fn(*args, **kwargs)
    seconds = time.perf_counter() - started
    print(f"  {action}: {seconds:.1f} s", flush=True)
    return seconds


def build(docker: DockerDaemon, base: str, tag: str, extras: str = "") -> None:
    docker.docker(
        "build",
        "--no-cache",
        "--network",
        "host",
        "--build-arg",
        f"BASE_IMAGE={base}",
        "--build-arg",
        f"EXTRAS={extras}",
        "--tag",
        tag,
        str(ROOT),
        timeout=1800,
    )


def environment_bytes(docker: DockerDaemon, image: str) -> int:
    done = docker.docker(
        "run", "--rm", "--network", "none", "--entrypoint", "du", image, "-sb", "/opt/muse"
    )
    return int(done.stdout.split()[0])


def cold_start(docker: DockerDaemon, image: str, root: Path) -> tuple[float, float]:
    """Seconds from ``docker run`` to ready, and to the first score answered."""
    port = free_port()
    name = f"muse-bench-{port}"
    _, body, shown = readme_examples()[0]
    started = time.perf_counter()
    docker.run_replica(image, name, root, port)
    try:
        deadline = started + READY_TIMEOUT_S
        ready = None
        while time.perf_counter() < deadline:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1)
                if r.status_code == 200:
                    ready = time.perf_counter() - started
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        if ready is None:
            logs = docker.docker("logs", name, check=False)
            raise SystemExit(f"not ready in {READY_TIMEOUT_S} s:\n{logs.stdout}{logs.stderr}")
        r = httpx.post(f"http://127.0.0.1:{port}/v1/score", json=body, timeout=10)
        assert r.json() == shown, r.text
        return ready, time.perf_counter() - started
    finally:
        docker.docker("stop", "--time", "30", name, check=False, timeout=60)
        docker.docker("rm", "--force", name, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=5, help="cold starts to time")
    args = parser.parse_args()
    print(
        f"{time.strftime('%Y-%m-%d')} {platform.machine()} {platform.processor() or ''} "
        f"cores={len(os.sched_getaffinity(0))} python {platform.python_version()}"
    )
    ensure_docker_packages()
    docker = DockerDaemon().start()
    try:
        version = docker.docker("version", "--format", "{{.Server.Version}}").stdout.strip()
        print(f"docker engine {version} (Debian's docker.io), classic builder, --no-cache")
        base_work = docker.root / "base"
        base_work.mkdir()
        script = ROOT / "deploy" / "docker" / "debian-base.sh"
        t_base = timed(
            "base (debootstrap + import)",
            docker.run_script,
            [str(script), "muse-base:bench"],
            env_extra={"WORKDIR": str(base_work)},
        )
        t_image = timed("scoring image", build, docker, "muse-base:bench", "muse:bench")
        t_tools = timed(
            "tools image (reports)", build, docker, "muse-base:bench", "muse:bench-tools", "reports"
        )
        sizes = {"muse-base:bench": (docker.image_size("muse-base:bench"), 0)}
        for tag in ("muse:bench", "muse:bench-tools"):
            sizes[tag] = (docker.image_size(tag), environment_bytes(docker, tag))
        with tempfile.TemporaryDirectory(prefix="muse-bench-image-") as tmp:
            root = Path(tmp)
            published_quickstart(root)
            starts = [cold_start(docker, "muse:bench", root) for _ in range(args.starts)]
        print()
        print(f"{'image':<22}{'size MB':>10}{'python env MB':>16}")
        for tag, (size, env) in sizes.items():
            shown = f"{env / 1e6:.0f}" if tag != "muse-base:bench" else "-"
            print(f"{tag:<22}{size / 1e6:>10.0f}{shown:>16}")
        print(f"\nbuild s: base {t_base:.0f}, scoring image {t_image:.0f}, tools {t_tools:.0f}")
        ready = [s[0] for s in starts]
        first = [s[1] for s in starts]
        print(
            f"cold start ({len(starts)} runs, quickstart from a local store, read-only root): "
            f"docker run -> ready median {statistics.median(ready):.2f} s "
            f"(min {min(ready):.2f}, max {max(ready):.2f}); -> first score median "
            f"{statistics.median(first):.2f} s"
        )
        print(json.dumps({"sizes": sizes, "ready_s": ready, "first_score_s": first}))
    finally:
        docker.stop()


if __name__ == "__main__":
    main()
