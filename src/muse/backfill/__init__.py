"""Backfill scoring: a file of events through the serving path into lake rows.

``muse score-file`` is a shell over :func:`score_file`. Used to backtest a candidate on
last month's events before it ever shadows: score the file with a config whose shadow
rules name the candidate, then ``muse report compare`` reads the rows as it reads live
traffic's.
"""

from muse.backfill.columnar import ScoredBatch, score_batch_columns
from muse.backfill.run import BackfillReport, score_file
from muse.backfill.source import BackfillError, EventBatch, EventsFile, RowError

__all__ = [
    "BackfillError",
    "BackfillReport",
    "EventBatch",
    "EventsFile",
    "RowError",
    "ScoredBatch",
    "score_batch_columns",
    "score_file",
]
