"""Replaying recorded or generated traffic through a deployment into the score lake.

How a lake gets filled without a server: backfilling a new predictor on last month's
events, the ``muse demo`` scenarios, tests of the offline tools. Events go through
:meth:`ScoringService.score_batch` — the serving code path — and into a
:class:`LakeWriter` with their own timestamps, so fitting and reports read a lake
identical to one the HTTP service would have written for the same events.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from muse.datasets import EventFrame
from muse.scorelog.results import result_rows
from muse.scorelog.writer import LakeWriter
from muse.service import ScoringService

__all__ = ["replay_frame"]

_INTENT = ("tenant", "geography", "channel", "schema")


def replay_frame(
    service: ScoringService,
    frame: EventFrame,
    writer: LakeWriter,
    *,
    chunk: int = 10_000,
    shadows: bool = True,
) -> int:
    """Score every event of ``frame`` (live and shadows) and append the rows to ``writer``.

    Only the features some model of the deployment uses are sent. Returns the number of
    rows appended. Unlike serving, replay waits for the writer when
    its memory bound is reached rather than dropping rows; a chunk larger than that bound
    is still dropped in part (and counted). Call ``writer.flush()``/``close()`` to wait
    for the files.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk!r}")
    appended = 0
    # A frame may carry features no model of this deployment uses (generated traffic has
    # them all); the service rightly refuses unknown features, so replay sends only these.
    known = service.snapshot.known_features
    epoch_ms = frame.timestamp.astype("datetime64[ms]").astype(np.int64)
    for lo in range(0, len(frame), chunk):
        part = frame.select(slice(lo, lo + chunk))
        columns = [getattr(part, c).tolist() for c in _INTENT]
        intents = [dict(zip(_INTENT, values, strict=True)) for values in zip(*columns, strict=True)]
        results = service.score_batch(
            intents,
            {name: col for name, col in part.features.items() if name in known},
            event_ids=part.event_id.tolist(),
            shadows=shadows,
        )
        rows = []
        for result, ms in zip(results, epoch_ms[lo : lo + chunk].tolist(), strict=True):
            rows.extend(result_rows(result, datetime.fromtimestamp(ms / 1e3, UTC)))
        # Offline there is no request to protect: wait for the writer instead of letting
        # its memory bound drop rows.
        if writer.pending_rows + len(rows) > writer.max_pending_rows and not writer.flush(
            timeout=300
        ):
            raise OSError(f"score lake {writer.url}: the writer could not flush its rows")
        appended += writer.append(rows)
    return appended
