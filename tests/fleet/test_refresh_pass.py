"""A refresh pass end to end on a real store and a real lake: a tenant whose traffic drifted
is detected, refitted, validated on held-out events, published and promoted; its alert
rates are back on R; a tenant with too few events is left alone and says why; a candidate
that fails validation is not promoted; every decision is in the store's audit record."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from typer.testing import Result

from muse.config import LoadedConfig, load_config
from muse.fleet import DeploymentStore
from muse.fleet.promotion import live_replicas, promote
from muse.fleet.publish import publish
from muse.refresh import RefreshError, refresh_history, run_refresh
from muse.scorelog import LakeRow, LakeWriter
from muse.transforms import QuantileMap, Reference
from tests.cli_support import invoke
from tests.config_fixtures import Deployment as Quickstart
from tests.e2e.support import MuseProcess, event, wait_until

END = datetime(2026, 12, 1, tzinfo=UTC)


def THRESHOLDS(reference: Reference) -> list[float]:  # noqa: N802 - a constant of R
    return [float(t) for t in reference.ppf([0.95, 0.99])]


DAYS = 14
PER_DAY = 2_500


def drifted_raw(qmap: QuantileMap, u: np.ndarray) -> np.ndarray:
    """Raw aggregates whose tail is twice as heavy as the one ``qmap`` was fitted on: the
    served map puts twice the promised share above every threshold."""
    return np.interp((1.0 + u) / 2.0, qmap.levels, qmap.source)


def lake_rows(
    loaded: LoadedConfig,
    tenant: str,
    predictor: str,
    raw: np.ndarray,
    day: int,
    role: str = "live",
) -> Iterable[LakeRow]:
    transforms = loaded.transforms[predictor]
    current = transforms.tenants.get(tenant, transforms.default)
    scores = current.quantile_map(raw)
    start = END - timedelta(days=DAYS - day)
    step = timedelta(days=1) / max(1, raw.size)
    for i, (r, s) in enumerate(zip(raw, scores, strict=True)):
        yield LakeRow(
            event_id=f"{tenant}-{day}-{i}",
            timestamp=start + i * step,
            tenant=tenant,
            intent={"tenant": tenant},
            predictor=predictor,
            role=role,
            fingerprint=loaded.fingerprints[predictor],
            tq_version=current.label,
            raw=float(r),
            score=float(s),
            experts={},
            latency_ms=1.0,
            config_version="cfg",
        )


@pytest.fixture
def fleet(tmp_path: Path) -> tuple[DeploymentStore, str, LoadedConfig]:
    quickstart = Quickstart.copy_quickstart(tmp_path / "deploy")
    # bank1 acts at two thresholds: R's 5 % and 1 % points.
    reference = load_config(quickstart.config).references["fraud-v1"]
    doc = quickstart.doc()
    doc["tenants"] = {
        "bank1": {"thresholds": dict(zip(("review", "block"), THRESHOLDS(reference), strict=True))}
    }
    quickstart.write(doc)
    store = DeploymentStore(tmp_path / "store")
    promote(store, publish(quickstart.config, store).version.id, switch_delay_s=0)
    return store, str(tmp_path / "lake"), load_config(quickstart.config)


def write_traffic(lake: str, loaded: LoadedConfig, *, late_shift: bool = False) -> None:
    rng = np.random.default_rng(5)
    bank1 = loaded.transforms["ensemble-v1"].tenants["bank1"].quantile_map
    with LakeWriter(lake) as writer:
        for day in range(DAYS):
            u = rng.random(PER_DAY)
            if late_shift and day >= DAYS - 3:
                u = (1.0 + u) / 2.0  # the last days drift again: the candidate cannot keep up
            writer.append(
                list(lake_rows(loaded, "bank1", "ensemble-v1", drifted_raw(bank1, u), day))
            )
        small = loaded.transforms["single-v1"].default.quantile_map
        writer.append(
            list(
                lake_rows(loaded, "fintech3", "single-v1", drifted_raw(small, rng.random(300)), 13)
            )
        )


def test_a_drifting_tenant_is_refitted_validated_and_promoted(
    fleet: tuple[DeploymentStore, str, LoadedConfig], tmp_path: Path
) -> None:
    store, lake, loaded = fleet
    write_traffic(lake, loaded)
    before = store.active()
    assert before is not None
    said: list[str] = []
    result = run_refresh(store, cache=tmp_path / "cache", lake=lake, now=END, say=said.append)

    decisions = {(d.predictor, d.tenant): d for d in result.decisions}
    bank1 = decisions[("ensemble-v1", "bank1")]
    assert bank1.verdict == "drifting"
    assert bank1.action == "refit"
    assert bank1.old_version == "bank1/v1"
    assert bank1.new_version == "bank1/v2"
    assert bank1.new_error is not None
    assert bank1.old_error is not None
    assert bank1.new_error < bank1.old_error
    fintech3 = decisions[("single-v1", "fintech3")]
    assert fintech3.verdict == "too_few_events"
    assert fintech3.action == "none"
    assert "no alert level judged" in fintech3.reason
    assert result.promoted
    after = store.active()
    assert after is not None
    assert after["version"] == result.published != before["version"]

    # The promoted version serves bank1's new map, and it puts fresh drifted traffic back
    # on R: within ±10 % of the promised alert rate at 1 %.
    served = load_config(store.materialize(str(after["version"]), tmp_path / "check"))
    new = served.transforms["ensemble-v1"].tenants["bank1"]
    assert new.version == 2
    assert new.method.startswith("refresh:")
    old_map = loaded.transforms["ensemble-v1"].tenants["bank1"].quantile_map
    fresh = drifted_raw(old_map, np.random.default_rng(99).random(200_000))
    reference = served.references["fraud-v1"]
    threshold = float(reference.ppf([0.99])[0])
    assert float(np.mean(new.quantile_map(fresh) > threshold)) == pytest.approx(0.01, rel=0.1)
    assert float(np.mean(old_map(fresh) > threshold)) == pytest.approx(0.02, rel=0.1)

    (record,) = refresh_history(store)
    assert record["published"] == result.published
    assert record["promoted"] is True
    audited = {(d["predictor"], d["tenant"]): d for d in record["decisions"]}
    assert audited[("ensemble-v1", "bank1")]["new_version"] == "bank1/v2"
    assert audited[("ensemble-v1", "bank1")]["policy"] == bank1.policy
    # What bank1 sees change at its thresholds, on the held-out events: the old map alerted
    # about twice the promised rate, the new one about the promise.
    review, block = audited[("ensemble-v1", "bank1")]["actions"]
    assert (review["action"], block["action"]) == ("review", "block")
    assert review["promised"] == pytest.approx(0.05)
    assert block["promised"] == pytest.approx(0.01)
    for level in (review, block):
        assert level["old_rate"] == pytest.approx(2 * level["promised"], rel=0.25)
        assert level["new_rate"] == pytest.approx(level["promised"], rel=0.25)
    # The maps are monotone: an event changes action when it crosses either threshold.
    crossed = sum(level["old_rate"] - level["new_rate"] for level in (review, block))
    assert (
        review["actions_changed"] == block["actions_changed"] == pytest.approx(crossed, abs=0.005)
    )
    assert any("ensemble-v1/bank1 (live): refit" in line for line in said)


def test_a_dry_run_decides_but_changes_nothing(
    fleet: tuple[DeploymentStore, str, LoadedConfig], tmp_path: Path
) -> None:
    store, lake, loaded = fleet
    write_traffic(lake, loaded)
    before = store.active()
    result = run_refresh(store, cache=tmp_path / "cache", lake=lake, now=END, dry_run=True)
    assert [d.action for d in result.decisions if d.tenant == "bank1"] == ["refit"]
    assert result.outcome == "dry run: 1 map(s) would be promoted"
    assert store.active() == before
    assert refresh_history(store) == []


def test_a_candidate_that_fails_validation_is_not_promoted_and_is_logged(
    fleet: tuple[DeploymentStore, str, LoadedConfig], tmp_path: Path
) -> None:
    store, lake, loaded = fleet
    write_traffic(lake, loaded, late_shift=True)
    before = store.active()
    result = run_refresh(store, cache=tmp_path / "cache", lake=lake, now=END)
    (bank1,) = [d for d in result.decisions if d.tenant == "bank1"]
    assert bank1.action == "failed"
    assert "drifts on held-out events" in bank1.why or "not closer to R" in bank1.why
    assert bank1.new_version is None
    assert not result.promoted
    assert store.active() == before
    (record,) = refresh_history(store)
    assert record["outcome"] == "nothing to promote"


def test_a_pass_needs_a_lake_it_can_find(
    fleet: tuple[DeploymentStore, str, LoadedConfig], tmp_path: Path
) -> None:
    store, _, _ = fleet
    with pytest.raises(RefreshError, match="give --lake"):
        run_refresh(store, cache=tmp_path / "cache", now=END)
    with pytest.raises(RefreshError, match="no active version"):
        run_refresh(DeploymentStore(tmp_path / "empty"), cache=tmp_path / "cache", lake="x")


def test_a_candidate_predictor_gets_a_map_for_each_tenant_it_shadows_before_going_live(
    fleet: tuple[DeploymentStore, str, LoadedConfig], tmp_path: Path
) -> None:
    """The model-update path: ensemble-v1 shadows fintech3, which has no map of its own for
    it yet. Once the shadow rows hold enough events, the pass fits fintech3's first
    ensemble-v1 map (validated on held-out shadow events) and promotes it, so routing
    fintech3 to ensemble-v1 later needs no refit. bank2, shadowed on its own map and
    aligned, is left alone."""
    store, lake, loaded = fleet
    rng = np.random.default_rng(8)
    transforms = loaded.transforms["ensemble-v1"]
    assert "fintech3" not in transforms.tenants
    default = transforms.default.quantile_map
    bank2 = transforms.tenants["bank2"].quantile_map
    with LakeWriter(lake) as writer:
        for day in range(DAYS):
            # fintech3's traffic is not the default map's: its tail is twice as heavy
            raw = drifted_raw(default, rng.random(PER_DAY))
            writer.append(list(lake_rows(loaded, "fintech3", "ensemble-v1", raw, day, "shadow")))
            raw = np.interp(rng.random(PER_DAY), bank2.levels, bank2.source)
            writer.append(list(lake_rows(loaded, "bank2", "ensemble-v1", raw, day, "shadow")))
    result = run_refresh(store, cache=tmp_path / "cache", lake=lake, now=END)
    decisions = {(d.predictor, d.tenant): d for d in result.decisions}
    fintech3 = decisions[("ensemble-v1", "fintech3")]
    assert fintech3.role == "shadow"
    assert fintech3.old_version == "default"
    assert fintech3.action == "refit"
    assert fintech3.new_version == "fintech3/v1"
    assert decisions[("ensemble-v1", "bank2")].verdict == "aligned"
    assert decisions[("ensemble-v1", "bank2")].action == "none"
    assert result.promoted
    after = store.active()
    assert after is not None
    served = load_config(store.materialize(str(after["version"]), tmp_path / "check"))
    assert served.transforms["ensemble-v1"].tenants["fintech3"].version == 1


def test_an_aligned_tenant_on_the_default_keeps_it_without_a_failure(
    fleet: tuple[DeploymentStore, str, LoadedConfig], tmp_path: Path
) -> None:
    """fintech3's shadow traffic follows the default map: its last 7 days hold enough events
    to judge it aligned, so a first map of its own is tried (the default is only a prior),
    but the held-out 20 % of its 14 days are too few to validate one. The tenant keeps the
    default, and the pass reads "none" with the why, not a failure every pass."""
    store, lake, loaded = fleet
    rng = np.random.default_rng(9)
    default = loaded.transforms["ensemble-v1"].default.quantile_map
    per_day = 400  # 7 days: 2,800 >= Eq. 5's 1,825 at 5 %; held out: 1,120 < 1,825
    with LakeWriter(lake) as writer:
        for day in range(DAYS):
            raw = np.interp(rng.random(per_day), default.levels, default.source)
            writer.append(list(lake_rows(loaded, "fintech3", "ensemble-v1", raw, day, "shadow")))
    result = run_refresh(store, cache=tmp_path / "cache", lake=lake, now=END)
    (fintech3,) = [d for d in result.decisions if d.tenant == "fintech3"]
    assert fintech3.verdict == "aligned"
    assert fintech3.action == "none"
    assert fintech3.why is not None
    assert fintech3.why.startswith("keeps the cold-start default: cannot validate")
    assert fintech3.new_version is None
    assert not result.promoted


# -- the command --------------------------------------------------------------------------


def refresh_cli(store: DeploymentStore, lake: str, tmp_path: Path, *args: str) -> Result:
    # The traffic ends on END: the pass is run as of then.
    return invoke(
        "refresh",
        "--store",
        store.url,
        "--lake",
        lake,
        "--cache",
        str(tmp_path / "cache"),
        "--as-of",
        END.isoformat(),
        *args,
    )


def test_the_command_prints_each_decision_and_the_outcome(
    fleet: tuple[DeploymentStore, str, LoadedConfig], tmp_path: Path
) -> None:
    store, lake, loaded = fleet
    write_traffic(lake, loaded)
    dry = refresh_cli(store, lake, tmp_path, "--dry-run")
    assert dry.exit_code == 0, dry.output
    (line,) = [x for x in dry.stdout.splitlines() if " bank1 " in x]
    assert line.split()[:5] == ["ensemble-v1", "bank1", "drifting", "refit", "bank1/v1"]
    assert "dry run: 1 map(s) would be promoted" in dry.stdout
    assert refresh_history(store) == []

    done = refresh_cli(store, lake, tmp_path, "--watch", "0.05", "--max-passes", "2")
    assert done.exit_code == 0, done.output
    outcomes = [x for x in done.stdout.splitlines() if " pass over " in x]
    assert len(outcomes) == 2
    assert "promoted v-" in outcomes[0]
    # The second pass judges bank1 on its new map, which has no traffic yet: no refit.
    assert outcomes[1].endswith("nothing to promote")
    assert "ensemble-v1/bank1 (live): refit" in done.stderr

    history = invoke("refresh", "--store", store.url, "--history", "5")
    assert history.exit_code == 0, history.output
    lines = history.stdout.splitlines()
    assert "1 drifting, 1 refitted, 0 failed" in lines[0]
    assert "ensemble-v1/bank1: refit bank1/v1 -> bank1/v2" in lines[1]
    assert "0 refitted" in lines[-1]


def test_the_command_refuses_bad_input_by_name(
    fleet: tuple[DeploymentStore, str, LoadedConfig], tmp_path: Path
) -> None:
    store, lake, loaded = fleet
    write_traffic(lake, loaded)
    result = refresh_cli(store, lake, tmp_path, "--predictor", "nope")
    assert result.exit_code == 2
    assert "not a routed predictor: ['nope']" in " ".join(result.stderr.split())
    result = invoke("refresh", "--store", str(tmp_path / "empty"), "--lake", lake)
    assert result.exit_code == 2
    assert "no active version" in result.stderr
    result = refresh_cli(store, lake, tmp_path, "--tenant", "bank9")
    assert result.exit_code == 2
    assert "no rows of tenant(s) ['bank9'] in the lake's window" in " ".join(result.stderr.split())
    only = refresh_cli(store, lake, tmp_path, "--tenant", "bank1", "--dry-run")
    assert only.exit_code == 0, only.output
    assert [x.split()[1] for x in only.stdout.splitlines()[1:-1]] == ["bank1"]
    result = refresh_cli(store, lake, tmp_path, "--as-of", "last tuesday")
    assert result.exit_code == 2
    assert "--as-of must be an ISO date or datetime" in result.stderr
    assert invoke("refresh", "--store", str(tmp_path / "none"), "--history", "3").stdout == (
        "no refresh pass recorded yet\n"
    )


def test_a_refresh_reaches_a_running_replica(
    fleet: tuple[DeploymentStore, str, LoadedConfig], tmp_path: Path
) -> None:
    """The promotion is the fleet's two-phase one: a replica following the store prepares
    the refreshed version and switches to it; its responses name the new version."""
    store, lake, loaded = fleet
    write_traffic(lake, loaded)
    replica = MuseProcess(
        None,
        tmp_path / "replica.log",
        [
            "--store",
            store.url,
            "--lake",
            lake,
            "--cache",
            str(tmp_path / "rcache"),
            "--poll",
            "0.1",
        ],
    ).start()
    try:
        wait_until(lambda: len(live_replicas(store)) == 1, 20, "the replica's heartbeat")
        result = run_refresh(
            store, cache=tmp_path / "cache", lake=lake, now=END, switch_delay_s=0.5
        )
        assert result.promoted, result.outcome
        assert result.published is not None

        def switched() -> bool:
            with replica.client() as c:
                r = c.post("/v1/score", json=event("after", "bank1"))
                return bool(r.headers.get("x-muse-config-version") == result.published)

        wait_until(switched, 20, "the replica to serve the refreshed version")
    finally:
        replica.stop()
