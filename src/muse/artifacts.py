"""T^Q artifacts: a fitted quantile map with what it was fitted for, as a versioned JSON file.

Layout under a predictor's ``transforms`` folder (the config names the folder)::

    default/v0.json              cold-start map T^Q_v0, used for tenants without their own
    tenants/<tenant>/v1.json     a tenant's own maps; the highest version is deployed
    tenants/<tenant>/v2.json     unless the config pins one

Each artifact records the predictor fingerprint and the reference it targets: loading it
for a predictor with another fingerprint is a config error (ARCHITECTURE invariant 2), so a
new ensemble can never be deployed with an old ensemble's map (the paper's "p1.5").
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from msgspec import UNSET

from muse.transforms.quantile import QuantileMap
from muse.transforms.reference import Reference

__all__ = [
    "ARTIFACT_FORMAT",
    "SERVED_SUFFIX",
    "LoadedArtifact",
    "QuantileArtifact",
    "artifact_path",
    "list_tenants",
    "list_versions",
    "load_artifact",
    "next_load",
    "read_artifact",
    "reference_digest",
    "scan_versions",
    "served_map_bytes",
    "write_artifact",
]

ARTIFACT_FORMAT = "muse/tq-artifact@1"
DEFAULT_DIR = "default"
TENANTS_DIR = "tenants"
_VERSION = re.compile(r"^v(\d+)\.json$")
#: Tenant names become folder names, so they are restricted to a portable alphabet.
TENANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def reference_digest(reference: Reference) -> str:
    """Hash of a reference's parameters: a map targets these, not just the reference's name."""
    payload = json.dumps(reference.to_dict(), sort_keys=True).encode()
    return "sha256:" + hashlib.sha256(payload).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class QuantileArtifact:
    """A quantile map plus its provenance. ``tenant`` is None for a predictor's default map."""

    quantile_map: QuantileMap
    fingerprint: str
    reference: str
    reference_digest: str
    version: int
    tenant: str | None = None
    predictor: str | None = None
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    method: str = "empirical"
    window: Mapping[str, str] | None = None
    #: How the map was fitted beyond the quantiles (e.g. the Beta mixture of a cold start).
    fit: Mapping[str, Any] | None = None

    @property
    def label(self) -> str:
        """``v<N>`` for a tenant map, ``default-v<N>`` for the cold-start map (as recorded in the lake)."""
        return f"v{self.version}" if self.tenant is not None else f"default-v{self.version}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON document written to disk."""
        return {
            "format": ARTIFACT_FORMAT,
            "predictor": self.predictor,
            "tenant": self.tenant,
            "version": self.version,
            "fingerprint": self.fingerprint,
            "reference": self.reference,
            "reference_digest": self.reference_digest,
            "created_at": self.created_at,
            "method": self.method,
            "window": dict(self.window) if self.window is not None else None,
            # Only when present, so artifacts without it keep their exact bytes.
            **({"fit": dict(self.fit)} if self.fit is not None else {}),
            "map": self.quantile_map.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QuantileArtifact:
        """Parse and check a document written by :meth:`to_dict` (ValueError naming the problem)."""
        return cls._from_parts(d, None)

    @classmethod
    def _from_parts(
        cls, d: Mapping[str, Any], quantile_map: QuantileMap | None
    ) -> QuantileArtifact:
        """:meth:`from_dict`, with the map given already built (``d["map"]`` not parsed)."""
        if d.get("format") != ARTIFACT_FORMAT:
            raise ValueError(
                f"expected an artifact of format {ARTIFACT_FORMAT!r}, got {d.get('format')!r}"
            )
        missing = [
            k
            for k in ("fingerprint", "reference", "reference_digest", "version", "map")
            if k not in d
        ]
        if missing:
            raise ValueError(f"artifact is missing key(s) {missing}")
        version = d["version"]
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise ValueError(f"artifact version must be a non-negative int, got {version!r}")
        # Strings every tenant's artifact repeats are interned: thousands stay resident.
        predictor = d.get("predictor")
        return cls(
            quantile_map=quantile_map
            if quantile_map is not None
            else QuantileMap.from_dict(d["map"]),
            fingerprint=sys.intern(str(d["fingerprint"])),
            reference=sys.intern(str(d["reference"])),
            reference_digest=sys.intern(str(d["reference_digest"])),
            version=version,
            tenant=d.get("tenant"),
            predictor=sys.intern(predictor) if isinstance(predictor, str) else predictor,
            created_at=str(d.get("created_at", "")),
            method=sys.intern(str(d.get("method", "empirical"))),
            window=d.get("window"),
            fit=d.get("fit"),
        )


def artifact_path(folder: Path, tenant: str | None, version: int) -> Path:
    """Where version ``version`` of ``tenant``'s map (None: the default map) lives."""
    return _slot(folder, tenant) / f"v{version}.json"


def _slot(folder: Path, tenant: str | None) -> Path:
    if tenant is None:
        return folder / DEFAULT_DIR
    if not TENANT_NAME.match(tenant):
        raise ValueError(
            f"tenant name {tenant!r} is not usable as a folder name; use letters, digits, '_', '-', '.'"
        )
    return folder / TENANTS_DIR / tenant


def list_versions(folder: Path, tenant: str | None) -> list[int]:
    """Versions present for ``tenant`` (None: the default map), ascending."""
    slot = _slot(folder, tenant)
    if not slot.is_dir():
        return []
    versions = [int(m.group(1)) for p in slot.iterdir() if (m := _VERSION.match(p.name))]
    return sorted(versions)


def scan_versions(folder: Path) -> dict[str | None, list[int]]:
    """Every map slot under ``folder`` with its versions, ascending: ``None`` for the
    default map, then each tenant that has at least one version. One directory listing per
    slot, with plain strings: a config with 10,000 tenants is scanned at every load."""
    out: dict[str | None, list[int]] = {}
    default = _versions_in(os.path.join(folder, DEFAULT_DIR))
    if default:
        out[None] = default
    try:
        entries = list(os.scandir(os.path.join(folder, TENANTS_DIR)))
    except OSError:
        return out
    for entry in sorted(entries, key=lambda e: e.name):
        if entry.is_dir() and TENANT_NAME.match(entry.name):
            versions = _versions_in(entry.path)
            if versions:
                out[entry.name] = versions
    return out


def _versions_in(slot: str) -> list[int]:
    try:
        names = os.listdir(slot)
    except OSError:
        return []
    return sorted(int(m.group(1)) for name in names if (m := _VERSION.match(name)))


def list_tenants(folder: Path) -> list[str]:
    """Tenants that have at least one map under ``folder``."""
    root = folder / TENANTS_DIR
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and list_versions(folder, p.name))


