"""The schema of ``muse.yaml``: frozen pydantic models mirroring the YAML, one per section.

Field descriptions are the reference documentation of each key. Cross-references between
sections (a predictor's models, a rule's predictor) are checked by :mod:`muse.config`,
which validates each entry with these models and loads what they point at.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from muse.serving_config import AuthSetting, LakeConfig, ServerConfig

__all__ = [
    "BetaParams",
    "DeploymentSpec",
    "ExpertConfig",
    "IntentConfig",
    "ModelCIConfig",
    "ModelConfig",
    "PredictorConfig",
    "ReferenceConfig",
    "TenantConfig",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class BetaParams(_Strict):
    """Shape parameters of a Beta reference."""

    a: float = Field(gt=0, allow_inf_nan=False, description="First shape parameter (> 0).")
    b: float = Field(gt=0, allow_inf_nan=False, description="Second shape parameter (> 0).")


class ReferenceConfig(_Strict):
    """A reference distribution R: exactly one of ``beta``, ``quantiles`` or ``samples``."""

    beta: BetaParams | None = Field(None, description="A Beta(a, b) distribution.")
    quantiles: str | None = Field(
        None,
        description="JSON file {levels: [...], values: [...]}: e.g. a legacy system's score quantiles.",
    )
    samples: str | None = Field(
        None,
        description="File of scores in [0, 1]: .json list, .npy, or .parquet (column 'score').",
    )
    description: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ReferenceConfig:
        given = [k for k in ("beta", "quantiles", "samples") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of beta, quantiles, samples (got {given or 'none'})"
            )
        return self


class ModelConfig(_Strict):
    """A physical model: the unit of sharing between predictors (paper §2.2.1)."""

    backend: Literal["lightgbm", "onnx", "xgboost"] = Field(
        description="Runtime that loads the file."
    )
    uri: str = Field(min_length=1, description="Model file, relative to the config file.")
    undersampling: float = Field(
        1.0,
        gt=0,
        le=1,
        allow_inf_nan=False,
        description="β: fraction of negatives kept when training (Eq. 3); 1 = no undersampling.",
    )
    features: tuple[str, ...] | None = Field(
        None, description="Feature names, for model files that do not embed them."
    )
    threads: int = Field(1, ge=1, le=64, description="Intra-op threads of the runtime.")
    description: str | None = None


class ExpertConfig(_Strict):
    """One expert of a predictor."""

    model: str = Field(min_length=1, description="Name of a model under `models`.")
    weight: float = Field(1.0, gt=0, allow_inf_nan=False, description="Aggregation weight (> 0).")


class PredictorConfig(_Strict):
    """A predictor p = ⟨M, A, T^Q⟩ (paper §2.2.2)."""

    experts: tuple[ExpertConfig, ...] = Field(min_length=1, description="Its experts M.")
    aggregation: Literal["weighted_mean"] = Field("weighted_mean", description="Aggregation A.")
    reference: str = Field(description="Name of the reference distribution its maps target.")
    transforms: str = Field(
        min_length=1, description="Folder of its T^Q artifacts, relative to the config file."
    )
    pins: Mapping[str, int] = Field(
        default_factory=dict,
        description="Tenant (or 'default') → T^Q version to deploy instead of the latest.",
    )
    description: str | None = None


class IntentConfig(_Strict):
    """Intent attributes clients may send, beyond tenant, geography, schema and channel."""

    attributes: tuple[str, ...] = Field(default=(), description="Extra attribute names (singular).")

    @field_validator("attributes")
    @classmethod
    def _names(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for name in v:
            if not name.isidentifier() or not name.islower():
                raise ValueError(f"attribute names are lower-case identifiers, got {name!r}")
        return v


class TenantConfig(_Strict):
    """What muse knows of a tenant's own decisions: the thresholds it acts on.

    muse never applies these (the tenant's system does); they tell the model-CI gate
    (``muse report compare``) which score changes matter: a shift that moves no event across
    a threshold changes no decision.
    """

    thresholds: Mapping[str, float] = Field(
        default_factory=dict,
        description="Action name → score threshold in [0, 1]; an event gets the action of the "
        "highest threshold it reaches (e.g. review: 0.6, block: 0.9), else 'allow'.",
    )
    description: str | None = None

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, v: Mapping[str, float]) -> Mapping[str, float]:
        for action, t in v.items():
            if not action.isidentifier():
                raise ValueError(f"action names are identifiers, got {action!r}")
            if action == "allow":
                raise ValueError("'allow' is the action below every threshold; do not declare it")
            if isinstance(t, bool) or not isinstance(t, int | float) or not 0.0 < t <= 1.0:
                raise ValueError(f"threshold of {action!r} must be a number in (0, 1], got {t!r}")
        if len(set(v.values())) != len(v):
            raise ValueError(f"two actions share a threshold: {dict(v)}")
        return v


class ModelCIConfig(_Strict):
    """Limits of the model-CI gate (``muse report compare``): when may a candidate replace live.

    Every limit compares the candidate with the live predictor *on the same events* (the
    candidate's shadow rows joined to the live rows), so traffic drift cancels out and what
    remains is the model change itself.
    """

    min_events: int = Field(
        1000, ge=1, description="Fewest paired events a comparison may be based on."
    )
    max_action_changes: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Largest share of events whose action (at the tenant's thresholds) may change.",
    )
    max_alert_rate_change: float = Field(
        0.25,
        ge=0,
        description="Largest relative change of the alert rate at any tenant threshold "
        "(candidate vs live).",
    )
    max_alignment_error: float = Field(
        0.25,
        ge=0,
        description="Largest |relative error| of the candidate's share per reference bin "
        "(outside its Wilson interval) — a stale or missing tenant map fails this.",
    )
    fpr: float = Field(
        0.01, gt=0, lt=1, description="False-positive rate at which recall is compared."
    )
    max_recall_drop: float = Field(
        0.02,
        ge=0,
        le=1,
        description="Largest absolute drop of recall at `fpr` (only when labels exist).",
    )
    max_pr_auc_drop: float = Field(
        0.02, ge=0, le=1, description="Largest absolute drop of PR-AUC (only when labels exist)."
    )


class DeploymentSpec(_Strict):
    """The whole ``muse.yaml``."""

    version: str | None = Field(None, description="Operator's name for this config version.")
    intent: IntentConfig = Field(default_factory=IntentConfig)
    references: Mapping[str, ReferenceConfig]
    models: Mapping[str, ModelConfig]
    predictors: Mapping[str, PredictorConfig]
    routing: Mapping[str, Any]
    auth: AuthSetting | None = Field(
        None, description="`none` (local use only) or API keys; required to serve."
    )
    lake: LakeConfig | None = Field(None, description="Score lake; absent = no lake.")
    server: ServerConfig = Field(default_factory=ServerConfig)
    tenants: Mapping[str, TenantConfig] = Field(
        default_factory=dict, description="Per-tenant facts muse does not serve with (thresholds)."
    )
    model_ci: ModelCIConfig = Field(
        default_factory=ModelCIConfig, description="Limits of the model-CI gate."
    )
