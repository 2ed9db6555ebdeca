"""The promise of muse, end to end: replace the predictor, keep every alert rate.

Two different predictors (a raw single model and a corrected 3-expert ensemble, whose raw
thresholds for the same alert rate differ by more than 2×), each with a T^Q fitted on one
tenant's events, must give that tenant the reference's alert rates at the reference's
thresholds — within ±15 % relative at 1 %, 0.5 % and 0.1 % — on fresh events.

Sized by design (paper Eq. 5), not by luck: the fitted threshold and the measured rate each
carry sampling error, so each sample is sized for δ/√2 at z = 3; their combined error then
stays within δ = 15 % with z = 3 confidence at the smallest alert rate, 0.1 %.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from muse.datasets import EventFrame, generate_events, make_tenants
from muse.features import FeatureTable
from muse.fitting import required_samples
from muse.predictor import Predictor
from muse.service import ScoringService
from muse.transforms import QuantileMap

QUICKSTART = Path(__file__).resolve().parents[1] / "examples" / "quickstart" / "muse.yaml"
ALERT_RATES = (0.01, 0.005, 0.001)
TOLERANCE = 0.15
Z = 3.0


@pytest.mark.slow
def test_two_predictors_give_a_tenant_the_same_reference_alert_rates() -> None:
    n = required_samples(min(ALERT_RATES), TOLERANCE / math.sqrt(2), z=Z)
    assert n == 799_200
    tenants = make_tenants(3, seed=11, names=("bank1", "bank2", "fintech3"))
    bank2 = [t for t in tenants if t.name == "bank2"]
    fit_events = generate_events(bank2, n, seed=101)
    test_events = generate_events(bank2, n, seed=202)  # fresh events, same tenant and period

    snapshot = ScoringService.from_config(QUICKSTART).snapshot
    reference = snapshot.config.references["fraud-v1"]
    single, ensemble = snapshot.predictors["single-v1"], snapshot.predictors["ensemble-v1"]
    assert single.models != ensemble.models

    def raw(predictor: Predictor, events: EventFrame) -> np.ndarray:
        return predictor.score(FeatureTable(dict(events.features)), "bank2").raw

    raws = {p.name: (raw(p, fit_events), raw(p, test_events)) for p in (single, ensemble)}
    ratio = np.quantile(raws["single-v1"][0], 0.99) / np.quantile(raws["ensemble-v1"][0], 0.99)
    assert ratio > 2, f"raw thresholds at 1 % differ only {ratio:.2f}×"

    for name, (fit_raw, test_raw) in raws.items():
        mapped = QuantileMap.fit(fit_raw, reference)(test_raw)
        for a in ALERT_RATES:
            threshold = reference.ppf([1 - a])[0]
            observed = float((mapped > threshold).mean())
            assert abs(observed / a - 1) < TOLERANCE, (name, a, observed)
