"""The public API is a contract (tools outside this repository call it): pin the names."""

from __future__ import annotations

import importlib
import inspect

import pytest

PUBLIC = {
    "muse.transforms": [
        "QuantileMap",
        "Reference",
        "default_levels",
        "posterior_correction",
        "weighted_mean",
    ],
    "muse.routing": [
        "DEFAULT_ATTRIBUTES",
        "Route",
        "Router",
        "ScoringRule",
        "ShadowRule",
        "condition_key",
    ],
    "muse.predictor": ["Expert", "Predictor", "PredictorResult", "TenantMap"],
    "muse.backends": [
        "BACKEND_KINDS",
        "LightGBMBackend",
        "ModelBackend",
        "ModelPool",
        "ModelSpec",
        "OnnxBackend",
        "XGBoostBackend",
        "file_digest",
        "load_backend",
    ],
    "muse.service": [
        "DeferredShadows",
        "LiveOutcome",
        "PredictorScore",
        "ScoreResult",
        "ScoringService",
        "Snapshot",
        "build_snapshot",
    ],
    "muse.testing": [
        "CACHE_ENV",
        "HOST",
        "MLSERVER_OUTPUT",
        "ModelServerError",
        "RunningServer",
        "ServerKind",
        "TRITON_INPUT",
        "TRITON_OUTPUT",
        "VenvInfo",
        "cache_root",
        "ensure_venv",
        "free_port",
        "free_ports",
        "mlserver_settings",
        "read_lightgbm_header",
        "start_mlserver",
        "start_triton",
        "triton_repository",
        "venv_info",
        "venv_path",
    ],
    "muse.fitting": [
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
    ],
    "muse.evaluation": [
        "AlignmentBin",
        "BinAlignment",
        "brier_score",
        "ece_sweep_em",
        "pr_auc",
        "recall_at_fpr",
        "relative_error_by_bin",
        "tail_edges",
        "wilson_interval",
    ],
    "muse.errors": [
        "AuthError",
        "BackendError",
        "ConfigError",
        "ConfigIssue",
        "FeatureError",
        "FeatureStoreError",
        "ForbiddenError",
        "IntentError",
        "MuseError",
        "NoRouteError",
        "ReasonsUnavailableError",
        "UnauthenticatedError",
    ],
    "muse.deployment": [
        "Deployment",
        "Prepared",
        "check_config",
        "check_remote",
        "check_store",
        "describe",
        "freeze_heap",
    ],
    "muse.auth": ["Authenticator", "Principal"],
    "muse.fleet": [
        "DeploymentStore",
        "StoreError",
        "VersionRecord",
        "bundle_files",
        "publish",
        "version_id",
    ],
    "muse.fleet.promotion": [
        "PromotionResult",
        "VersionState",
        "answer",
        "forget_gone_replicas",
        "heartbeat",
        "live_replicas",
        "pending_promotion",
        "promote",
        "rollback",
        "version_states",
    ],
    "muse.fleet.follower": ["Follower", "FollowerEvents", "Refusal", "default_replica_id"],
    "muse.serving.app": ["MuseApp", "StoreSource"],
    "muse.testing.haproxy": [
        "HaproxyError",
        "RunningHaproxy",
        "haproxy_binary",
        "haproxy_config",
        "start_haproxy",
    ],
    "muse.testing.load": ["Answer", "ScoreLoad", "mixed_window"],
    "muse.warmup": [
        "WarmUpReport",
        "WarmUpRequest",
        "Warmer",
        "run_request",
        "warm_unrouted",
        "warm_up",
        "warm_up_requests",
    ],
    "muse.resilience": ["CircuitBreaker"],
    "muse.featurestore": [
        "EntityKey",
        "FeatureStore",
        "FeatureStoreSpec",
        "InProcessTable",
        "ParquetSource",
        "RedisSource",
        "RedisStore",
        "StoreBackend",
        "StoreFeature",
        "StoreObserver",
        "StorePool",
        "open_backend",
    ],
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_all_is_pinned(module: str) -> None:
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(PUBLIC[module])
    for name in mod.__all__:
        assert getattr(mod, name) is not None


@pytest.mark.parametrize(
    ("func", "params"),
    [
        ("muse.transforms:posterior_correction", ["scores", "beta"]),
        ("muse.transforms:weighted_mean", ["scores", "weights"]),
        ("muse.fitting:required_samples", ["alert_rate", "rel_error", "z"]),
        # the refresh policy, as outside evaluation harnesses call it
        ("muse.fitting:refresh_map", ["windows", "reference", "options"]),
        ("muse.fitting:drift_verdict", ["final_scores", "reference", "levels", "rel_error", "z"]),
        ("muse.config:load_config", ["path", "require_transforms"]),
        (
            "muse.fitting:fit_beta_mixture",
            ["scores", "prior", "n_trials", "seed", "bins", "shape_bounds", "maxiter"],
        ),
        ("muse.evaluation:wilson_interval", ["k", "n", "z"]),
        ("muse.evaluation:relative_error_by_bin", ["scores", "reference", "bins", "z"]),
        ("muse.evaluation:ece_sweep_em", ["probs", "labels", "p"]),
        ("muse.evaluation:brier_score", ["probs", "labels"]),
        ("muse.evaluation:recall_at_fpr", ["scores", "labels", "fpr"]),
    ],
)
def test_signatures_are_pinned(func: str, params: list[str]) -> None:
    module, name = func.split(":")
    assert (
        list(inspect.signature(getattr(importlib.import_module(module), name)).parameters) == params
    )


def test_contract_methods_exist() -> None:
    from muse.routing import Router
    from muse.service import ScoringService
    from muse.transforms import QuantileMap, Reference

    assert list(inspect.signature(QuantileMap.fit).parameters)[:3] == [
        "raw_scores",
        "reference",
        "n_quantiles",
    ]
    assert inspect.signature(QuantileMap.fit).parameters["n_quantiles"].default == 1000
    weights = inspect.signature(QuantileMap.fit).parameters["weights"]
    assert weights.kind is inspect.Parameter.KEYWORD_ONLY
    assert weights.default is None
    refresh = inspect.signature(importlib.import_module("muse.fitting").refresh_map).parameters
    assert refresh["options"].kind is inspect.Parameter.VAR_KEYWORD
    for name in ("beta", "from_samples", "from_quantiles", "ppf", "cdf"):
        assert callable(getattr(Reference, name))
    for name in ("to_dict", "from_dict", "__call__"):
        assert callable(getattr(QuantileMap, name))
    assert callable(Router.from_config)
    assert callable(Router.route)
    for name in ("from_config", "score", "score_batch"):
        assert callable(getattr(ScoringService, name))


def test_errors_also_derive_from_the_right_builtins() -> None:
    from muse import errors

    assert issubclass(errors.ConfigError, ValueError)
    assert issubclass(errors.NoRouteError, LookupError)
    assert issubclass(errors.FeatureError, ValueError)
    assert issubclass(errors.IntentError, ValueError)
    assert issubclass(errors.BackendError, RuntimeError)
    assert issubclass(errors.FeatureStoreError, RuntimeError)
    assert issubclass(errors.AuthError, PermissionError)
    for cls in (
        errors.AuthError,
        errors.ConfigError,
        errors.NoRouteError,
        errors.FeatureError,
        errors.BackendError,
        errors.FeatureStoreError,
    ):
        assert issubclass(cls, errors.MuseError)


def test_importing_muse_loads_no_model_runtime() -> None:
    import subprocess
    import sys

    code = "import sys, muse, muse.backends, muse.transforms; print(sorted(m for m in ('lightgbm','onnxruntime','xgboost','scipy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
