"""Lake rows from scoring results: the one place a :class:`ScoreResult` becomes rows.

The HTTP service and the offline tools (batch scoring, ``muse demo``) both write the lake
through here, so a lake filled offline is indistinguishable from one filled by serving —
and the tools that read it cannot tell, which is the point ("one code path everywhere").
"""

from __future__ import annotations

from datetime import datetime

from muse.scorelog.record import LakeRow
from muse.service import PredictorScore, ScoreResult

__all__ = ["result_rows", "score_row"]


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
    )


def result_rows(result: ScoreResult, timestamp: datetime, latency_ms: float = 0.0) -> list[LakeRow]:
    """Rows of the live score and every shadow score of one event."""
    return [score_row(result, s, timestamp, latency_ms) for s in (result.live, *result.shadows)]
