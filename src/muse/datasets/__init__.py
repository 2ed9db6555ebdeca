"""Synthetic multi-tenant fraud traffic for tests, examples and benchmarks.

Why synthetic: the behaviour muse exists for needs data with three properties that public
datasets rarely combine: many tenants whose traffic differs (so one model yields a
different raw-score distribution per tenant, hence per-tenant quantile maps, §2.3.3),
heavy class imbalance (0.1 %–3 % fraud, hence undersampled experts and Posterior
Correction, §2.3.1) and drift over time (hence model updates, §3).

Typical use::

    tenants = make_tenants(5, seed=1)
    frame = generate_events(tenants, 200_000, seed=1)
    X = frame.feature_matrix(FEATURE_NAMES)
    expert_data = undersample(frame, beta=0.18, seed=1)

The generative process is described in :mod:`muse.datasets.generator`; in short, each
event's features are a tenant- and channel-shifted latent Gaussian, plus a fraud signature
for positives, plus linear drift over time, mapped to plausible marginals.
"""

from muse.datasets.frame import EventFrame, Selector, undersample
from muse.datasets.generator import DEFAULT_START, generate_events
from muse.datasets.tenants import (
    CHANNELS,
    FEATURE_NAMES,
    GEOGRAPHIES,
    SCHEMA,
    TenantProfile,
    make_tenants,
)

__all__ = [
    "CHANNELS",
    "DEFAULT_START",
    "FEATURE_NAMES",
    "GEOGRAPHIES",
    "SCHEMA",
    "EventFrame",
    "Selector",
    "TenantProfile",
    "generate_events",
    "make_tenants",
    "undersample",
]
