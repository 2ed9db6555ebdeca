"""A columnar batch of events, and the undersampling used to train experts (§2.3.1).

Columns are plain numpy arrays so a frame feeds a model (``feature_matrix``), a quantile
fit (one tenant's rows via ``for_tenant``) or the HTTP examples (``to_rows``) without
pandas. Generated columns are read-only: frames are shared between tests, fixtures and
benchmark runs, and a silent in-place edit would corrupt every later user.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any, TypeAlias, TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from muse.errors import FeatureError
from muse.types import FeatureMatrix

__all__ = ["EventFrame", "Selector", "undersample"]

#: What ``EventFrame.select`` accepts: a boolean mask over all events, or event positions.
Selector: TypeAlias = npt.NDArray[np.bool_] | npt.NDArray[np.integer[Any]] | Sequence[int] | slice

#: Intent attributes of an event, in the order ``intents`` returns them.
_INTENT_COLUMNS = ("tenant", "geography", "channel", "schema")


@dataclass(frozen=True, eq=False, repr=False)
class EventFrame:
    """Events as parallel columns, one row per event, in timestamp order when generated.

    ``features`` maps each feature name to a float64 column. ``label`` is int8 (1 = fraud).
    The intent columns ``tenant``, ``geography``, ``channel``, ``schema`` and ``event_id``
    are fixed-width unicode arrays (dtype kind ``"U"``): they compare vectorised
    (``frame.channel == "web"``) and their elements are ``numpy.str_``, a ``str`` subclass.
    ``timestamp`` is ``datetime64[ms]`` in UTC. Equality is identity: compare columns.
    """

    features: Mapping[str, npt.NDArray[np.float64]]
    label: npt.NDArray[np.int8]
    tenant: npt.NDArray[np.str_]
    geography: npt.NDArray[np.str_]
    channel: npt.NDArray[np.str_]
    schema: npt.NDArray[np.str_]
    timestamp: npt.NDArray[np.datetime64]
    event_id: npt.NDArray[np.str_]

    def __post_init__(self) -> None:
        if not self.features:
            raise ValueError("EventFrame.features must hold at least one feature column, got none")
        n = len(self.label)
        expected = {"label": np.dtype(np.int8), "timestamp": np.dtype("datetime64[ms]")}
        for f in fields(self):
            if f.name == "features":
                continue
            column = getattr(self, f.name)
            if not isinstance(column, np.ndarray) or column.ndim != 1 or len(column) != n:
                raise ValueError(
                    f"EventFrame.{f.name} must be a 1-D numpy array of {n} events (the length "
                    f"of label), got {type(column).__name__} of shape {np.shape(column)}"
                )
            want = expected.get(f.name)
            if want is not None and column.dtype != want:
                raise ValueError(f"EventFrame.{f.name} must have dtype {want}, got {column.dtype}")
            if want is None and column.dtype.kind != "U":
                raise ValueError(
                    f"EventFrame.{f.name} must be a unicode string array (dtype kind 'U'), "
                    f"got {column.dtype}"
                )
        for name, column in self.features.items():
            if (
                not isinstance(column, np.ndarray)
                or column.dtype != np.float64
                or column.shape != (n,)
            ):
                raise ValueError(
                    f"EventFrame feature {name!r} must be a float64 array of shape ({n},), "
                    f"got {getattr(column, 'dtype', type(column).__name__)} of shape "
                    f"{np.shape(column)}"
                )
        if not isinstance(self.features, MappingProxyType):
            object.__setattr__(self, "features", MappingProxyType(dict(self.features)))

    def __len__(self) -> int:
        return len(self.label)

    def __repr__(self) -> str:
        # A summary: the default repr prints eight truncated arrays, which hides what matters.
        n = len(self)
        if n == 0:
            return f"EventFrame(0 events, {len(self.features)} features)"
        return (
            f"EventFrame({n} events, {len(np.unique(self.tenant))} tenants, "
            f"{len(self.features)} features, {self.label.mean():.3%} positive, "
            f"{self.timestamp.min()} .. {self.timestamp.max()})"
        )

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Names of the feature columns, in their stored order."""
        return tuple(self.features)

    def to_arrow(self) -> pa.Table:
        """The events as a table a backfill reads (``muse score-file``): ``event_id``,
        ``timestamp`` (UTC), the intent columns, one column per feature, ``label``."""
        return pa.table(
            {
                "event_id": pa.array(self.event_id.tolist(), pa.string()),
                "timestamp": pa.array(
                    self.timestamp.astype("datetime64[us]"), pa.timestamp("us", tz="UTC")
                ),
                "tenant": pa.array(self.tenant.tolist(), pa.string()),
                "geography": pa.array(self.geography.tolist(), pa.string()),
                "channel": pa.array(self.channel.tolist(), pa.string()),
                "schema": pa.array(self.schema.tolist(), pa.string()),
                **{name: pa.array(col, pa.float64()) for name, col in self.features.items()},
                "label": pa.array(self.label, pa.int8()),
            }
        )

    def select(self, rows: Selector) -> EventFrame:
        """The events picked by a boolean mask, integer positions or a slice, in that order.

        A mask must cover every event; positions may repeat or be negative (numpy rules).
        """
        if isinstance(rows, slice):
            index: npt.NDArray[Any] = np.arange(len(self))[rows]
        else:
            index = np.asarray(rows)
            if index.size == 0:
                index = index.astype(np.intp)
            if index.ndim != 1:
                raise ValueError(
                    f"select expects a 1-D mask or index array, got shape {index.shape}"
                )
            if index.dtype == np.bool_:
                if len(index) != len(self):
                    raise ValueError(
                        f"select: boolean mask must have one entry per event ({len(self)}), "
                        f"got {len(index)}"
                    )
            elif not np.issubdtype(index.dtype, np.integer):
                raise ValueError(
                    f"select expects a boolean mask or integer positions, got dtype {index.dtype}"
                )
        return EventFrame(
            features={name: _frozen(col[index]) for name, col in self.features.items()},
            label=_frozen(self.label[index]),
            tenant=_frozen(self.tenant[index]),
            geography=_frozen(self.geography[index]),
            channel=_frozen(self.channel[index]),
            schema=_frozen(self.schema[index]),
            timestamp=_frozen(self.timestamp[index]),
            event_id=_frozen(self.event_id[index]),
        )

    def for_tenant(self, name: str) -> EventFrame:
        """This frame's events of tenant ``name`` (a typo raises rather than returning nothing)."""
        mask = self.tenant == name
        if not mask.any():
            present = sorted({str(t) for t in np.unique(self.tenant)})
            raise LookupError(
                f"tenant {name!r} has no events in this frame; tenants present: {present}"
            )
        return self.select(mask)

    def intents(self, i: int) -> dict[str, str]:
        """Intent attributes of event ``i`` (tenant, geography, channel, schema), as routed on."""
        return {column: str(getattr(self, column)[i]) for column in _INTENT_COLUMNS}

    def feature_matrix(self, names: Sequence[str]) -> FeatureMatrix:
        """A fresh float64 matrix of shape ``(len(self), len(names))``, columns in ``names`` order.

        Models declare their own feature order; this is how a frame meets it.
        """
        if isinstance(names, str):
            raise TypeError(f"names must be a sequence of feature names, not the string {names!r}")
        unknown = [name for name in names if name not in self.features]
        if unknown:
            raise FeatureError(
                f"unknown feature(s) {unknown}; this frame has {list(self.features)}",
                feature=unknown[0],
            )
        matrix = np.empty((len(self), len(names)), dtype=np.float64)
        for j, name in enumerate(names):
            matrix[:, j] = self.features[name]
        return matrix

    def to_rows(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The first ``limit`` events (all if None) as JSON-ready dicts.

        Each row is ``{"event_id": str, "intent": {...}, "features": {name: float}}``, the
        shape of a scoring request, for examples and HTTP tests.
        """
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            raise ValueError(f"limit must be None or a non-negative integer, got {limit!r}")
        k = len(self) if limit is None else min(limit, len(self))
        feature_values = {name: col[:k].tolist() for name, col in self.features.items()}
        intent_values = {column: getattr(self, column)[:k].tolist() for column in _INTENT_COLUMNS}
        ids = self.event_id[:k].tolist()
        return [
            {
                "event_id": ids[i],
                "intent": {column: values[i] for column, values in intent_values.items()},
                "features": {name: values[i] for name, values in feature_values.items()},
            }
            for i in range(k)
        ]


def undersample(frame: EventFrame, beta: float, seed: int = 0) -> EventFrame:
    """Every positive and a fraction ``beta`` of the negatives, in the original order.

    This is the undersampling of the majority class that experts are trained with (§2.3.1);
    Posterior Correction later undoes its bias using the same ``beta``. Exactly
    ``round(beta * n_negatives)`` negatives are kept (at least one if any exist), so the
    realised ratio is ``beta`` up to rounding rather than up to sampling noise.
    """
    beta_value = float(beta)
    if not 0.0 < beta_value <= 1.0:
        raise ValueError(f"beta (fraction of negatives kept) must be in (0, 1], got {beta!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    negatives = np.flatnonzero(frame.label == 0)
    keep_n = min(len(negatives), max(1, round(beta_value * len(negatives))))
    if keep_n == len(negatives):
        return frame
    rng = np.random.default_rng(seed)
    kept = rng.choice(negatives, size=keep_n, replace=False)
    mask = frame.label == 1
    mask[kept] = True
    return frame.select(mask)


_A = TypeVar("_A", bound=npt.NDArray[Any])


def _frozen(array: _A) -> _A:
    """``array`` made read-only in place (see the module docstring for why)."""
    array.flags.writeable = False
    return array
