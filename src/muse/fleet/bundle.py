"""What a deployment version is made of: ``muse.yaml`` and every file it resolves.

The bundle holds exactly the files the loader read for this version — model files, the
T^Q artifacts it deploys (the highest or pinned version of each map, not the whole
history), reference quantiles or samples, the feature table, the auth secrets file — each
under its path relative to the config, so the bundle, unpacked anywhere, loads to the same
digest and the same scores.
"""

from __future__ import annotations

from pathlib import Path

from muse.artifacts import artifact_path
from muse.config import LoadedConfig
from muse.errors import ConfigError, ConfigIssue
from muse.serving_config import AuthConfig
from muse.transforms import QuantileMap

__all__ = ["CONFIG_NAME", "bundle_files", "served_maps"]

#: The config's name inside every bundle.
CONFIG_NAME = "muse.yaml"


def bundle_files(loaded: LoadedConfig) -> dict[str, Path]:
    """Relative path (POSIX) → file of every file ``loaded`` resolved, the config included.

    Raises :class:`~muse.errors.ConfigError` for a file outside the config's folder: a
    version must be self-contained to travel.
    """
    base = loaded.path.parent.resolve()
    spec = loaded.spec
    named: list[tuple[str, Path]] = [("", loaded.path)]
    for name, model in spec.models.items():
        if model.uri is not None:  # a remote model's uri is its local copy: it travels too
            named.append((f"models.{name}.uri", base / model.uri))
        if model.explain is not None:
            named.append((f"models.{name}.explain", base / model.explain))
    for name, ref in spec.references.items():
        for key in ("quantiles", "samples"):
            uri = getattr(ref, key)
            if uri is not None:
                named.append((f"references.{name}.{key}", base / uri))
    for name, tq in loaded.transforms.items():
        folder = base / spec.predictors[name].transforms
        where = f"predictors.{name}.transforms"
        named.append((where, artifact_path(folder, None, tq.default.version)))
        for tenant, art in tq.tenants.items():
            named.append((where, artifact_path(folder, tenant, art.version)))
    if spec.feature_store is not None and spec.feature_store.parquet is not None:
        named.append(("feature_store.parquet", base / spec.feature_store.parquet))
    if isinstance(spec.auth, AuthConfig) and spec.auth.secrets_file is not None:
        named.append(("auth.secrets_file", base / spec.auth.secrets_file))

    files: dict[str, Path] = {}
    issues: list[ConfigIssue] = []
    for where, path in named:
        resolved = path.resolve()
        if where == "":
            files[CONFIG_NAME] = resolved
            continue
        try:
            rel = resolved.relative_to(base).as_posix()
        except ValueError:
            issues.append(
                ConfigIssue(
                    where,
                    f"{path} is outside the config's folder {base}; a published version must "
                    "hold every file it names: move it under that folder",
                )
            )
            continue
        if rel == CONFIG_NAME:
            issues.append(ConfigIssue(where, f"{path} is the config file's own name"))
            continue
        files[rel] = resolved
    if issues:
        raise ConfigError(issues, source=str(loaded.path))
    return files


def served_maps(loaded: LoadedConfig) -> dict[str, QuantileMap]:
    """Relative path of each T^Q artifact ``loaded`` deploys → its map as served (thinned
    to ``server.map_tolerance``; empty when maps are served whole), for ``muse publish`` to
    store beside the artifacts (:func:`muse.artifacts.served_map_bytes`)."""
    if loaded.spec.server.map_tolerance <= 0:
        return {}
    base = loaded.path.parent.resolve()
    out: dict[str, QuantileMap] = {}
    for name, tq in loaded.transforms.items():
        folder = base / loaded.spec.predictors[name].transforms
        arts = [(None, tq.default), *tq.tenants.items()]
        for tenant, art in arts:
            path = artifact_path(folder, tenant, art.version).resolve()
            try:
                out[path.relative_to(base).as_posix()] = art.quantile_map
            except ValueError:
                continue  # outside the folder: bundle_files reports it
    return out
