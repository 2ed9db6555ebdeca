"""``muse serve --store``: real server processes serve a store's active version and follow
its promotions — every worker of every replica switches, a refusal is visible, and
``--workers N`` (of a store or of a config file) behaves as a fleet of N with one
``/metrics``."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from muse.fleet import DeploymentStore
from muse.fleet.promotion import live_replicas, promote
from tests.cli_support import invoke
from tests.config_fixtures import Deployment as Quickstart
from tests.e2e.support import MuseProcess, event, metric_value, wait_until
from tests.fleet.versions import publish_broken, publish_renamed


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[MuseProcess]]:
    """Servers the test starts (append them); each stopped gracefully at teardown."""
    started: list[MuseProcess] = []
    yield started
    errors = []
    for server in started:
        try:
            server.stop()
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, "\n".join(errors)


def _follow(
    servers: list[MuseProcess], tmp_path: Path, store: DeploymentStore, *args: str
) -> MuseProcess:
    n = len(servers)
    server = MuseProcess(
        None,
        tmp_path / f"replica-{n}.log",
        [
            "--store",
            store.url,
            "--lake",
            str(tmp_path / "lake"),
            "--cache",
            str(tmp_path / f"cache-{n}"),
            "--poll",
            "0.1",
            *args,
        ],
    )
    servers.append(server)
    return server.start()


def _versions_seen(server: MuseProcess) -> dict[str, str]:
    """Replica → the version it serves, from one scrape of the server's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    out = {}
    for family in text_string_to_metric_families(text):
        if family.name == "muse_version_info":
            for s in family.samples:
                if s.value == 1:
                    out[s.labels["replica"]] = s.labels["version"]
    return out


def test_serving_a_store_with_no_active_version_says_what_to_do(
    quickstart: Quickstart, store: DeploymentStore, tmp_path: Path
) -> None:
    publish_renamed(quickstart, store, "quickstart-1")
    done = subprocess.run(
        MuseProcess.command("serve", "--store", store.url, "--port", "9"),
        capture_output=True,
        text=True,
        env=MuseProcess.environment(),
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "no active version yet" in done.stderr
    assert "muse promote" in done.stderr
    both = invoke("serve", str(quickstart.config), "--store", store.url)
    assert both.exit_code == 2
    assert "config file" in both.output


def test_replicas_follow_promotions_and_refuse_a_broken_version(
    quickstart: Quickstart, store: DeploymentStore, tmp_path: Path, servers: list[MuseProcess]
) -> None:
    a = publish_renamed(quickstart, store, "quickstart-1")
    promote(store, a, switch_delay_s=0)
    one = _follow(servers, tmp_path, store, "--replica", "solo")
    two = _follow(servers, tmp_path, store, "--workers", "2", "--replica", "two")
    with one.client() as c:
        r = c.post("/v1/score", json=event("e1", "bank1"))
        assert r.status_code == 200, r.text
        assert r.headers["x-muse-config-version"] == a
    wait_until(lambda: len(live_replicas(store)) == 3, 20, "three replicas' heartbeats")
    assert set(_versions_seen(two).values()) == {a}
    seen = _versions_seen(two)
    assert len(seen) == 2  # one scrape sees both workers
    assert all(name.startswith("two-") for name in seen)  # <name>-<pid> each

    b = publish_renamed(quickstart, store, "quickstart-2")
    promoted = invoke("promote", b, "--store", store.url, "--timeout", "60")
    assert promoted.exit_code == 0, promoted.output
    wait_until(
        lambda: (
            set(_versions_seen(one).values()) == {b} and set(_versions_seen(two).values()) == {b}
        ),
        10,
        "every worker on the new version",
    )
    with two.client() as c:
        headers = {
            c.post("/v1/score", json=event(f"e{i}", "bank2")).headers["x-muse-config-version"]
            for i in range(12)
        }
    assert headers == {b}

    broken = publish_broken(quickstart, store, tmp_path)
    refused = invoke("promote", broken, "--store", store.url, "--timeout", "60")
    assert refused.exit_code == 1
    assert "refused" in refused.output
    assert "solo" in refused.output
    assert "models.m2: cannot be loaded" in refused.output
    with one.client() as c:
        doc = c.get("/admin/config").json()
        assert doc["config_version"] == b
        assert doc["replica"] == "solo"
        assert doc["fleet"]["version"] == b
        assert doc["fleet"]["refusals"][-1]["version"] == broken
        metrics = c.get("/metrics").text
        assert metric_value(metrics, "muse_promotion_answers_total", answer="refused") == 1
        assert c.post("/v1/score", json=event("e99", "bank1")).headers["x-muse-config-version"] == b
        reload = c.post("/admin/reload")
        assert reload.status_code == 409
        assert reload.json()["error"]["code"] == "follows_store"
    assert set(_versions_seen(two).values()) == {b}
    assert "refused version" in one.output()
    listing = invoke("versions", "--store", store.url, "--replicas")
    assert listing.exit_code == 0, listing.output
    solo = next(line for line in listing.stdout.splitlines() if line.strip().startswith("solo"))
    assert b in solo
    assert f"last refused {broken}" in solo
    assert "models.m2: cannot be loaded" in solo


def test_workers_of_a_config_file_reload_together_with_one_metrics_endpoint(
    quickstart: Quickstart, tmp_path: Path, servers: list[MuseProcess]
) -> None:
    server = MuseProcess(quickstart.config, tmp_path / "workers.log", ["--workers", "2"])
    servers.append(server)
    server.start()
    with server.client() as c:
        wait_until(lambda: len(_versions_seen(server)) == 2, 20, "both workers in /metrics")
        first = set(_versions_seen(server).values())
        assert len(first) == 1
        for i in range(10):
            assert c.post("/v1/score", json=event(f"e{i}", "bank1")).status_code == 200
        text = c.get("/metrics").text
        assert metric_value(text, "muse_responses_total", path="/v1/score", status="200") == 10
        quickstart.replace("version: quickstart-1", "version: quickstart-2")
        reloaded = c.post("/admin/reload")
        assert reloaded.status_code == 200, reloaded.text
        new = reloaded.json()["config_version"]
        assert new not in first
        # Every worker switched: every probe, whichever worker answers, says so.
        versions = {c.get("/health/ready").json()["config_version"] for _ in range(16)}
        assert versions == {new}
        assert set(_versions_seen(server).values()) == {new}
