"""The deployment config (``muse.yaml``): a frozen, validated tree mirroring the YAML.

:func:`load_config` reads the file, validates every section, resolves cross-references
(models of predictors, references, routing targets), reads the T^Q artifacts and checks
each was fitted for its predictor's fingerprint — and reports *every* problem at once, each
with its YAML path, so an operator fixes a config in one round trip. Model files are hashed
(their identity in fingerprints), not loaded: loading is the service's job.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ValidationError

from muse.artifacts import (
    QuantileArtifact,
    artifact_path,
    list_versions,
    load_artifact,
    next_load,
    reference_digest,
    scan_versions,
)
from muse.backends.base import BACKEND_KINDS, REMOTE_KINDS, ModelSpec, file_digest, remote_digest
from muse.errors import ConfigError, ConfigIssue
from muse.featurestore.spec import (
    EntityKey,
    FeatureStoreSpec,
    ParquetSource,
    RedisSource,
    StoreFeature,
)
from muse.fingerprint import predictor_fingerprint
from muse.routing import DEFAULT_ATTRIBUTES, Router
from muse.schema import (
    DeploymentSpec,
    ExpertConfig,
    FeatureStoreConfig,
    IntentConfig,
    ModelCIConfig,
    ModelConfig,
    PredictorConfig,
    ReferenceConfig,
    TenantConfig,
)
from muse.scorefiles import parse_score_file
from muse.serving_config import AuthConfig, LakeConfig, ServerConfig
from muse.splits import Split
from muse.transforms.reference import Reference

__all__ = [
    "DeploymentSpec",
    "ExpertConfig",
    "LoadedConfig",
    "ModelConfig",
    "PredictorConfig",
    "PredictorTransforms",
    "ReferenceConfig",
    "load_config",
]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True, slots=True)
class PredictorTransforms:
    """The T^Q artifacts deployed for one predictor: its default map and tenants' own maps."""

    default: QuantileArtifact
    tenants: Mapping[str, QuantileArtifact]


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    """A validated deployment: the spec plus everything resolved from it.

    ``digest`` hashes the YAML and every file it resolved (models, artifacts, references),
    so two loads with the same digest serve identical scores. ``version`` is the operator's
    ``version`` when given, else the digest.
    """

    path: Path
    spec: DeploymentSpec
    digest: str
    references: Mapping[str, Reference]
    model_specs: Mapping[str, ModelSpec]
    model_digests: Mapping[str, str]
    fingerprints: Mapping[str, str]
    transforms: Mapping[str, PredictorTransforms]
    router: Router
    #: The ``feature_store`` section resolved (file paths absolute, key parts' sources).
    feature_store: FeatureStoreSpec | None = None
    #: Model → the tree model that explains it (``models.<m>.explain``), for reason codes.
    explain_specs: Mapping[str, ModelSpec] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def version(self) -> str:
        return self.spec.version or self.digest

    @property
    def lake_url(self) -> str | None:
        """Where the score lake is: an fsspec URL as given, or a local folder resolved
        against the config's folder (so every tool finds the lake the server writes)."""
        if self.spec.lake is None:
            return None
        url = self.spec.lake.url
        return url if "://" in url else str((self.path.parent / url).resolve())

    def betas(self, predictor: str) -> list[float]:
        """β of each expert of ``predictor``, in expert order."""
        return [
            self.spec.models[e.model].undersampling for e in self.spec.predictors[predictor].experts
        ]


