"""A quickstart copy with a score lake filled by replaying generated traffic through it.

The lake is written by the serving code path (``ScoringService`` → lake rows →
``LakeWriter``), so the offline tools under test read exactly what a server would write:
bank2 and fintech3 are live on ``single-v1`` with ``ensemble-v1`` in shadow, bank1 is live
on ``ensemble-v1``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from muse.datasets import EventFrame, generate_events, make_tenants
from muse.scorelog import LakeWriter
from muse.scorelog.replay import replay_frame
from muse.service import ScoringService
from tests.config_fixtures import Deployment

__all__ = [
    "LAKE_START",
    "TENANTS",
    "days_after",
    "filled_lake",
    "quickstart_traffic",
    "write_labels",
]

TENANTS = ("bank1", "bank2", "fintech3")
LAKE_START = datetime(2026, 11, 2, tzinfo=UTC)


def quickstart_traffic(
    n: int, seed: int = 7, days: float = 4.0, start: datetime = LAKE_START
) -> EventFrame:
    """Events of the quickstart's tenants (the profiles its models were built for)."""
    tenants = make_tenants(len(TENANTS), seed=11, names=TENANTS)
    return generate_events(tenants, n, seed=seed, start=start, days=days, drift=0.0)


def filled_lake(
    deployment: Deployment, n: int, seed: int = 7, start: datetime = LAKE_START
) -> tuple[Path, EventFrame]:
    """Replay ``n`` events through ``deployment`` into its lake; the lake folder and events."""
    service = ScoringService.from_config(deployment.config)
    lake = deployment.root / "lake"
    frame = quickstart_traffic(n, seed, start=start)
    with LakeWriter(str(lake), max_rows_per_file=50_000, flush_interval_s=60) as writer:
        replay_frame(service, frame, writer)
    return lake, frame


def write_labels(frame: EventFrame, path: Path) -> Path:
    """The labels a tenant would send back: event_id, label, labelled_at (a week later)."""
    labelled_at = frame.timestamp.astype("datetime64[us]") + np.timedelta64(7, "D")
    pq.write_table(
        pa.table(
            {
                "event_id": pa.array(frame.event_id.tolist(), pa.string()),
                "label": pa.array(frame.label, pa.int8()),
                "labelled_at": pa.array(labelled_at, pa.timestamp("us", tz="UTC")),
            }
        ),
        path,
    )
    return path


def days_after(days: int) -> datetime:
    return LAKE_START + timedelta(days=days)
