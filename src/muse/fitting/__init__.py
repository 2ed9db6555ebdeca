"""Fitting T^Q maps offline (paper §2.3.3, §2.4): tenant maps from the score lake, guarded by
Eq. 5, and a predictor's cold-start default map from a Beta mixture of its training scores."""

from muse.fitting.cold_start import (
    BetaMixture,
    BetaMixtureParams,
    cold_start_map,
    fit_beta_mixture,
    mixture_jsd,
)
from muse.fitting.quantiles import InsufficientSamplesError, TenantFit, fit_tenant_map
from muse.fitting.sample_size import required_samples

__all__ = [
    "BetaMixture",
    "BetaMixtureParams",
    "InsufficientSamplesError",
    "TenantFit",
    "cold_start_map",
    "fit_beta_mixture",
    "fit_tenant_map",
    "mixture_jsd",
    "required_samples",
]
