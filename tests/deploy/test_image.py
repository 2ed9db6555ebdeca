"""muse's container image, built and run on a real Docker engine: a scoring replica serves
the quickstart's published version from a deployment store and answers the README's score;
the same image runs muse's other commands; it holds no compiler, cache or offline extra and
runs as a non-root user on a read-only root file system."""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from muse.scorelog import LAKE_SCHEMA
from tests.deploy.conftest import REPO, TOOLS_TAG, build
from tests.deploy.docker import IMAGE_UID, DockerDaemon, published_quickstart
from tests.e2e.support import free_port, readme_examples

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

#: The image's user: numeric, so Kubernetes' runAsNonRoot can check it.
UID = IMAGE_UID
READY_TIMEOUT_S = 90.0
#: Generous guard against an environment that grows by accident (measured: see RESULTS.md).
MAX_IMAGE_BYTES = 900 * 1024 * 1024


@pytest.fixture(scope="module")
def fleet_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The quickstart published and promoted, in a folder the image's user may write
    (replicas write their heartbeats into the store)."""
    root = tmp_path_factory.mktemp("image")
    version = published_quickstart(root)
    return root, version


@pytest.fixture
def replica(
    docker: DockerDaemon, image: str, fleet_store: tuple[Path, str]
) -> Iterator[tuple[str, int]]:
    """A scoring replica in a container: read-only root FS, the version cache on a tmpfs,
    store and lake mounted; the store, lake and replica name from the environment."""
    root, _ = fleet_store
    port = free_port()
    name = f"muse-replica-{port}"
    docker.run_replica(image, name, root, port, "MUSE_REPLICA=docker-replica")
    try:
        yield name, port
    finally:
        docker.docker("rm", "--force", name, check=False)


def python_in(docker: DockerDaemon, image: str, code: str) -> subprocess.CompletedProcess[str]:
    """``python3 -c CODE`` in a throwaway container of ``image``, with no network."""
    return docker.docker(
        "run", "--rm", "--network", "none", "--entrypoint", "python3", image, "-c", code
    )


def wait_ready(docker: DockerDaemon, name: str, port: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        state = docker.docker("inspect", "--format", "{{.State.Running}}", name).stdout
        if state.strip() != "true":
            logs = docker.docker("logs", name, check=False)
            pytest.fail(f"the replica's container exited:\n{logs.stdout}\n{logs.stderr}")
        time.sleep(0.3)
    logs = docker.docker("logs", name, check=False)
    pytest.fail(f"not ready after {READY_TIMEOUT_S:.0f} s:\n{logs.stdout}\n{logs.stderr}")


def test_the_image_serves_the_readme_score_from_a_store(
    docker: DockerDaemon, replica: tuple[str, int], fleet_store: tuple[Path, str]
) -> None:
    name, port = replica
    root, version = fleet_store
    wait_ready(docker, name, port)
    for path, body, shown in readme_examples():  # evt-2 needs the feature store's cards
        response = httpx.post(f"http://127.0.0.1:{port}{path}", json=body, timeout=10)
        assert response.status_code == 200, response.text
        assert response.json() == shown
        assert response.headers["x-muse-config-version"] == version
    heartbeat = json.loads((root / "store" / "replicas" / "docker-replica.json").read_text())
    assert heartbeat["version"] == version  # the replica's name came from MUSE_REPLICA

    # SIGTERM (docker stop, as Kubernetes does): drain, flush the lake, exit 0.
    docker.docker("stop", "--time", "30", name, timeout=60)
    status = docker.docker("inspect", "--format", "{{.State.ExitCode}}", name).stdout
    assert status.strip() == "0", docker.docker("logs", name, check=False).stderr
    rows = ds.dataset(root / "lake", format="parquet", partitioning="hive").to_table()
    assert "evt-1" in rows.column("event_id").to_pylist()
    # and it left the store's replica list on its way out
    assert not (root / "store" / "replicas" / "docker-replica.json").exists()


def test_the_image_runs_as_a_non_root_user_with_muse_as_entrypoint(
    docker: DockerDaemon, image: str
) -> None:
    config = json.loads(docker.docker("image", "inspect", image).stdout)[0]["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["muse"]
    assert config["Cmd"][0] == "serve"
    assert "8000/tcp" in config["ExposedPorts"]
    assert "MUSE_CACHE=/var/cache/muse" in config["Env"]


def test_the_image_runs_other_muse_commands(
    docker: DockerDaemon, image: str, fleet_store: tuple[Path, str]
) -> None:
    root, version = fleet_store
    done = docker.docker(
        "run",
        "--rm",
        "--network",
        "none",
        "--read-only",
        "--volume",
        f"{root / 'store'}:/srv/store:ro",
        image,
        "versions",
        "--store",
        "/srv/store",
    )
    assert version in done.stdout
    assert "active" in done.stdout


def test_the_image_holds_no_compiler_cache_or_offline_extra(
    docker: DockerDaemon, image: str
) -> None:
    probe = (
        "for c in gcc cc g++ c++ make pip pip3 uv; do command -v $c; done; "
        "ls -d /root/.cache /opt/uv /build 2>/dev/null; "
        "for m in duckdb matplotlib sklearn onnx pytest; do "
        'python3 -c "import $m" 2>/dev/null && echo $m; done; id -u'
    )
    done = docker.docker(
        "run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c", probe
    )
    assert done.stdout.split() == [str(UID)], f"found in the image: {done.stdout}"
    # The chart's preStop hook sleeps with the image's own `sleep`.
    docker.docker("run", "--rm", "--network", "none", "--entrypoint", "sleep", image, "0")
    size = docker.image_size(image)
    print(f"\nimage {image}: {size / 1e6:.0f} MB")
    assert size < MAX_IMAGE_BYTES


def test_a_command_that_needs_an_extra_says_so_in_the_image(
    docker: DockerDaemon, image: str, tmp_path: Path
) -> None:
    """`muse report` needs DuckDB, which a replica's image leaves out: exit 2, the fix."""
    done = python_in(
        docker,
        image,
        "from muse.extras import require\n"
        "try:\n"
        "    require('duckdb', 'reading the score lake')\n"
        "except ImportError as e:\n"
        "    print(type(e).__name__, e)\n",
    )
    assert done.stdout.startswith("MissingExtraError reading the score lake needs duckdb")
    assert "pip install 'muse-serve[reports]'" in done.stdout
    lake = tmp_path / "lake" / "date=2026-01-01" / "predictor=ensemble-v1"
    lake.mkdir(parents=True)
    pq.write_table(LAKE_SCHEMA.empty_table(), lake / "part-0.parquet")
    cli = docker.docker(
        "run",
        "--rm",
        "--network",
        "none",
        "--volume",
        f"{REPO / 'examples' / 'quickstart'}:/srv/quickstart:ro",
        "--volume",
        f"{tmp_path / 'lake'}:/srv/lake:ro",
        image,
        *shlex.split(
            "report alignment /srv/quickstart/muse.yaml -p ensemble-v1 -t bank1 --lake /srv/lake"
        ),
        check=False,
    )
    assert cli.returncode == 2, cli.stdout + cli.stderr
    assert "pip install 'muse-serve[reports]'" in cli.stderr
    assert "Traceback" not in cli.stderr


def test_the_reports_extra_builds_into_a_tools_image(
    docker: DockerDaemon, base_image: str, image: str
) -> None:
    """`--build-arg EXTRAS=reports`: the image the refresh job and reports run from."""
    tools = build(docker, base_image, TOOLS_TAG, "reports")
    done = python_in(
        docker, tools, "import duckdb, matplotlib; print(duckdb.sql('select 42').fetchall()[0][0])"
    )
    assert done.stdout.strip() == "42"
    print(f"\nimage {tools}: {docker.image_size(tools) / 1e6:.0f} MB")
    assert docker.image_size(tools) > docker.image_size(image)
