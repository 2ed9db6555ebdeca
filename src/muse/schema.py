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
    "CircuitBreakerConfig",
    "DeploymentSpec",
    "ExpertConfig",
    "FeatureStoreConfig",
    "IntentConfig",
    "ModelCIConfig",
    "ModelConfig",
    "PredictorConfig",
    "RedisStoreConfig",
    "ReferenceConfig",
    "StoreFeatureConfig",
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

    backend: Literal["lightgbm", "onnx", "xgboost", "kserve-v2"] = Field(
        description="Runtime that loads the file, or `kserve-v2` for a model on a remote "
        "Open Inference Protocol (KServe V2) server such as Triton or MLServer."
    )
    uri: str | None = Field(
        None,
        min_length=1,
        description="Model file, relative to the config file (for `kserve-v2`: optional, a "
        "local copy whose content hash joins the model's identity).",
    )
    # -- kserve-v2 only ------------------------------------------------------------------
    url: str | None = Field(
        None, description="kserve-v2: server address, http(s)://host:port or host:port (gRPC)."
    )
    protocol: Literal["http", "grpc"] = Field("http", description="kserve-v2: transport.")
    model: str | None = Field(
        None, min_length=1, description="kserve-v2: model name on the server."
    )
    version: str | None = Field(
        None,
        min_length=1,
        description="kserve-v2: model version on the server; part of the model's identity "
        "(bump it when the served model changes, and every map is refitted).",
    )
    input_name: str = Field("input__0", min_length=1, description="kserve-v2: input tensor name.")
    datatype: Literal["FP32", "FP64"] = Field(
        "FP32", description="kserve-v2: input tensor datatype."
    )
    output_name: str = Field(
        "probability", min_length=1, description="kserve-v2: output tensor holding P(fraud)."
    )
    timeout_ms: float = Field(
        100.0,
        gt=0,
        allow_inf_nan=False,
        description="kserve-v2: deadline per call, retries included.",
    )
    retries: int = Field(1, ge=0, le=5, description="kserve-v2: retries on connection errors only.")
    max_batch_size: int = Field(
        256, ge=1, description="kserve-v2: most rows per request (larger batches are split)."
    )
    binary: Literal["auto", "on", "off"] = Field(
        "auto",
        description="kserve-v2 over http: binary tensors (auto: when the server announces "
        "the binary_tensor_data extension).",
    )
    breaker_failures: int = Field(
        3, ge=1, description="kserve-v2: consecutive failures that open the server's breaker."
    )
    breaker_reset_s: float = Field(
        1.0, gt=0, allow_inf_nan=False, description="kserve-v2: cool-down before a probe call."
    )
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
    explain: str | None = Field(
        None,
        min_length=1,
        description="onnx, kserve-v2: the tree model this one was exported from (LightGBM "
        "text .txt, XGBoost .json/.ubj), relative to the config: it gives the reason codes "
        "(TreeSHAP); an in-process model is checked to answer as it does.",
    )
    description: str | None = None

    @model_validator(mode="after")
    def _kind_fields(self) -> ModelConfig:
        if self.explain is not None and self.backend in ("lightgbm", "xgboost"):
            raise ValueError(
                f"a {self.backend} model explains itself: remove `explain` (it is for onnx "
                "and kserve-v2 models exported from a tree model)"
            )
        remote = {"url", "model", "version"}
        if self.backend == "kserve-v2":
            missing = [k for k in ("url", "model", "version") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"a kserve-v2 model needs {', '.join(missing)}")
            if not self.features:
                raise ValueError(
                    "a kserve-v2 model needs `features`: the server does not say which "
                    "feature each input column is"
                )
            if self.protocol == "http" and not self.url.startswith(("http://", "https://")):  # type: ignore[union-attr]
                raise ValueError(
                    f"an http server url starts with http:// or https://, got {self.url!r}"
                )
            return self
        if self.uri is None:
            raise ValueError(f"a {self.backend} model needs `uri` (its model file)")
        given = sorted(k for k in remote if getattr(self, k) is not None)
        if given:
            raise ValueError(f"{given} apply to kserve-v2 models only, not {self.backend}")
        return self


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


