"""How many events a tenant map needs (paper §2.3.3 Eq. 5, derived in appendix A).

A threshold fitted at alert rate ``a`` from ``n`` events is an order statistic; its alert
rate has standard deviation ``sqrt(a (1 − a) / n)``. Asking that ``z`` of those stay within
a relative error ``δ`` of ``a`` gives ``n = z² (1 − a) / (δ² a)``.
"""

from __future__ import annotations

import math

__all__ = ["required_samples"]


def required_samples(alert_rate: float, rel_error: float, z: float = 1.96) -> int:
    """Eq. 5, rounded up: events needed so the alert rate at ``alert_rate`` is within
    ``rel_error`` (relative) with the confidence of ``z`` (1.96 ≈ 95 %, 3 ≈ 99.7 %).

    >>> required_samples(0.01, 0.1)
    38032
    """
    for name, value in (("alert_rate", alert_rate), ("rel_error", rel_error), ("z", z)):
        if not (isinstance(value, int | float) and math.isfinite(value)):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    if not 0.0 < alert_rate < 1.0:
        raise ValueError(f"alert_rate must be in (0, 1), got {alert_rate!r}")
    if rel_error <= 0.0:
        raise ValueError(f"rel_error must be > 0, got {rel_error!r}")
    if z <= 0.0:
        raise ValueError(f"z must be > 0, got {z!r}")
    n = z * z * (1.0 - alert_rate) / (rel_error * rel_error * alert_rate)
    # Guard against 38032.000000001 rounding up to 38033 through float noise.
    return math.ceil(round(n, 6))
