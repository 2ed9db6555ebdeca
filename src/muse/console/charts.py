"""Vega-Lite specs of the console's charts, written by the server as JSON.

The browser only embeds them (vega-embed); the numbers are the server's, so what a chart
shows is what the page's table next to it says and what the tests check.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from muse.console.views import AlignmentRow

__all__ = ["alert_rate_chart", "alignment_chart"]

_SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"
_SIZE = {"width": "container", "height": 260, "autosize": {"type": "fit", "contains": "padding"}}


def alignment_chart(rows: Sequence[AlignmentRow], title: str) -> dict[str, Any]:
    """Relative error to R per score bin, with its Wilson interval as an error bar (Fig. 4/6)."""
    values = [
        {
            "bin": f"({r.lower:.3g}, {r.upper:.3g}]",
            "order": i,
            "error": r.relative_error,
            "low": r.error_low,
            "high": r.error_high,
            "count": r.count,
            "expected": r.expected_share,
        }
        for i, r in enumerate(rows)
    ]
    x = {"field": "bin", "type": "ordinal", "sort": {"field": "order"}, "title": "score bin"}
    return {
        "$schema": _SCHEMA,
        "title": title,
        **_SIZE,
        "data": {"values": values},
        "layer": [
            {"mark": {"type": "rule", "color": "#888"}, "encoding": {"y": {"datum": 0}}},
            {
                "mark": {"type": "rule", "strokeWidth": 2},
                "encoding": {
                    "x": x,
                    "y": {"field": "low", "type": "quantitative", "title": "relative error"},
                    "y2": {"field": "high"},
                },
            },
            {
                "mark": {"type": "point", "filled": True, "size": 60},
                "encoding": {
                    "x": x,
                    "y": {"field": "error", "type": "quantitative", "axis": {"format": "+.0%"}},
                    "tooltip": [
                        {"field": "bin"},
                        {"field": "count", "format": ","},
                        {"field": "expected", "format": ".3%", "title": "R's share"},
                        {"field": "error", "format": "+.1%", "title": "relative error"},
                        {"field": "low", "format": "+.1%"},
                        {"field": "high", "format": "+.1%"},
                    ],
                },
            },
        ],
    }


def alert_rate_chart(
    days: Sequence[Mapping[str, Any]], promised: Mapping[str, float], title: str
) -> dict[str, Any]:
    """Alert rate per day at each of the tenant's thresholds, against the rate R promises."""
    values = [
        {"day": d["day"].isoformat(), "threshold": name, "rate": rate, "events": d["events"]}
        for d in days
        for name, rate in d["alert_rates"].items()
    ]
    rules = [{"threshold": name, "promised": rate} for name, rate in promised.items()]
    color = {"field": "threshold", "type": "nominal", "title": "threshold"}
    return {
        "$schema": _SCHEMA,
        "title": title,
        **_SIZE,
        "layer": [
            {
                "data": {"values": values},
                "mark": {"type": "line", "point": True},
                "encoding": {
                    "x": {"field": "day", "type": "temporal", "title": "day (UTC)"},
                    "y": {
                        "field": "rate",
                        "type": "quantitative",
                        "title": "alert rate",
                        "axis": {"format": ".2%"},
                    },
                    "color": color,
                    "tooltip": [
                        {"field": "day", "type": "temporal"},
                        {"field": "threshold"},
                        {"field": "rate", "format": ".3%"},
                        {"field": "events", "format": ","},
                    ],
                },
            },
            {
                "data": {"values": rules},
                "mark": {"type": "rule", "strokeDash": [4, 4]},
                "encoding": {"y": {"field": "promised", "type": "quantitative"}, "color": color},
            },
        ],
    }
