"""Fixtures of the deployment tests: a Docker engine and muse's image, built once per run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.docker import DockerDaemon, ensure_docker_packages

REPO = Path(__file__).resolve().parents[2]
BASE_TAG = "muse-base:bookworm"
IMAGE_TAG = "muse:test"
TOOLS_TAG = "muse:test-tools"


@pytest.fixture(scope="session")
def docker() -> Iterator[DockerDaemon]:
    ensure_docker_packages()
    daemon = DockerDaemon().start()
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def base_image(docker: DockerDaemon) -> str:
    """A Python base built from Debian's packages (no registry is reachable here)."""
    work = docker.root / "base"
    work.mkdir()
    script = REPO / "deploy" / "docker" / "debian-base.sh"
    docker.run_script([str(script), BASE_TAG], env_extra={"WORKDIR": str(work)})
    return BASE_TAG


def build(docker: DockerDaemon, base: str, tag: str, *extras: str) -> str:
    docker.docker(
        "build",
        "--network",
        "host",
        "--build-arg",
        f"BASE_IMAGE={base}",
        "--build-arg",
        f"EXTRAS={' '.join(extras)}",
        "--tag",
        tag,
        str(REPO),
        timeout=1200,
    )
    return tag


@pytest.fixture(scope="session")
def image(docker: DockerDaemon, base_image: str) -> str:
    """The scoring replica's image, as the Dockerfile builds it by default."""
    return build(docker, base_image, IMAGE_TAG)
