"""The drift monitor over a real score lake (written by LakeWriter, read with DuckDB): each
live tenant of a predictor judged on the map it is served now, at its own alert levels."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from muse.fitting.drift import DEFAULT_LEVELS
from muse.fitting.monitor import monitor_lake, threshold_levels
from muse.scorelog import LakeReader, LakeRow, LakeWriter
from muse.transforms import Reference
from tests.scorelog.rows import T0

R = Reference.beta(0.8, 9.0)
P = "ensemble-v1"


def rows(tenant: str, scores: Iterable[float], version: str, start: int = 0) -> list[LakeRow]:
    return [
        LakeRow(
            event_id=f"{tenant}-{version}-{i}",
            timestamp=T0 + timedelta(seconds=start + i),
            tenant=tenant,
            intent={"tenant": tenant},
            predictor=P,
            role="live",
            fingerprint="fp-1",
            tq_version=version,
            raw=float(s),
            score=float(s),
            experts={"m1": float(s)},
            latency_ms=1.0,
            config_version="v-1",
        )
        for i, s in enumerate(scores)
    ]


@pytest.fixture
def lake(tmp_path: Path) -> str:
    rng = np.random.default_rng(11)
    aligned = R.ppf(rng.random(6_000))
    doubled = R.ppf((1.0 + rng.random(6_000)) / 2.0)  # twice the alerts at every level
    url = str(tmp_path / "lake")
    with LakeWriter(url) as writer:
        # bank1 drifted on its old map v1, then a refit (v2) put it back on R
        writer.append(rows("bank1", R.ppf((1.0 + rng.random(3_000)) / 2.0), "v1"))
        writer.append(rows("bank1", aligned, "v2", start=10_000))
        writer.append(rows("bank2", doubled, "v1"))
        writer.append(rows("bank3", aligned[:200], "v1"))
    return url


def test_each_live_tenant_is_judged_on_the_map_it_is_served_now(lake: str) -> None:
    with LakeReader(lake) as reader:
        found = {d.tenant: d for d in monitor_lake(reader, P, R, levels={"bank3": [0.05]})}
    assert sorted(found) == ["bank1", "bank2", "bank3"]
    assert found["bank1"].tq_version == "v2"
    assert found["bank1"].verdict.n == 6_000  # the v1 rows are not held against v2
    assert found["bank1"].verdict.verdict == "aligned"
    assert found["bank2"].verdict.verdict == "drifting"
    five = next(c for c in found["bank2"].verdict.levels if c.level == 0.05)
    assert five.relative_error == pytest.approx(1.0, abs=0.2)
    assert found["bank3"].verdict.verdict == "too_few_events"
    assert [c.level for c in found["bank3"].verdict.levels] == [0.05]


def test_only_the_map_deployed_now_is_judged(lake: str) -> None:
    """Just after a refit went live, the lake holds only its predecessor's rows: nothing
    to judge yet, rather than blaming the new map for the old one's drift."""
    with LakeReader(lake) as reader:
        (bank2,) = monitor_lake(reader, P, R, tenants=["bank2"], served={"bank2": "v2"})
        (bank1,) = monitor_lake(reader, P, R, tenants=["bank1"], served={"bank1": "v1"})
    assert bank2.tq_version == "v2"
    assert bank2.verdict.verdict == "too_few_events"
    assert bank2.verdict.n == 0
    assert bank1.verdict.n == 3_000  # v1's rows, drifted
    assert bank1.verdict.verdict == "drifting"


def test_a_tenant_without_rows_is_too_few_events(lake: str) -> None:
    with LakeReader(lake) as reader:
        (only,) = monitor_lake(reader, P, R, tenants=["bank9"])
    assert only.verdict.verdict == "too_few_events"
    assert only.verdict.n == 0
    assert only.tq_version == ""


def test_thresholds_become_the_reference_alert_rates() -> None:
    t_review, t_block = (float(v) for v in R.ppf([0.95, 0.99]))
    levels = threshold_levels({"review": t_review, "block": t_block}, R)
    assert levels == pytest.approx((0.05, 0.01))
    assert threshold_levels({}, R) == DEFAULT_LEVELS
    assert threshold_levels({"never": 1.0}, R) == DEFAULT_LEVELS
