"""Versions for fleet tests: good ones from a quickstart copy, and a broken one that got
into a store without ``muse publish``'s checks (written by another tool, or an older muse)."""

from __future__ import annotations

from pathlib import Path

from muse.config import load_config
from muse.fleet import DeploymentStore, VersionRecord, publish, version_id
from muse.fleet.store import now_iso
from tests.config_fixtures import Deployment as Quickstart


def publish_renamed(quickstart: Quickstart, store: DeploymentStore, name: str) -> str:
    """Publish the quickstart copy under config ``version: name``; its version id."""
    text = quickstart.text
    start = text.index("version: ") + len("version: ")
    end = text.index("\n", start)
    quickstart.text = text[:start] + name + text[end:]
    return publish(quickstart.config, store).version.id


def publish_broken(quickstart: Quickstart, store: DeploymentStore, tmp: Path) -> str:
    """A version of the quickstart whose ``models/m2.onnx`` does not load (not ONNX).

    Stored object by object, as a version would be, but bypassing the publish checks that
    would refuse it: what replicas must refuse when they prepare it.
    """
    good = publish(quickstart.config, store).version
    bad = tmp / "m2-corrupt.onnx"
    bad.write_bytes(b"this is not an ONNX model")
    digest, _ = store.put_file(bad)
    files = dict(good.files)
    files["models/m2.onnx"] = digest
    record = VersionRecord(
        id=version_id(files),
        config_version=good.config_version,
        files=files,
        published_at=now_iso(),
        published_by="another-tool",
    )
    store.add_version(record)
    return record.id


def publish_reweighted(quickstart: Quickstart, store: DeploymentStore) -> str:
    """A version that changes an ensemble's weights and a tenant's map: ``ensemble-v1``
    weighs ``m1`` twice (its maps re-fitted for the new fingerprint — here re-labelled,
    which is enough to serve), and bank1's ``single-v1`` map gets a new version whose
    targets are 10 % lower."""
    doc = quickstart.doc()
    doc["version"] = "quickstart-reweighted"
    doc["predictors"]["ensemble-v1"]["experts"][0]["weight"] = 2
    quickstart.write(doc)
    fingerprint = load_config(quickstart.config, require_transforms=False).fingerprints[
        "ensemble-v1"
    ]
    for path in sorted((quickstart.root / "transforms" / "ensemble-v1").rglob("*.json")):
        art = quickstart.artifact_doc(path)
        art["fingerprint"] = fingerprint
        quickstart.write_artifact_doc(path, art)
    bank1 = quickstart.artifact_doc(quickstart.artifact("single-v1", "bank1"))
    bank1["version"] = 2
    bank1["map"]["target"] = [0.9 * t for t in bank1["map"]["target"]]
    quickstart.write_artifact_doc(quickstart.artifact("single-v1", "bank1", 2), bank1)
    return publish(quickstart.config, store).version.id


def publish_routing(
    quickstart: Quickstart,
    store: DeploymentStore,
    name: str,
    *,
    bank1_live: str,
    bank1_shadow: str | None,
) -> str:
    """A version whose routing serves bank1 with ``bank1_live`` (shadowed by
    ``bank1_shadow``): the paper's Fig. 3 flow is two of them."""
    doc = quickstart.doc()
    doc["version"] = name
    routing = doc["routing"]
    routing["scoringRules"][0]["targetPredictorName"] = bank1_live
    shadows = [r for r in routing["shadowRules"] if r["condition"].get("tenants") != ["bank1"]]
    if bank1_shadow is not None:
        shadows.append(
            {
                "description": f"{bank1_shadow} in shadow for bank1",
                "condition": {"tenants": ["bank1"]},
                "targetPredictorNames": [bank1_shadow],
            }
        )
    routing["shadowRules"] = shadows
    quickstart.write(doc)
    return publish(quickstart.config, store).version.id
