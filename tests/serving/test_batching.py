"""Micro-batching: concurrent single events share one scoring pass; errors stay their own."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from muse.errors import IntentError
from muse.features import FeatureTable
from muse.service import LiveOutcome, ScoringService
from muse.serving.batching import MicroBatcher

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"
SAMPLE = json.loads((QUICKSTART / "sample_event.json").read_text())
ROW = FeatureTable.from_row(SAMPLE)


@pytest.fixture(scope="module")
def service() -> ScoringService:
    return ScoringService.from_config(QUICKSTART / "muse.yaml")


def test_concurrent_events_are_scored_in_one_pass_with_their_own_results(
    service: ScoringService,
) -> None:
    recorded: list[LiveOutcome] = []
    batcher = MicroBatcher(lambda outcome, started, received: recorded.append(outcome))
    tenants = ["bank1", "bank2", "fintech3", "bank2"]

    async def main() -> list[object]:
        return list(
            await asyncio.gather(
                *(
                    batcher.submit(service, {"tenant": t}, ROW, f"e{i}", 0.0, 0.0)
                    for i, t in enumerate(tenants)
                )
            )
        )

    results = asyncio.run(main())
    assert batcher.batches == 1
    assert batcher.events == 4
    expected = service.score_batch([{"tenant": t} for t in tenants], [SAMPLE] * 4, shadows=False)
    assert [r.live for r in results] == [r.live for r in expected]  # type: ignore[attr-defined]
    assert [r.event_id for r in results] == ["e0", "e1", "e2", "e3"]  # type: ignore[attr-defined]
    assert len(recorded) == 1
    assert recorded[0].deferred is not None  # bank2 and fintech3 have a shadow


def test_a_bad_event_fails_alone(service: ScoringService) -> None:
    batcher = MicroBatcher(lambda *_: None)

    async def main() -> list[object]:
        return list(
            await asyncio.gather(
                batcher.submit(service, {"tenant": "bank1"}, ROW, "ok-1", 0.0, 0.0),
                batcher.submit(service, {"tenant": "bank1", "colour": "red"}, ROW, "bad", 0.0, 0.0),
                batcher.submit(service, {"tenant": "bank2"}, ROW, "ok-2", 0.0, 0.0),
                return_exceptions=True,
            )
        )

    ok1, bad, ok2 = asyncio.run(main())
    assert isinstance(bad, IntentError)
    assert "colour" in str(bad)
    assert ok1.event_id == "ok-1"  # type: ignore[attr-defined]
    assert ok2.event_id == "ok-2"  # type: ignore[attr-defined]


def test_events_with_different_feature_sets_are_scored_in_separate_groups(
    service: ScoringService,
) -> None:
    batcher = MicroBatcher(lambda *_: None)
    m1_only = {k: v for k, v in SAMPLE.items() if k not in ("email_age_days", "n_items")}

    async def main() -> list[object]:
        return list(
            await asyncio.gather(
                batcher.submit(service, {"tenant": "bank2"}, ROW, "a", 0.0, 0.0),
                batcher.submit(
                    service, {"tenant": "bank2"}, FeatureTable.from_row(m1_only), "b", 0.0, 0.0
                ),
            )
        )

    a, b = asyncio.run(main())
    assert batcher.batches == 2
    assert a.live.score == b.live.score  # type: ignore[attr-defined]