def read_artifact(path: Path) -> QuantileArtifact:
    """Load one artifact file (ValueError naming the file on any problem)."""
    return load_artifact(path).artifact


@dataclass(frozen=True, slots=True, eq=False)
class LoadedArtifact:
    """An artifact as read from its file: the parsed artifact (its map thinned to the
    tolerance it was loaded for) and the file's SHA-256 (what a config's digest covers)."""

    artifact: QuantileArtifact
    sha256: str


#: (file identity: device, inode, size, mtime; map tolerance) → the artifact, for the
#: last two config loads.
_CACHE: dict[tuple[int, int, int, int, float], tuple[int, LoadedArtifact]] = {}
_GENERATION = [0]


def load_artifact(path: Path, tolerance: float = 0.0) -> LoadedArtifact:
    """Read one artifact file, its map thinned to ``tolerance``
    (:meth:`QuantileMap.compact`, 0: every knot), or reuse it when this very file was
    read so by one of the two last config loads (ValueError naming the file on any
    problem).

    Why a cache: every replica holds every tenant's maps, and a new version typically
    changes a few of them. Artifacts are immutable files (a new fit is a new version), and
    a deployment store's versions share unchanged files (hard links of one object), so a
    file whose identity did not change is not read, parsed, hashed and thinned again: a
    promotion that changes 1,000 of 10,000 maps parses 1,000. Only the thinned map is
    kept: the full one would double what a replica holds.
    """
    try:
        st = path.stat()
    except OSError as e:
        raise ValueError(f"cannot read T^Q artifact {path}: {e.strerror}") from None
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, tolerance)
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE[key] = (_GENERATION[0], hit[1])
        return hit[1]
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read T^Q artifact {path}: {e.strerror}") from None
    sha256 = hashlib.sha256(data).hexdigest()
    served = _read_served(path, sha256, tolerance) if tolerance > 0 else None
    try:
        if served is not None:  # the map thinned at publish: its 1,000 knots not parsed
            head = _decode_head(data)
            fields = {f: v for f in head.__struct_fields__ if (v := getattr(head, f)) is not UNSET}
            artifact = QuantileArtifact._from_parts(fields, served)
        else:
            doc = _decode(data)
            if not isinstance(doc, dict):
                raise ValueError("must hold a JSON object")
            artifact = QuantileArtifact.from_dict(doc)
    except msgspec.DecodeError as e:
        raise ValueError(f"T^Q artifact {path} is not valid JSON: {e}") from None
    except ValueError as e:
        raise ValueError(f"T^Q artifact {path}: {e}") from None
    if tolerance > 0 and served is None:
        artifact = replace(artifact, quantile_map=artifact.quantile_map.compact(tolerance))
    loaded = LoadedArtifact(artifact, sha256)
    _CACHE[key] = (_GENERATION[0], loaded)
    return loaded