def load_config(path: str | Path, *, require_transforms: bool = True) -> LoadedConfig:
    """Read and validate ``muse.yaml``; raise :class:`ConfigError` listing every problem.

    ``require_transforms=False`` is for the offline tools that *make* T^Q artifacts
    (``muse cold-start``, ``muse fit``): a predictor whose default map is missing, or whose
    maps were fitted for another fingerprint, is then loaded without them (absent from
    :attr:`LoadedConfig.transforms`, or with fewer tenant maps) instead of failing the
    load — its fingerprint is exactly what those tools need to write a fresh map. Serving
    always requires them.
    """
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as e:
        raise ConfigError(
            f"cannot read config file {path}: {e.strerror}", source=str(path)
        ) from None
    try:
        # A named stream, so YAML errors point at the file rather than "<byte string>".
        stream = io.BytesIO(text)
        stream.name = str(path)
        raw = yaml.load(stream, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as e:
        raise ConfigError(f"malformed YAML: {e}", source=str(path)) from None
    return _Loader(path, text, require_transforms=require_transforms).load(raw)


class _Loader:
    """One load: collects issues while walking the document, then raises them all together."""

    def __init__(self, path: Path, text: bytes, *, require_transforms: bool = True) -> None:
        self.path = path
        self.require_transforms = require_transforms
        self.base = path.parent
        self.issues: list[ConfigIssue] = []
        self.hash = hashlib.sha256(text)
        self.map_tolerance = 0.0
        next_load()

    def issue(self, where: str, message: str) -> None:
        self.issues.append(ConfigIssue(where, message))

    def load(self, raw: object) -> LoadedConfig:
        if not isinstance(raw, dict):
            raise ConfigError(
                f"the config must be a YAML mapping, got {type(raw).__name__}",
                source=str(self.path),
            )
        sections: dict[str, type[BaseModel]] = {
            "references": ReferenceConfig,
            "models": ModelConfig,
            "predictors": PredictorConfig,
        }
        # Each entry is validated on its own, so one broken model does not hide the others'
        # problems, and cross-references can still be checked against every name.
        entries: dict[str, dict[str, Any]] = {}
        for section, schema in sections.items():
            entries[section] = {}
            block = raw.get(section)
            if block is None:
                self.issue(section, "required section is missing")
                continue
            if not isinstance(block, dict):
                self.issue(
                    section, f"must be a mapping of name → entry, got {type(block).__name__}"
                )
                continue
            for name, body in block.items():
                where = f"{section}.{name}"
                if not isinstance(name, str) or not _valid_name(name):
                    self.issue(
                        where, "names use letters, digits, '_', '-', '.' and start alphanumeric"
                    )
                try:
                    entries[section][str(name)] = schema.model_validate(body)
                except ValidationError as e:
                    self._pydantic(where, e)
        optional = {
            "version",
            "intent",
            "routing",
            "auth",
            "lake",
            "server",
            "tenants",
            "model_ci",
            "feature_store",
        }
        for key in sorted(set(raw) - optional - set(sections), key=str):
            self.issue(
                str(key),
                "unknown top-level key; expected one of "
                + ", ".join(sorted(optional | set(sections))),
            )
        intent = IntentConfig()
        try:
            intent = IntentConfig.model_validate(raw.get("intent") or {})
        except ValidationError as e:
            self._pydantic("intent", e)
        serving = self._serving(raw)
        serving.update(self._lifecycle(raw))
        server = serving.get("server")
        # Maps are thinned for serving only where a config is served (not by the tools
        # that fit maps, which load leniently and need them exact).
        if self.require_transforms:
            if not isinstance(server, ServerConfig):
                server = ServerConfig()
            self.map_tolerance = server.map_tolerance
        version = raw.get("version")
        if version is not None and not isinstance(version, str | int | float):
            self.issue("version", f"must be a string, got {version!r}")

        attributes = tuple(dict.fromkeys((*DEFAULT_ATTRIBUTES, *intent.attributes)))
        router = self._router(raw.get("routing"), attributes)
        store_config, store = self._feature_store(raw.get("feature_store"), attributes)
        references = self._references(entries["references"])
        model_specs, digests = self._models(entries["models"])
        explain_specs = self._explain_specs(entries["models"])
        fingerprints, transforms = self._predictors(
            entries["predictors"],
            entries["models"],
            references,
            digests,
            _section_names(raw.get("models")),
        )
        # Targets are checked on the raw block, so a syntax problem elsewhere in the routing
        # (which leaves no router) does not hide unknown predictors.
        self._routing_targets(raw.get("routing"), _section_names(raw.get("predictors")))
        if router is not None:
            self._split_references(router, entries["predictors"])

        if self.issues:
            raise ConfigError(self.issues, source=str(self.path))
        assert router is not None
        spec = DeploymentSpec(
            version=None if version is None else str(version),
            intent=intent,
            references=entries["references"],
            models=entries["models"],
            predictors=entries["predictors"],
            routing=raw["routing"],
            feature_store=store_config,
            **serving,
        )
        return LoadedConfig(
            path=self.path,
            spec=spec,
            digest="cfg-" + self.hash.hexdigest()[:12],
            references=MappingProxyType(references),
            model_specs=MappingProxyType(model_specs),
            model_digests=MappingProxyType(digests),
            fingerprints=MappingProxyType(fingerprints),
            transforms=MappingProxyType(transforms),
            router=router,
            feature_store=store,
            explain_specs=MappingProxyType(explain_specs),
        )

    # -- sections -----------------------------------------------------------------------

    def _serving(self, raw: dict[str, Any]) -> dict[str, Any]:
        """The ``auth``, ``lake`` and ``server`` sections, validated (secrets merged in)."""
        out: dict[str, Any] = {}
        auth = raw.get("auth")
        if auth == "none":
            out["auth"] = "none"
        elif auth is not None:
            try:
                parsed = AuthConfig.model_validate(auth)
            except ValidationError as e:
                self._pydantic("auth", e)
            else:
                out["auth"] = self._with_secrets(parsed)
        for key, schema in (("lake", LakeConfig), ("server", ServerConfig)):
            if raw.get(key) is None:
                continue
            try:
                out[key] = schema.model_validate(raw[key])
            except ValidationError as e:
                self._pydantic(key, e)
        return out

    def _lifecycle(self, raw: dict[str, Any]) -> dict[str, Any]:
        """The ``tenants`` (thresholds) and ``model_ci`` (gate limits) sections."""
        out: dict[str, Any] = {}
        block = raw.get("tenants")
        if block is not None:
            if not isinstance(block, dict):
                self.issue(
                    "tenants", f"must be a mapping of tenant → entry, got {type(block).__name__}"
                )
            else:
                tenants: dict[str, TenantConfig] = {}
                for name, body in block.items():
                    where = f"tenants.{name}"
                    if not isinstance(name, str) or not _valid_name(name):
                        self.issue(
                            where, "names use letters, digits, '_', '-', '.' and start alphanumeric"
                        )
                        continue
                    try:
                        tenants[name] = TenantConfig.model_validate(body or {})
                    except ValidationError as e:
                        self._pydantic(where, e)
                out["tenants"] = tenants
        if raw.get("model_ci") is not None:
            try:
                out["model_ci"] = ModelCIConfig.model_validate(raw["model_ci"])
            except ValidationError as e:
                self._pydantic("model_ci", e)
        return out

    def _feature_store(
        self, block: object, attributes: tuple[str, ...]
    ) -> tuple[FeatureStoreConfig | None, FeatureStoreSpec | None]:
        """The ``feature_store`` section: validated, its key parts' sources resolved (an
        intent attribute, else a request feature), a Parquet file hashed and its columns
        checked. The table itself is loaded with the snapshot, like models."""
        if block is None:
            return None, None
        where = "feature_store"
        try:
            config = FeatureStoreConfig.model_validate(block)
        except ValidationError as e:
            self._pydantic(where, e)
            return None, None
        keys = tuple(EntityKey(name, name in attributes) for name in config.key)
        features = tuple(
            StoreFeature(name, None if f.required else f.default)
            for name, f in config.features.items()
        )
        source: ParquetSource | RedisSource
        if config.parquet is not None:
            at = f"{where}.parquet"
            data = self._read(at, config.parquet)
            if data is None:
                return config, None
            columns = _parquet_columns(data)
            if columns is None:
                self.issue(at, f"{config.parquet} is not a readable Parquet file")
                return config, None
            missing = [c for c in (*config.key, *config.features) if c not in columns]
            if missing:
                self.issue(
                    at,
                    f"{config.parquet} lacks column(s) {missing} (one per key part and per "
                    f"feature); it has {columns}",
                )
                return config, None
            source = ParquetSource(
                path=(self.base / config.parquet).resolve(),
                digest="sha256:" + hashlib.sha256(data).hexdigest(),
                keys=config.key,
                features=tuple(config.features),
            )
        else:
            assert config.redis is not None  # exactly one source: checked by the schema
            r = config.redis
            source = RedisSource(
                url=r.url,
                key_prefix=r.key_prefix,
                timeout_s=r.timeout_ms / 1000.0,
                failure_threshold=r.circuit_breaker.failure_threshold,
                reset_timeout_s=r.circuit_breaker.reset_timeout_s,
                max_connections=r.max_connections,
            )
        return config, FeatureStoreSpec(keys=keys, features=features, source=source)

    def _with_secrets(self, auth: AuthConfig) -> AuthConfig:
        if auth.secrets_file is None:
            return auth
        where = "auth.secrets_file"
        data = self._read(where, auth.secrets_file)
        if data is None:
            return auth
        try:
            doc = yaml.safe_load(data) or {}
            extra = AuthConfig.model_validate(doc)
        except yaml.YAMLError as e:
            self.issue(where, f"malformed YAML in {auth.secrets_file}: {e}")
            return auth
        except ValidationError as e:
            self._pydantic(where, e)
            return auth
        tenants = {t: tuple(h) for t, h in auth.tenants.items()}
        for tenant, hashes in extra.tenants.items():
            tenants[tenant] = tuple(dict.fromkeys((*tenants.get(tenant, ()), *hashes)))
        return AuthConfig(
            tenants=tenants,
            admins=tuple(dict.fromkeys((*auth.admins, *extra.admins))),
            secrets_file=auth.secrets_file,
        )

    def _pydantic(self, where: str, error: ValidationError) -> None:
        for err in error.errors():
            loc = where + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key (check its spelling)"
            elif err["type"] == "value_error" and "error" in err.get("ctx", {}):
                # Our validators' own messages, without pydantic's "Value error, " prefix.
                msg = str(err["ctx"]["error"])
            elif "input" in err and err["type"] not in ("missing",):
                msg = f"{msg} (got {err['input']!r})"
            self.issue(loc, msg)

    def _router(self, block: object, attributes: tuple[str, ...]) -> Router | None:
        if block is None:
            self.issue("routing", "required section is missing")
            return None
        if not isinstance(block, dict):
            self.issue("routing", f"must be a mapping, got {type(block).__name__}")
            return None
        try:
            return Router.from_config(block, attributes=attributes)
        except ConfigError as e:
            self.issues.extend(e.prefixed("routing").issues)
            return None

    def _routing_targets(self, block: object, known: set[str]) -> None:
        if not isinstance(block, dict):
            return

        def check(where: str, target: object) -> None:
            if isinstance(target, str) and target and target not in known:
                self.issue(where, f"unknown predictor {target!r}; defined: {sorted(known)}")

        for key, field_name in (
            ("scoringRules", "targetPredictorName"),
            ("shadowRules", "targetPredictorNames"),
        ):
            rules = block.get(key)
            if not isinstance(rules, list):
                continue
            for i, rule in enumerate(rules):
                if not isinstance(rule, dict):
                    continue
                arms = rule.get("targets") if key == "scoringRules" else None
                if isinstance(arms, list):
                    for j, arm in enumerate(arms):
                        if isinstance(arm, dict):
                            check(
                                f"routing.{key}[{i}].targets[{j}].predictor", arm.get("predictor")
                            )
                where = f"routing.{key}[{i}].{field_name}"
                targets = rule.get(field_name)
                if isinstance(targets, list):
                    for j, target in enumerate(targets):
                        check(f"{where}[{j}]", target)
                else:
                    check(where, targets)

    def _split_references(self, router: Router, predictors: Mapping[str, Any]) -> None:
        """Every arm of a split maps onto one reference R: that is what keeps a tenant's
        thresholds valid whichever arm scores its events."""
        for i, rule in enumerate(router.scoring_rules):
            if not isinstance(rule.target, Split):
                continue
            refs = {
                p: getattr(predictors.get(p), "reference", None)
                for p in rule.predictors
                if p in predictors
            }
            if len(set(refs.values())) > 1:
                self.issue(
                    f"routing.scoringRules[{i}].targets",
                    "the arms of a split must map onto the same reference, so a tenant's "
                    f"thresholds hold whichever arm scores an event; got {refs}",
                )

    def _references(self, specs: Mapping[str, ReferenceConfig]) -> dict[str, Reference]:
        out: dict[str, Reference] = {}
        for name, spec in specs.items():
            where = f"references.{name}"
            try:
                if spec.beta is not None:
                    out[name] = Reference.beta(spec.beta.a, spec.beta.b)
                elif spec.quantiles is not None:
                    data = self._read(where + ".quantiles", spec.quantiles)
                    if data is None:
                        continue  # unreadable: already reported by _read
                    doc = _json(spec.quantiles, data)
                    if not isinstance(doc, dict) or set(doc) != {"levels", "values"}:
                        raise ValueError('the file must hold {"levels": [...], "values": [...]}')
                    out[name] = Reference.from_quantiles(doc["levels"], doc["values"])
                elif spec.samples is not None:
                    out[name] = Reference.from_samples(
                        self._samples(where + ".samples", spec.samples)
                    )
            except (ValueError, TypeError) as e:
                self.issue(where, str(e))
        return out

    def _samples(self, where: str, uri: str) -> np.ndarray:
        data = self._read(where, uri)
        if data is None:
            raise ValueError("the samples file could not be read")
        return parse_score_file(data, uri)

    def _read(self, where: str, uri: str) -> bytes | None:
        p = self.base / uri
        try:
            data = p.read_bytes()
        except OSError as e:
            self.issue(where, f"cannot read {p}: {e.strerror}")
            return None
        self.hash.update(data)
        return data

    def _models(
        self, specs: Mapping[str, ModelConfig]
    ) -> tuple[dict[str, ModelSpec], dict[str, str]]:
        model_specs: dict[str, ModelSpec] = {}
        digests: dict[str, str] = {}
        for name, m in specs.items():
            where = f"models.{name}.uri"
            if m.backend in REMOTE_KINDS:
                self._remote_model(name, m, model_specs, digests)
                continue
            assert m.uri is not None  # the schema requires it for in-process kinds
            p = (self.base / m.uri).resolve()
            if m.backend not in BACKEND_KINDS:  # pragma: no cover - Literal already restricts it
                self.issue(f"models.{name}.backend", f"unknown backend {m.backend!r}")
                continue
            if not p.is_file():
                self.issue(where, f"model file {p} does not exist")
                continue
            try:
                digests[name] = file_digest(p)
            except OSError as e:
                self.issue(where, f"cannot read model file {p}: {e.strerror}")
                continue
            self.hash.update(digests[name].encode())
            model_specs[name] = ModelSpec(
                kind=m.backend, path=p, features=m.features, threads=m.threads
            )
        return model_specs, digests

    def _explain_specs(self, specs: Mapping[str, ModelConfig]) -> dict[str, ModelSpec]:
        """The tree models that explain onnx and remote models (reason codes)."""
        out: dict[str, ModelSpec] = {}
        for name, m in specs.items():
            if m.explain is None:
                continue
            where = f"models.{name}.explain"
            p = (self.base / m.explain).resolve()
            kind = {".txt": "lightgbm", ".json": "xgboost", ".ubj": "xgboost"}.get(p.suffix.lower())
            if kind is None:
                self.issue(
                    where,
                    f"expected a LightGBM text model (.txt) or an XGBoost model (.json, .ubj), "
                    f"got {p.name!r}",
                )
                continue
            if not p.is_file():
                self.issue(where, f"model file {p} does not exist")
                continue
            try:
                self.hash.update(file_digest(p).encode())
            except OSError as e:
                self.issue(where, f"cannot read model file {p}: {e.strerror}")
                continue
            # No `features`: the names stored in the tree model are what is compared with
            # the served model's (snapshot), not the config's list with itself.
            out[name] = ModelSpec(kind=kind, path=p, threads=m.threads)
        return out

    def _remote_model(
        self,
        name: str,
        m: ModelConfig,
        model_specs: dict[str, ModelSpec],
        digests: dict[str, str],
    ) -> None:
        """A kserve-v2 model: its identity is model, version, features (+ a local copy)."""
        assert m.url is not None
        assert m.model is not None
        assert m.version is not None
        assert m.features is not None
        file = None
        if m.uri is not None:
            p = (self.base / m.uri).resolve()
            try:
                file = file_digest(p)
            except OSError as e:
                self.issue(f"models.{name}.uri", f"cannot read model file {p}: {e.strerror}")
                return
        digests[name] = remote_digest(m.model, m.version, m.features, file)
        self.hash.update(digests[name].encode())
        options = {
            "url": m.url,
            "protocol": m.protocol,
            "model": m.model,
            "version": m.version,
            "input_name": m.input_name,
            "datatype": m.datatype,
            "output_name": m.output_name,
            "timeout_ms": repr(m.timeout_ms),
            "retries": str(m.retries),
            "max_batch_size": str(m.max_batch_size),
            "binary": m.binary,
            "breaker_failures": str(m.breaker_failures),
            "breaker_reset_s": repr(m.breaker_reset_s),
        }
        if file is not None:
            options["file_digest"] = file
        model_specs[name] = ModelSpec(
            kind=m.backend,
            path=Path(f"{m.backend}:{m.url}/{m.model}/{m.version}"),
            features=m.features,
            threads=m.threads,
            options=tuple(sorted(options.items())),
        )

    def _predictors(
        self,
        specs: Mapping[str, PredictorConfig],
        models: Mapping[str, ModelConfig],
        references: Mapping[str, Reference],
        digests: Mapping[str, str],
        model_names: set[str],
    ) -> tuple[dict[str, str], dict[str, PredictorTransforms]]:
        fingerprints: dict[str, str] = {}
        transforms: dict[str, PredictorTransforms] = {}
        for name, p in specs.items():
            where = f"predictors.{name}"
            ok = True
            seen: set[str] = set()
            for i, e in enumerate(p.experts):
                if e.model not in model_names:
                    self.issue(
                        f"{where}.experts[{i}].model",
                        f"unknown model {e.model!r}; defined: {sorted(model_names)}",
                    )
                    ok = False
                elif e.model in seen:
                    self.issue(f"{where}.experts[{i}].model", f"model {e.model!r} is listed twice")
                    ok = False
                elif e.model not in digests:
                    ok = False  # the model's own entry is broken and was reported there
                seen.add(e.model)
            if p.reference not in references:
                self.issue(
                    f"{where}.reference",
                    f"unknown reference {p.reference!r}; defined: {sorted(references)}",
                )
                ok = False
            if not ok:
                continue
            fp = predictor_fingerprint(
                [(digests[e.model], models[e.model].undersampling, e.weight) for e in p.experts],
                p.aggregation,
            )
            fingerprints[name] = fp
            loaded = self._transforms(where, name, p, fp, p.reference, references[p.reference])
            if loaded is not None:
                transforms[name] = loaded
        return fingerprints, transforms

    def _transforms(
        self,
        where: str,
        predictor: str,
        spec: PredictorConfig,
        fingerprint: str,
        ref_name: str,
        reference: Reference,
    ) -> PredictorTransforms | None:
        folder = self.base / spec.transforms
        ref_digest = reference_digest(reference)
        pins = dict(spec.pins)

        scanned = scan_versions(folder)

        def pick(tenant: str | None) -> QuantileArtifact | None:
            key = "default" if tenant is None else tenant
            if tenant in scanned:
                versions = scanned[tenant]
            else:
                try:
                    versions = list_versions(folder, tenant)
                except ValueError as e:  # a pinned tenant whose name cannot be a folder name
                    self.issue(f"{where}.pins.{key}", str(e))
                    return None
            at = f"{where}.pins.{key}" if key in pins else f"{where}.transforms"
            if key in pins:
                if pins[key] not in versions:
                    self.issue(
                        at,
                        f"pinned version v{pins[key]} of the {key!r} map does not exist at "
                        f"{artifact_path(folder, tenant, pins[key])}; present: {[f'v{v}' for v in versions]}",
                    )
                    return None
                version = pins[key]
            elif not versions:
                if not self.require_transforms:
                    return None
                what = "default (cold-start) map" if tenant is None else f"map of tenant {tenant!r}"
                self.issue(
                    at,
                    f"missing artifact file: no {what} at {artifact_path(folder, tenant, 0).parent}/v<N>.json; "
                    "fit one (muse cold-start / muse fit quantiles)",
                )
                return None
            else:
                version = versions[-1]
            file = artifact_path(folder, tenant, version)
            try:
                found = load_artifact(file, self.map_tolerance)
            except ValueError as e:
                if self.require_transforms:
                    self.issue(at, str(e))
                return None
            art = found.artifact
            self.hash.update(found.sha256.encode())
            problems = []
            if art.version != version:
                problems.append(f"records version {art.version} but is stored as v{version}")
            if art.tenant != tenant:
                problems.append(f"was fitted for tenant {art.tenant!r}, not {tenant!r}")
            if art.fingerprint != fingerprint:
                problems.append(
                    f"fingerprint mismatch: the map was fitted for predictor fingerprint {art.fingerprint}, "
                    f"but {predictor!r} now has {fingerprint} (its models, betas, weights or aggregation "
                    "changed); fit a new map for this predictor"
                )
            if art.reference != ref_name or art.reference_digest != ref_digest:
                problems.append(
                    f"targets reference {art.reference!r} ({art.reference_digest}), but the predictor "
                    f"uses {ref_name!r} ({ref_digest}); fit a new map"
                )
            for problem in problems if self.require_transforms else ():
                self.issue(at, f"{file}: {problem}")
            return None if problems else art

        default = pick(None)
        tenants: dict[str, QuantileArtifact] = {}
        names = {t for t in scanned if t is not None} | {t for t in pins if t != "default"}
        for tenant in sorted(names):
            art = pick(tenant)
            if art is not None:
                tenants[tenant] = art
        if default is None:
            return None
        return PredictorTransforms(default=default, tenants=MappingProxyType(tenants))


def _parquet_columns(data: bytes) -> list[str] | None:
    """Column names of a Parquet file's bytes (its footer only), None if it is not one."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return list(pq.read_schema(pa.BufferReader(data)).names)
    except (pa.ArrowException, OSError):
        return None


def _section_names(block: object) -> set[str]:
    """Names defined in a section, even if their entries are broken (not-a-mapping: none)."""
    return {str(name) for name in block} if isinstance(block, dict) else set()


def _json(uri: str, data: bytes) -> Any:
    try:
        return json.loads(data)
    except json.JSONDecodeError as e:
        raise ValueError(f"{uri} is not valid JSON: {e}") from None


def _valid_name(name: str) -> bool:
    return _NAME.match(name) is not None


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that rejects duplicate keys: YAML would silently keep the last one,
    and two predictors or models with one name is a mistake, not an override."""


def _construct_mapping(
    loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False
) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
        except TypeError:  # a list or mapping used as a key
            raise yaml.constructor.ConstructorError(
                None, None, f"a key must be a plain value, got {key!r}", key_node.start_mark
            ) from None
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)
