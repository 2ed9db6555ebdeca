"""``muse publish``: validate a config as a server would, then store it as a version.

Validation is the deployment's own check (:func:`muse.deployment.check_config`: schema,
references, maps and fingerprints, every model really loading), so a version that is in
the store could be prepared by a replica with the same files. Only files the store lacks
travel; publishing an unchanged bundle again returns the existing version. Beside each
T^Q artifact the version holds its map as served (``<artifact>.served``: thinned once
here, so no replica parses and thins it again).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from muse.artifacts import SERVED_SUFFIX, served_map_bytes
from muse.deployment import check_config
from muse.errors import ConfigError
from muse.fleet.bundle import bundle_files, served_maps
from muse.fleet.store import DeploymentStore, VersionRecord, actor, now_iso, version_id

__all__ = ["Published", "publish"]


@dataclass(frozen=True, slots=True)
class Published:
    """What a publish did: the version, whether it is new, what it uploaded."""

    version: VersionRecord
    new: bool
    uploaded_files: int
    uploaded_bytes: int


def publish(config: str | Path, store: DeploymentStore, *, by: str | None = None) -> Published:
    """Validate ``config`` and store it as a version of ``store``.

    Raises :class:`~muse.errors.ConfigError` listing every problem (nothing is stored
    then), or :class:`~muse.fleet.store.StoreError` when the store cannot be written.
    """
    path = Path(config)
    loaded, issues = check_config(path)
    if loaded is None:
        raise ConfigError(issues, source=str(path))
    files = bundle_files(loaded)
    digests: dict[str, str] = {}
    uploaded = 0
    size = 0
    for rel, file in sorted(files.items()):
        digest, new = store.put_file(file)
        digests[rel] = digest
        if new:
            uploaded += 1
            size += file.stat().st_size
    # Each map as replicas serve it, thinned here once (see muse.artifacts.served_map_bytes).
    tolerance = loaded.spec.server.map_tolerance
    for rel, served in sorted(served_maps(loaded).items()):
        data = served_map_bytes(served, artifact_sha256=digests[rel], tolerance=tolerance)
        digest, new = store.put_bytes(data)
        digests[rel + SERVED_SUFFIX] = digest
        if new:
            uploaded += 1
            size += len(data)
    who = by or actor()
    record = VersionRecord(
        id=version_id(digests),
        config_version=loaded.version,
        files=digests,
        published_at=now_iso(),
        published_by=who,
    )
    new_version = store.add_version(record)
    if new_version:
        store.log("published", by=who, version=record.id, config_version=loaded.version)
    else:
        record = store.version(record.id)
    return Published(record, new_version, uploaded, size)
