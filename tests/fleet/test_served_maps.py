"""Maps thinned once at publish: a version holds each artifact's served map beside it,
replicas load it instead of parsing and thinning the artifact, and a served file made for
another artifact, another tolerance, or damaged is ignored (the map is thinned again)."""

from __future__ import annotations

from pathlib import Path

import pytest

from muse.artifacts import SERVED_SUFFIX, load_artifact, next_load, served_map_bytes
from muse.config import load_config
from muse.fleet import DeploymentStore, publish
from muse.transforms import QuantileMap
from tests.config_fixtures import Deployment as Quickstart

BANK1 = "transforms/single-v1/tenants/bank1/v1.json"


def test_a_published_version_holds_every_map_as_served(
    quickstart: Quickstart, store: DeploymentStore, tmp_path: Path
) -> None:
    version = publish(quickstart.config, store).version
    artifacts = [f for f in version.files if f.startswith("transforms/") and f.endswith(".json")]
    assert len(artifacts) == 6  # a default and two tenants' maps for each predictor
    assert {f + SERVED_SUFFIX for f in artifacts} <= set(version.files)
    unpacked = store.materialize(version.id, tmp_path / "cache")
    assert (unpacked.parent / (BANK1 + SERVED_SUFFIX)).is_file()


def test_replicas_load_the_served_map_without_parsing_or_thinning_the_artifact(
    quickstart: Quickstart,
    store: DeploymentStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    version = publish(quickstart.config, store).version
    unpacked = store.materialize(version.id, tmp_path / "cache")
    expected = load_config(quickstart.config).transforms["single-v1"].tenants["bank1"]
    calls: list[str] = []
    real = QuantileMap.from_dict

    def compact(self: QuantileMap, tolerance: float) -> QuantileMap:
        calls.append("compact")
        return self

    def from_dict(cls: type[QuantileMap], d: dict[str, object]) -> QuantileMap:
        calls.append("parse")
        return real(d)

    monkeypatch.setattr(QuantileMap, "compact", compact)
    monkeypatch.setattr(QuantileMap, "from_dict", classmethod(from_dict))
    loaded = load_config(unpacked)
    assert calls == []  # every map came from its served file
    served = loaded.transforms["single-v1"].tenants["bank1"]
    assert served.quantile_map == expected.quantile_map
    assert (served.fingerprint, served.version, served.tenant) == (
        expected.fingerprint,
        expected.version,
        expected.tenant,
    )
    assert loaded.digest == load_config(quickstart.config).digest


@pytest.mark.parametrize("damage", ["other artifact", "other tolerance", "truncated", "garbage"])
def test_a_served_file_that_does_not_belong_is_ignored(
    quickstart: Quickstart, tmp_path: Path, damage: str
) -> None:
    artifact = quickstart.artifact("single-v1", "bank1")
    whole = load_artifact(artifact).artifact.quantile_map
    thinned = whole.compact(0.002)
    good = served_map_bytes(thinned, artifact_sha256="0" * 64, tolerance=0.002)
    data = {
        "other artifact": good,
        "other tolerance": served_map_bytes(
            whole.compact(0.01), artifact_sha256=load_artifact(artifact).sha256, tolerance=0.01
        ),
        "truncated": served_map_bytes(
            thinned, artifact_sha256=load_artifact(artifact).sha256, tolerance=0.002
        )[:-8],
        "garbage": b"not a served map at all",
    }[damage]
    artifact.with_name(artifact.name + SERVED_SUFFIX).write_bytes(data)
    next_load()
    next_load()  # forget what was cached: read the file again
    got = load_artifact(artifact, 0.002).artifact.quantile_map
    assert got == thinned  # thinned from the artifact itself


def test_a_served_file_for_this_artifact_is_used(quickstart: Quickstart) -> None:
    artifact = quickstart.artifact("single-v1", "bank1")
    sha = load_artifact(artifact).sha256
    whole = load_artifact(artifact).artifact.quantile_map
    # A served map different from what thinning gives, to see which one is loaded.
    marker = whole.compact(0.05)
    artifact.with_name(artifact.name + SERVED_SUFFIX).write_bytes(
        served_map_bytes(marker, artifact_sha256=sha, tolerance=0.002)
    )
    next_load()
    next_load()
    assert load_artifact(artifact, 0.002).artifact.quantile_map == marker
