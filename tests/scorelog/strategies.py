"""Hypothesis strategies for lake rows (one place, as attrs does it)."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import strategies as st

from muse.scorelog import LakeRow

#: Finite floats of every kind: extremes, subnormals, ±0.0.
finite = st.floats(allow_nan=False, allow_infinity=False)
names = st.text(st.characters(codec="utf-8"), max_size=12)
#: Config-style names plus ones that need percent-encoding or look hidden in a path.
predictors = st.one_of(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,15}", fullmatch=True),
    st.sampled_from(["a b", "x/y", "k=v", "50%", "_p", ".q", "..", "ünï", "p%20"]),
)
timestamps = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 12, 31), timezones=st.just(UTC)
)

lake_rows = st.builds(
    LakeRow,
    event_id=names,
    timestamp=timestamps,
    tenant=names,
    intent=st.dictionaries(names, names, max_size=4),
    predictor=predictors,
    role=st.sampled_from(["live", "shadow"]),
    fingerprint=names,
    tq_version=names,
    raw=finite,
    score=finite,
    experts=st.dictionaries(names, finite, max_size=4),
    latency_ms=finite,
    config_version=names,
)
