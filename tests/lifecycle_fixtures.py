"""A quickstart copy with a score lake filled by replaying generated traffic through it.

The lake is written by the serving code path (``ScoringService`` → lake rows →
``LakeWriter``), so the offline tools under test read exactly what a server would write:
bank2 and fintech3 are live on ``single-v1`` with ``ensemble-v1`` in shadow, bank1 is live
on ``ensemble-v1``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from muse.datasets import EventFrame, generate_events, make_tenants
from muse.scorelog import LakeWriter
from muse.scorelog.replay import replay_frame
from muse.service import ScoringService
from tests.config_fixtures import Deployment

__all__ = ["LAKE_START", "TENANTS", "filled_lake", "quickstart_traffic"]

TENANTS = ("bank1", "bank2", "fintech3")
LAKE_START = datetime(2026, 11, 2, tzinfo=UTC)


def quickstart_traffic(n: int, seed: int = 7, days: float = 4.0) -> EventFrame:
    """Events of the quickstart's tenants (the profiles its models were built for)."""
    tenants = make_tenants(len(TENANTS), seed=11, names=TENANTS)
    return generate_events(tenants, n, seed=seed, start=LAKE_START, days=days, drift=0.0)


def filled_lake(deployment: Deployment, n: int, seed: int = 7) -> tuple[Path, EventFrame]:
    """Replay ``n`` events through ``deployment`` into its lake; the lake folder and events."""
    service = ScoringService.from_config(deployment.config)
    lake = deployment.root / "lake"
    frame = quickstart_traffic(n, seed)
    with LakeWriter(str(lake), max_rows_per_file=50_000, flush_interval_s=60) as writer:
        replay_frame(service, frame, writer)
    return lake, frame
