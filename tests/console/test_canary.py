"""The console's Candidates page compares a canary split's arms, each on its own events."""

from __future__ import annotations

import pytest

from muse.console.state import ConsoleState
from muse.evaluation.reports import arms_report
from muse.fleet import DeploymentStore, publish
from muse.fleet.promotion import promote
from muse.scorelog import LakeReader
from tests.config_fixtures import Deployment
from tests.console.conftest import Fleet, console_client
from tests.lifecycle_fixtures import filled_lake, write_labels


@pytest.fixture(scope="module")
def canary_fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    root = tmp_path_factory.mktemp("canary-console")
    d = Deployment.copy_quickstart(root / "deploy")
    doc = d.doc()
    doc["model_ci"] = {"min_events": 500}
    doc["routing"]["scoringRules"].insert(
        0,
        {
            "description": "canary for bank2",
            "condition": {"tenants": ["bank2"]},
            "targets": [
                {"predictor": "single-v1", "weight": 60},
                {"predictor": "ensemble-v1", "weight": 40},
            ],
            "stickyBy": "card_id",
        },
    )
    d.write(doc)
    lake, frame = filled_lake(d, 9_000)
    labels = write_labels(frame, root / "labels.parquet")
    store = DeploymentStore(root / "store")
    first = publish(d.config, store, by="tests").version.id
    assert promote(store, first, timeout_s=5, by="tests").activated
    state = ConsoleState(store, root / "cache", lake=str(lake), labels=str(labels), refresh_s=3600)
    state.refresh()
    return Fleet(root, store, lake, first, first, state)


def test_the_candidates_page_compares_the_arms(canary_fleet: Fleet) -> None:
    found = [r for r in canary_fleet.state.snapshot().candidates if r.arm]
    assert [(r.candidate, r.live, r.tenant) for r in found] == [
        ("ensemble-v1", "single-v1", "bank2")
    ]
    (result,) = found
    assert result.comparison is not None, result.error
    loaded = canary_fleet.state.config(canary_fleet.first)
    with LakeReader(canary_fleet.lake, labels=canary_fleet.root / "labels.parquet") as reader:
        expected = arms_report(
            loaded, reader, "single-v1", "ensemble-v1", "bank2", with_labels=True
        ).comparison
    assert result.comparison.checks == expected.checks
    with console_client(canary_fleet) as c:
        html = c.get("/candidates").text
    assert 'data-candidate="ensemble-v1" data-tenant="bank2" data-kind="arm"' in html
    assert "Canary arm" in html
    assert f"{expected.live_n:,} events served by" in html
    assert "each arm on its own events" in html
    routing = c_get(canary_fleet, "/routing")
    assert "split: single-v1 60%, ensemble-v1 40% (sticky by card_id)" in routing


def c_get(fleet: Fleet, path: str) -> str:
    with console_client(fleet) as c:
        return c.get(path).text
