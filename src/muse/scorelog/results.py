"""Lake rows from scoring results: the one place a :class:`ScoreResult` becomes rows.

The HTTP service and the offline tools (batch scoring, ``muse demo``) both write the lake
through here, so a lake filled offline is indistinguishable from one filled by serving —
and the tools that read it cannot tell, which is the point ("one code path everywhere").
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from muse.scorelog.record import LakeColumns, LakeRow
from muse.service import PredictorScore, ScoreResult

__all__ = ["add_live", "add_shadows", "result_rows", "score_row"]


def score_row(
    result: ScoreResult, score: PredictorScore, timestamp: datetime, latency_ms: float
) -> LakeRow:
    """The lake row of one predictor's ``score`` (live or shadow) of ``result``'s event."""
    return LakeRow(
        event_id=result.event_id or "",
        timestamp=timestamp,
        tenant=result.intent["tenant"],
        intent=result.intent,  # converted in the lake's background thread
        predictor=score.predictor,
        role=score.role,
        fingerprint=score.fingerprint,
        tq_version=score.tq_version,
        raw=score.raw,
        score=score.score,
        experts=score.experts,
        latency_ms=latency_ms,
        config_version=result.config_version,
        arm=result.arm,
    )


def result_rows(result: ScoreResult, timestamp: datetime, latency_ms: float = 0.0) -> list[LakeRow]:
    """Rows of the live score and every shadow score of one event."""
    return [score_row(result, s, timestamp, latency_ms) for s in (result.live, *result.shadows)]


def add_live(
    columns: LakeColumns,
    results: Sequence[ScoreResult],
    timestamps_us: Sequence[int],
    latencies_ms: Sequence[float],
) -> None:
    """The live score of each result, with its event's arrival time and latency, as rows
    of ``columns`` (the service's path: no row object per event)."""
    for r, at, ms in zip(results, timestamps_us, latencies_ms, strict=True):
        _add(columns, r, r.live, at, ms)


def add_shadows(
    columns: LakeColumns, results: Sequence[ScoreResult], timestamp_us: int, latency_ms: float
) -> int:
    """Every shadow score of the results as rows of ``columns``; returns how many."""
    n = 0
    for r in results:
        for s in r.shadows:
            _add(columns, r, s, timestamp_us, latency_ms)
            n += 1
    return n


def _add(
    columns: LakeColumns, r: ScoreResult, s: PredictorScore, timestamp_us: int, latency_ms: float
) -> None:
    columns.add(
        r.event_id or "",
        timestamp_us,
        r.intent["tenant"],
        r.intent,
        s.predictor,
        s.role,
        s.fingerprint,
        s.tq_version,
        s.raw,
        s.score,
        s.experts,
        latency_ms,
        r.config_version,
        r.arm,
    )
