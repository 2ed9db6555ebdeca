"""Canary splits: one scoring rule's traffic shared between predictors by weight, sticky by
entity (issue: canary splits sticky by entity).

A split is safe for thresholds in muse because every arm maps onto the same reference R:
a tenant's alert rates do not move when some of its traffic goes to a candidate. What must
not move either is *which* arm an entity (a card, an account) gets — on every replica,
across restarts and reloads, and when the candidate's share grows — or its scores would
flip between two models from one event to the next.

How an event gets its arm:

1. its **key**: the value of ``sticky_by`` (an intent attribute or a feature, as text) when
   the event has one, else its event id (the split is then per event);
2. its **bucket**: the first 8 bytes of BLAKE2b(``salt`` ∖0 key), as an unsigned integer,
   modulo :data:`BUCKETS`. BLAKE2b, not Python's ``hash()``, because that one is salted per
   process: every replica and every restart must agree. The split's ``salt`` keeps two
   experiments independent (the same cards are not the 10 % of every canary);
3. its **arm**: arms own consecutive ranges of buckets in the order they are listed, each as
   wide as its share of the total weight (rounded to whole buckets, at least one per arm
   with a positive weight).

**Stable when the candidate grows.** List the candidate *last*: its range is the top of
the bucket space, so growing its weight (10 → 20, taking from the first arm) extends its
range downwards, and every entity it had stays in it; the entities that move are only the
first arm's that the candidate takes over. In general, changing weights keeps an entity in
its arm exactly when its bucket stays inside the arm's new range; :meth:`Split.moved`
says which buckets move, so an operator can see it before promoting.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = ["BUCKETS", "Arm", "Split", "bucket_of", "default_salt", "key_text"]

#: Granularity of a split: weights are honoured to 0.01 %.
BUCKETS = 10_000


def bucket_of(key: str, salt: str = "") -> int:
    """The bucket of ``key`` in a split salted with ``salt``: the same on every machine."""
    digest = hashlib.blake2b(f"{salt}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def default_salt(arms: Sequence[Arm]) -> str:
    """The salt of a split that names none: its predictors, sorted, joined by ``+``.

    Stable when weights change (the point of a sticky split) and when arms are listed in
    another order; a new candidate makes a new experiment, with its own shuffle.
    """
    return "+".join(sorted(a.predictor for a in arms))


def key_text(value: object) -> str | None:
    """The text an entity key is hashed as, or None when the event has no usable key.

    Intent attributes are strings already. Request features arrive as float64 (the
    feature table's type), so a card number sent as ``4242`` or ``"4242"`` or ``4242.0``
    must hash alike: an integral value is written without a fraction, any other finite
    one with ``repr`` — the text the feature store looks an entity up by
    (:func:`muse.featurestore.base.key_text`). NaN (the feature was not sent), an empty
    string and None are no key.
    """
    if isinstance(value, str):
        return value or None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, np.bool_):
        return str(value)  # "True", as the feature store has always written it
    if isinstance(value, int | np.integer):
        return str(int(value))
    if not isinstance(value, float | np.floating) or value != value:
        return None
    v = float(value)
    if v.is_integer() and abs(v) < 2**53:
        return str(int(v))
    return repr(v)


@dataclass(frozen=True, slots=True)
class Arm:
    """One predictor of a split and its weight (any non-negative number; shares are
    weight / total)."""

    predictor: str
    weight: float

    def __post_init__(self) -> None:
        if not isinstance(self.predictor, str) or not self.predictor:
            raise ValueError(f"an arm needs a predictor name, got {self.predictor!r}")
        w = self.weight
        if isinstance(w, bool) or not isinstance(w, int | float) or not (w >= 0 and w < 1e300):
            raise ValueError(
                f"arm {self.predictor!r}: weight must be a finite number >= 0, got {w!r}"
            )


@dataclass(frozen=True, slots=True)
class Split:
    """Traffic shared between ``arms`` by weight, sticky by ``sticky_by`` (see the module)."""

    arms: tuple[Arm, ...]
    sticky_by: str | None = None
    salt: str = ""
    _bounds: npt.NDArray[np.int64] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "arms", tuple(self.arms))
        if len(self.arms) < 2:
            raise ValueError(f"a split needs at least two arms, got {len(self.arms)}")
        names = [a.predictor for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"a split lists a predictor twice: {names}")
        if sum(a.weight for a in self.arms) <= 0:
            raise ValueError("a split's weights must not all be 0")
        # Computed once: every event of a split is placed by them.
        object.__setattr__(self, "_bounds", self._compute_bounds())

    @property
    def bounds(self) -> npt.NDArray[np.int64]:
        """The first bucket *after* each arm's range (the last is :data:`BUCKETS`)."""
        return self._bounds.copy()

    def _compute_bounds(self) -> npt.NDArray[np.int64]:
        weights = np.array([a.weight for a in self.arms], dtype=np.float64)
        shares = weights / weights.sum()
        ends = np.rint(np.cumsum(shares) * BUCKETS).astype(np.int64)
        ends[-1] = BUCKETS
        # Every arm with weight gets at least one bucket, so no listed arm silently vanishes
        # (and the ends stay non-decreasing when an earlier arm was widened).
        for i in range(len(ends) - 1):
            start = ends[i - 1] if i else 0
            ends[i] = min(max(ends[i], start + (1 if weights[i] > 0 else 0)), BUCKETS)
        return np.asarray(ends, dtype=np.int64)

    @property
    def shares(self) -> tuple[float, ...]:
        """Each arm's share of the buckets (what the observed split converges to)."""
        ends = self.bounds
        starts = np.concatenate([[0], ends[:-1]])
        return tuple(float(x) for x in (ends - starts) / BUCKETS)

    def arm_of_bucket(self, buckets: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """The arm index of each bucket."""
        b = np.asarray(buckets, dtype=np.int64)
        return np.searchsorted(self._bounds, b, side="right").astype(np.int64)

    def assign(self, keys: Sequence[str]) -> npt.NDArray[np.int64]:
        """The arm index of each key (its sticky value, or its event id)."""
        buckets = np.fromiter(
            (bucket_of(k, self.salt) for k in keys), dtype=np.int64, count=len(keys)
        )
        return self.arm_of_bucket(buckets)

    def predictor_for(self, key: str) -> str:
        """The predictor that scores an event whose key is ``key``."""
        bucket = bucket_of(key, self.salt)
        for arm, end in zip(self.arms, self._bounds.tolist(), strict=True):
            if bucket < end:
                return arm.predictor
        raise AssertionError("unreachable: the last bound is BUCKETS")  # pragma: no cover

    def moved(self, other: Split) -> float:
        """The share of buckets whose predictor differs between this split and ``other``
        (same salt): how many entities a change of weights moves to another arm."""
        if other.salt != self.salt:
            return 1.0  # a new salt reshuffles everything (about 1 − Σ share², but say all)
        buckets = np.arange(BUCKETS)
        mine = np.array([a.predictor for a in self.arms])[self.arm_of_bucket(buckets)]
        theirs = np.array([a.predictor for a in other.arms])[other.arm_of_bucket(buckets)]
        return float(np.mean(mine != theirs))