class CircuitBreakerConfig(_Strict):
    """When to stop calling a failing dependency, and when to try it again.

    After ``failure_threshold`` consecutive failures calls fail at once (microseconds
    instead of a timeout each); after ``reset_timeout_s`` one probe call is let through,
    and its success closes the circuit again — no restart or reload needed.
    """

    failure_threshold: int = Field(
        5, ge=1, le=10_000, description="Consecutive failures that open the circuit."
    )
    reset_timeout_s: float = Field(
        5.0,
        gt=0,
        le=3600,
        allow_inf_nan=False,
        description="Seconds the circuit stays open before one probe call is let through.",
    )


class RedisStoreConfig(_Strict):
    """A Redis feature store: one hash per entity, one field per feature."""

    url: str = Field(
        min_length=1,
        description="redis://[user:password@]host:port/db, rediss://… (TLS) or unix:///path.sock.",
    )
    key_prefix: str = Field(
        "",
        description="Hash name = prefix + the key's values joined by ':' (prefix 'card:' → 'card:c-1').",
    )
    timeout_ms: float = Field(
        20.0,
        gt=0,
        le=10_000,
        allow_inf_nan=False,
        description="Bound on connecting and on each read: a slow store fails the lookup, "
        "not the latency budget.",
    )
    max_connections: int = Field(64, ge=1, le=10_000, description="Connection pool size.")
    circuit_breaker: CircuitBreakerConfig = Field(
        default_factory=CircuitBreakerConfig, description="Fail fast while Redis is down."
    )

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        scheme = v.split("://", 1)[0] if "://" in v else ""
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError(
                f"expected a redis://, rediss:// or unix:// URL, got {v!r} "
                "(e.g. redis://127.0.0.1:6379/0)"
            )
        return v


class StoreFeatureConfig(_Strict):
    """A feature the store provides: ``required``, or the ``default`` for entities it lacks."""

    required: bool = Field(
        False,
        description="An event whose entity has no value is rejected with a 422 naming the feature.",
    )
    default: float | None = Field(
        None,
        allow_inf_nan=False,
        description="The value for an entity the store does not know (or that lacks this feature).",
    )

    @model_validator(mode="after")
    def _one(self) -> StoreFeatureConfig:
        if self.required == (self.default is not None):
            raise ValueError(
                "give either `required` or `{default: <number>}` (the value for entities "
                "the store does not know)"
            )
        return self


class FeatureStoreConfig(_Strict):
    """Where features a request omits are fetched from, by entity key (paper §2.5.1).

    Only features absent from the request are fetched, only for events whose routes'
    models need them; a feature the request carries is never overridden.
    """

    key: tuple[str, ...] = Field(
        min_length=1,
        description="The entity key: intent attributes (declared under intent.attributes, "
        "or tenant, geography, schema, channel) or request features, in order.",
    )
    parquet: str | None = Field(
        None,
        description="Parquet file, relative to the config: a column per key part and per "
        "feature, a row per entity (an empty cell: no value). Loaded into memory.",
    )
    redis: RedisStoreConfig | None = Field(None, description="A Redis server.")
    features: Mapping[str, StoreFeatureConfig] = Field(
        min_length=1,
        description="Feature name → `required` or `{default: <number>}`.",
    )
    description: str | None = None

    @field_validator("key", mode="before")
    @classmethod
    def _one_key(cls, v: object) -> object:
        return (v,) if isinstance(v, str) else v

    @field_validator("key")
    @classmethod
    def _key_names(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if any(not name for name in v) or len(set(v)) != len(v):
            raise ValueError(f"key names must be non-empty and distinct, got {list(v)}")
        return v

    @field_validator("features", mode="before")
    @classmethod
    def _shorthand(cls, v: object) -> object:
        if not isinstance(v, Mapping):
            return v
        out: dict[object, object] = {}
        for name, body in v.items():
            if isinstance(body, str) and body != "required":
                raise ValueError(
                    f"feature {name!r}: expected `required` or `{{default: <number>}}`, got {body!r}"
                )
            out[name] = {"required": True} if body == "required" else body
        return out

    @model_validator(mode="after")
    def _one_source(self) -> FeatureStoreConfig:
        given = [k for k in ("parquet", "redis") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of parquet, redis (got {given or 'none'})")
        both = sorted(set(self.key) & set(self.features))
        if both:
            raise ValueError(
                f"{both} cannot be both the entity key and a feature the store provides"
            )
        return self


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
    feature_store: FeatureStoreConfig | None = Field(
        None, description="Where features a request omits are fetched from; absent = none."
    )
