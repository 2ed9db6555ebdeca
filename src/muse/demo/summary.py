"""What a tenant would have seen at its thresholds, in each case the demo went through.

The score contract is about alert rates: a tenant that set ``review`` at R⁻¹(0.95) expects
to review 5 % of its traffic, whatever model is behind the score. The summary puts that
promise (the contract's rate at each declared threshold) next to what each case actually
delivered, which is the one table a tenant — or a risk officer — needs to read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from rich.table import Table

from muse.demo.deployment import REFERENCE, thresholds

__all__ = ["AlertRow", "alert_row", "markdown_table", "rich_table", "write_summary"]


@dataclass(frozen=True, slots=True)
class AlertRow:
    """One case: a tenant's scores under one (predictor, map), at its thresholds.

    ``expected`` and ``observed`` map each action to the share of events at or above its
    threshold — per the contract and as served.
    """

    tenant: str
    case: str
    week: int
    events: int
    expected: Mapping[str, float]
    observed: Mapping[str, float]

    def error(self, action: str) -> float:
        """Relative error of the observed alert rate at ``action`` (+100 % = twice the budget)."""
        return self.observed[action] / self.expected[action] - 1.0


def alert_row(tenant: str, case: str, week: int, scores: npt.ArrayLike) -> AlertRow:
    """The alert rates of ``scores`` at the tenants' thresholds, against the contract."""
    s = np.asarray(scores, dtype=np.float64)
    cuts = thresholds()
    return AlertRow(
        tenant=tenant,
        case=case,
        week=week,
        events=int(s.size),
        expected={a: float(1.0 - REFERENCE.cdf(np.array([t]))[0]) for a, t in cuts.items()},
        observed={a: float(np.mean(s >= t)) if s.size else float("nan") for a, t in cuts.items()},
    )


_HEADER = ("tenant", "case", "week", "events")


def _cells(row: AlertRow) -> list[str]:
    cells = [row.tenant, row.case, str(row.week), f"{row.events:,}"]
    for action in row.expected:
        cells.append(
            f"{row.expected[action]:.2%} → {row.observed[action]:.2%} ({row.error(action):+.0%})"
        )
    return cells


_CAPTION = "alert rate at each threshold: contract → observed (relative error)"


def _actions(rows: Sequence[AlertRow]) -> list[str]:
    return [f"{a} ≥ {t:g}" for a, t in thresholds().items()] if rows else []


def rich_table(rows: Sequence[AlertRow]) -> Table:
    """The summary for the terminal."""
    table = Table(title="What each tenant would have seen at its thresholds", caption=_CAPTION)
    for col in (*_HEADER, *_actions(rows)):
        table.add_column(col, justify="left" if col in ("tenant", "case") else "right")
    for row in rows:
        table.add_row(*_cells(row))
    return table


def markdown_table(rows: Sequence[AlertRow]) -> str:
    """The summary as a Markdown table."""
    header = [*_HEADER, *_actions(rows)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in _cells(r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_summary(path: Path, rows: Sequence[AlertRow], findings: Sequence[str]) -> Path:
    """``summary.md``: the findings of each scenario, then the alert-rate table."""
    text = "\n".join(
        [
            "# muse demo — summary",
            "",
            *(f"- {f}" for f in findings),
            "",
            "## What each tenant would have seen at its thresholds",
            "",
            f"Per threshold, the {_CAPTION}: the contract's rate is what R promises at the "
            "threshold, the observed one the share of the tenant's events scored at or above it.",
            "",
            markdown_table(rows),
        ]
    )
    path.write_text(text, encoding="utf-8")
    return path
