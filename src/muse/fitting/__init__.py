"""Fitting T^Q maps offline (paper §2.3.3, §2.4): tenant maps from the score lake, guarded by
Eq. 5, a predictor's cold-start default map from a Beta mixture of its training scores, and
the automated refresh (§5): the drift monitor's verdict and the refit policy."""

from muse.fitting.cold_start import (
    BetaMixture,
    BetaMixtureParams,
    cold_start_map,
    fit_beta_mixture,
    mixture_jsd,
)
from muse.fitting.drift import (
    DEFAULT_LEVELS,
    DriftVerdict,
    LevelCheck,
    drift_verdict,
    judge_alert_counts,
    level_threshold,
)
from muse.fitting.local_level import LocalLevel, fit_local_level
from muse.fitting.monitor import TenantDrift, monitor_lake, threshold_levels
from muse.fitting.quantiles import InsufficientSamplesError, TenantFit, fit_tenant_map
from muse.fitting.refresh import Candidate, RefreshChoice, choose_refresh, refresh_map
from muse.fitting.sample_size import required_samples
from muse.fitting.workflows import (
    ColdStart,
    FitRefusal,
    FittedMap,
    TenantMaps,
    fit_cold_start,
    fit_tenant_maps,
)

__all__ = [
    "DEFAULT_LEVELS",
    "BetaMixture",
    "BetaMixtureParams",
    "Candidate",
    "ColdStart",
    "DriftVerdict",
    "FitRefusal",
    "FittedMap",
    "InsufficientSamplesError",
    "LevelCheck",
    "LocalLevel",
    "RefreshChoice",
    "TenantDrift",
    "TenantFit",
    "TenantMaps",
    "choose_refresh",
    "cold_start_map",
    "drift_verdict",
    "fit_beta_mixture",
    "fit_cold_start",
    "fit_local_level",
    "fit_tenant_map",
    "fit_tenant_maps",
    "judge_alert_counts",
    "level_threshold",
    "mixture_jsd",
    "monitor_lake",
    "refresh_map",
    "required_samples",
    "threshold_levels",
]
