"""Predictor fingerprints: what a T^Q artifact was fitted for (ARCHITECTURE invariant 2).

A quantile map is only valid for the raw-score distribution it was fitted on. That
distribution is determined by the experts' model files, their posterior corrections and
the aggregation, so the fingerprint hashes exactly those — and nothing cosmetic (names,
paths, expert order, weight scale), so renaming a model or a predictor keeps its maps.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence

__all__ = ["predictor_fingerprint"]


def predictor_fingerprint(
    members: Sequence[tuple[str, float, float]], aggregation: str = "weighted_mean"
) -> str:
    """Stable hash of ``(model digest, beta, weight)`` members and the aggregation.

    For a single-model predictor T^C and A are skipped (paper Eq. 2), so beta and weight do
    not change its distribution and are left out. Weights are normalised and members sorted:
    ``[(m1, 1), (m2, 1)]`` and ``[(m2, 2), (m1, 2)]`` give the same fingerprint.
    """
    if not members:
        raise ValueError("a predictor needs at least one expert")
    if len(members) == 1:
        canon = [[members[0][0], 1.0, 1.0]]
        aggregation = "identity"
    else:
        # fsum is correctly rounded, hence independent of member order; rounding the
        # normalised weights to 12 significant digits absorbs the last-ulp differences
        # that scaling all weights by a constant leaves behind.
        top = max(float(w) for _, _, w in members)
        scaled = [float(w) / top for _, _, w in members]  # keeps fsum finite near float max
        total = math.fsum(scaled)
        canon = sorted(
            [d, float(b), float(f"{w / total:.12g}")]
            for (d, b, _), w in zip(members, scaled, strict=True)
        )
    payload = json.dumps({"aggregation": aggregation, "experts": canon}, sort_keys=True)
    return "fp-" + hashlib.sha256(payload.encode()).hexdigest()[:16]
