"""Tenant profiles: who the synthetic clients are and how their traffic differs.

A profile is the *only* per-tenant input of the generator. Its ``shift`` moves the tenant's
whole population (legitimate and fraudulent alike) in the generator's latent feature space,
so one model produces a different raw-score distribution for every tenant: the reason the
paper estimates the quantile map per client-predictor pair (§2.3.3).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "CHANNELS",
    "FEATURE_NAMES",
    "GEOGRAPHIES",
    "SCHEMA",
    "TenantProfile",
    "make_tenants",
]

#: Numeric features of every generated event, in the column order of ``feature_matrix``.
FEATURE_NAMES: tuple[str, ...] = (
    "amount",
    "hour",
    "merchant_risk",
    "velocity_1h",
    "distance_km",
    "card_age_days",
    "device_risk",
    "n_declines_24h",
    "email_age_days",
    "n_items",
)

#: Values of the ``channel`` intent attribute; ``TenantProfile.channel_mix`` is in this order.
CHANNELS: tuple[str, ...] = ("web", "pos", "app")

#: Values of the ``geography`` intent attribute that ``make_tenants`` assigns.
GEOGRAPHIES: tuple[str, ...] = ("EMEA", "NAMER", "LATAM", "APAC")

#: Default value of the ``schema`` intent attribute.
SCHEMA = "fraud_v1"

#: Bound on a latent shift: beyond ±5 sd a tenant has nothing in common with the others.
_MAX_SHIFT = 5.0

# Regional offsets in latent sd units, so tenants of one geography resemble each other
# (NAMER spends more and travels further, LATAM sees riskier merchants and more declines,
# APAC transacts at higher velocity, EMEA shops close to home). Index = FEATURE_NAMES.
_GEO_OFFSET: dict[str, tuple[float, ...]] = {
    "EMEA": (0.0, 0.0, -0.1, 0.0, -0.3, 0.1, -0.1, 0.0, 0.1, 0.0),
    "NAMER": (0.35, 0.0, 0.0, 0.1, 0.35, 0.0, 0.1, -0.1, 0.0, 0.2),
    "LATAM": (-0.2, 0.1, 0.35, 0.0, 0.1, -0.2, 0.2, 0.35, -0.2, 0.0),
    "APAC": (-0.1, -0.2, 0.0, 0.35, 0.0, -0.1, 0.1, 0.0, 0.0, -0.1),
}
# Dirichlet concentration of the channel mix (web, pos, app) per region: APAC is app-heavy,
# LATAM point-of-sale heavy; the total (12) keeps mixes near the mean but not identical.
_GEO_CHANNEL_ALPHA: dict[str, tuple[float, float, float]] = {
    "EMEA": (5.0, 4.0, 3.0),
    "NAMER": (6.0, 3.0, 3.0),
    "LATAM": (3.0, 6.0, 3.0),
    "APAC": (3.0, 2.0, 7.0),
}
#: Spread of a tenant's own shift around its region's offset, latent sd units.
_TENANT_SHIFT_SD = 0.35


@dataclass(frozen=True, slots=True)
class TenantProfile:
    """One synthetic client.

    ``fraud_rate`` is the probability that an event is fraudulent (constant over time, so
    label rates are checkable). ``channel_mix`` gives the probability of each of
    :data:`CHANNELS`. ``shift`` is added to the tenant's latent features (one entry per
    :data:`FEATURE_NAMES`, in standard-deviation units, at most ±5); zero means the
    generator's base population. ``geography`` and ``schema`` are only copied to the
    events' intent attributes: any regional effect is already part of ``shift``.
    """

    name: str
    fraud_rate: float
    geography: str = "EMEA"
    channel_mix: tuple[float, ...] = (1 / 3, 1 / 3, 1 / 3)
    shift: tuple[float, ...] = field(default=(0.0,) * len(FEATURE_NAMES))
    schema: str = SCHEMA

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"TenantProfile.name must be a non-empty string, got {self.name!r}")
        who = f"tenant {self.name!r}"
        rate = float(self.fraud_rate)
        if not 0.0 < rate < 1.0:
            raise ValueError(f"{who}: fraud_rate must be in (0, 1), got {self.fraud_rate!r}")
        for attr in ("geography", "schema"):
            value = getattr(self, attr)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{who}: {attr} must be a non-empty string, got {value!r}")
        mix = tuple(float(p) for p in self.channel_mix)
        if (
            len(mix) != len(CHANNELS)
            or not all(math.isfinite(p) and p >= 0.0 for p in mix)
            or abs(sum(mix) - 1.0) > 1e-6
        ):
            raise ValueError(
                f"{who}: channel_mix must be {len(CHANNELS)} non-negative probabilities for "
                f"{CHANNELS} summing to 1, got {self.channel_mix!r}"
            )
        shift = tuple(float(s) for s in self.shift)
        if len(shift) != len(FEATURE_NAMES) or not all(
            math.isfinite(s) and abs(s) <= _MAX_SHIFT for s in shift
        ):
            raise ValueError(
                f"{who}: shift must be {len(FEATURE_NAMES)} finite numbers within "
                f"±{_MAX_SHIFT} (one per FEATURE_NAMES entry), got {self.shift!r}"
            )
        # Normalised copies, so profiles built from lists or numpy scalars compare equal.
        object.__setattr__(self, "fraud_rate", rate)
        object.__setattr__(self, "channel_mix", mix)
        object.__setattr__(self, "shift", shift)


def make_tenants(
    n: int,
    seed: int = 0,
    fraud_rate_range: tuple[float, float] = (0.001, 0.03),
    names: Sequence[str] | None = None,
) -> tuple[TenantProfile, ...]:
    """``n`` varied tenant profiles, reproducible from ``seed``.

    Fraud rates are log-uniform over ``fraud_rate_range`` (most clients see little fraud, a
    few a lot). Geographies cycle through a seed-dependent order of :data:`GEOGRAPHIES`,
    so any four consecutive tenants cover every region. Tenant ``i`` depends only on
    ``seed`` and ``i``, so ``make_tenants(3)`` is a prefix of ``make_tenants(10)``.
    Names default to ``tenant01``, ``tenant02``, …
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n (number of tenants) must be an integer >= 1, got {n!r}")
    _check_seed(seed)
    lo, hi = (float(r) for r in fraud_rate_range)
    if not 0.0 < lo <= hi < 1.0:
        raise ValueError(
            f"fraud_rate_range must be (low, high) with 0 < low <= high < 1, "
            f"got {fraud_rate_range!r}"
        )
    if names is None:
        width = max(2, len(str(n)))
        names = [f"tenant{i + 1:0{width}d}" for i in range(n)]
    else:
        names = list(names)
        if len(names) != n:
            raise ValueError(f"names must hold n={n} entries, got {len(names)}: {names!r}")
        if len(set(names)) != n:
            raise ValueError(f"names must be unique, got {names!r}")

    root = np.random.SeedSequence(seed)
    order = np.random.default_rng(root).permutation(len(GEOGRAPHIES))
    tenants = []
    for i, name in enumerate(names):
        # A child sequence per index keeps tenant i independent of n (prefix stability).
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(i,)))
        geography = GEOGRAPHIES[int(order[i % len(GEOGRAPHIES)])]
        rate = math.exp(rng.uniform(math.log(lo), math.log(hi))) if hi > lo else lo
        mix = rng.dirichlet(_GEO_CHANNEL_ALPHA[geography])
        shift = np.asarray(_GEO_OFFSET[geography]) + rng.normal(
            0.0, _TENANT_SHIFT_SD, len(FEATURE_NAMES)
        )
        tenants.append(
            TenantProfile(
                name=name,
                fraud_rate=min(max(rate, lo), hi),
                geography=geography,
                channel_mix=tuple(float(p) for p in mix / mix.sum()),
                shift=tuple(float(s) for s in np.clip(shift, -_MAX_SHIFT, _MAX_SHIFT)),
            )
        )
    return tuple(tenants)


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