def next_load() -> None:
    """A config load begins: artifacts not used by this one or the previous one are
    forgotten (a server holds the live version and the one it prepares)."""
    _GENERATION[0] += 1
    floor = _GENERATION[0] - 2
    for key in [k for k, (g, _) in _CACHE.items() if g <= floor]:
        del _CACHE[key]


_decode = msgspec.json.Decoder().decode


class _Head(msgspec.Struct):
    """An artifact's fields but its map, which is kept raw (scanned, not parsed)."""

    format: Any = UNSET
    predictor: Any = UNSET
    tenant: Any = UNSET
    version: Any = UNSET
    fingerprint: Any = UNSET
    reference: Any = UNSET
    reference_digest: Any = UNSET
    created_at: Any = UNSET
    method: Any = UNSET
    window: Any = UNSET
    fit: Any = UNSET
    map: msgspec.Raw = msgspec.Raw(b"null")


_decode_head = msgspec.json.Decoder(_Head).decode

# -- served maps: thinned once, at publish ---------------------------------------------------

#: Beside an artifact ``v<N>.json`` in a published version: its map as served.
SERVED_SUFFIX = ".served"
_SERVED_MAGIC = b"MUSE-SERVED-MAP\x01"
_SERVED_FORMAT = "muse/served-map@1"


def served_map_bytes(quantile_map: QuantileMap, *, artifact_sha256: str, tolerance: float) -> bytes:
    """The file ``muse publish`` stores beside an artifact: ``quantile_map`` (already
    thinned to ``tolerance``) as raw float64 tables, tied to the artifact's SHA-256.

    Why: thinning and parsing a 1,000-knot JSON map is most of what preparing a version
    costs a replica; done once when publishing, every replica of the fleet reads ~7 KB of
    binary per changed map instead (:func:`load_artifact` falls back to thinning when the
    file is absent or was made for another artifact or tolerance).
    """
    header = json.dumps(
        {
            "format": _SERVED_FORMAT,
            "artifact_sha256": artifact_sha256,
            "tolerance": tolerance,
            "knots": int(quantile_map.source.size),
            "n_samples": quantile_map.n_samples,
        },
        sort_keys=True,
    ).encode()
    tables = np.concatenate((quantile_map.source, quantile_map.target, quantile_map.levels))
    return (
        _SERVED_MAGIC + len(header).to_bytes(4, "little") + header + tables.astype("<f8").tobytes()
    )


def _read_served(path: Path, artifact_sha256: str, tolerance: float) -> QuantileMap | None:
    """The served map beside ``path``, if there is one made for this very artifact and
    tolerance (anything else: None, and the caller thins the artifact's map itself)."""
    try:
        data = path.with_name(path.name + SERVED_SUFFIX).read_bytes()
    except OSError:
        return None
    start = len(_SERVED_MAGIC) + 4
    if not data.startswith(_SERVED_MAGIC) or len(data) < start:
        return None
    size = int.from_bytes(data[len(_SERVED_MAGIC) : start], "little")
    try:
        header = json.loads(data[start : start + size])
        n = int(header["knots"])
        if (
            header.get("format") != _SERVED_FORMAT
            or header.get("artifact_sha256") != artifact_sha256
            or header.get("tolerance") != tolerance
            or len(data) != start + size + 24 * n
        ):
            return None
        tables = np.frombuffer(data, dtype="<f8", offset=start + size).astype(np.float64)
        return QuantileMap(
            source=tables[:n],
            target=tables[n : 2 * n],
            levels=tables[2 * n :],
            n_samples=int(header["n_samples"]),
        )
    except (ValueError, KeyError, TypeError):
        return None  # not one of ours: thin the artifact instead


def write_artifact(folder: Path, artifact: QuantileArtifact) -> Path:
    """Write ``artifact`` under ``folder`` atomically (readers never see a partial file).

    Refuses to overwrite an existing version: versions are immutable, so a deployment that
    pinned one keeps meaning the same map.
    """
    path = artifact_path(folder, artifact.tenant, artifact.version)
    if path.exists():
        raise FileExistsError(
            f"{path} exists; T^Q versions are immutable, write v{artifact.version + 1}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(artifact.to_dict(), indent=1) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.link(tmp, path)  # fails if another writer created the version meanwhile
    finally:
        os.unlink(tmp)
    return path
