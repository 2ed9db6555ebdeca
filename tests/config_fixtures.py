"""A mutable copy of the quickstart deployment, for tests that break a config on purpose.

``Deployment`` wraps a copy of ``examples/quickstart`` (``muse.yaml``, ``models/``, ``features/``,
``transforms/``) in a temporary folder and offers the edits the config and CLI tests make:
change the YAML as data or as text, delete or rewrite files, and collect the issues of the
resulting :class:`~muse.errors.ConfigError` by YAML path.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from muse.config import LoadedConfig, load_config
from muse.errors import ConfigError

__all__ = ["QUICKSTART", "SAMPLE_EVENT", "Deployment"]

QUICKSTART = Path(__file__).resolve().parents[1] / "examples" / "quickstart"
SAMPLE_EVENT: dict[str, float] = json.loads((QUICKSTART / "sample_event.json").read_text())


class Deployment:
    """A copy of the quickstart under ``root``; every edit touches only the copy."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = root / "muse.yaml"

    @classmethod
    def copy_quickstart(cls, dest: Path) -> Deployment:
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(QUICKSTART / "muse.yaml", dest / "muse.yaml")
        shutil.copy2(QUICKSTART / "sample_event.json", dest / "sample_event.json")
        for folder in ("models", "transforms", "features"):
            shutil.copytree(QUICKSTART / folder, dest / folder)
        return cls(dest)

    # -- the YAML -----------------------------------------------------------------------

    @property
    def text(self) -> str:
        return self.config.read_text(encoding="utf-8")

    @text.setter
    def text(self, value: str) -> None:
        self.config.write_text(value, encoding="utf-8")

    def replace(self, old: str, new: str, count: int = 1) -> None:
        """Replace ``old`` (which must occur exactly ``count`` times) in the YAML text."""
        found = self.text.count(old)
        assert found == count, f"{old!r} occurs {found} times in muse.yaml, expected {count}"
        self.text = self.text.replace(old, new)

    def doc(self) -> dict[str, Any]:
        """The YAML as data, to edit and :meth:`write` back."""
        doc: dict[str, Any] = yaml.safe_load(self.text)
        return doc

    def write(self, doc: dict[str, Any]) -> None:
        self.text = yaml.safe_dump(doc, sort_keys=False)

    # -- files --------------------------------------------------------------------------

    def artifact(
        self, predictor: str, tenant: str | None = None, version: int | None = None
    ) -> Path:
        """A T^Q artifact of the copy (quickstart layout: default v0, tenants' v1)."""
        folder = self.root / "transforms" / predictor
        if tenant is None:
            return folder / "default" / f"v{0 if version is None else version}.json"
        return folder / "tenants" / tenant / f"v{1 if version is None else version}.json"

    def artifact_doc(self, path: Path) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return doc

    def write_artifact_doc(self, path: Path, doc: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")

    # -- loading ------------------------------------------------------------------------

    def load(self) -> LoadedConfig:
        return load_config(self.config)

    def error(self) -> ConfigError:
        """The ConfigError loading the copy raises (fails the test if it loads)."""
        with pytest.raises(ConfigError) as info:
            load_config(self.config)
        return info.value

    def issues(self) -> dict[str, list[str]]:
        """YAML path → the messages reported there."""
        out: dict[str, list[str]] = {}
        for issue in self.error().issues:
            out.setdefault(issue.path, []).append(issue.message)
        return out


def write_placeholder_map(config: Path, predictor: str, reference: str = "fraud-v1") -> None:
    """A default map for ``predictor`` as ``config`` now defines it (maps are bound to their
    predictor's fingerprint), fitted on raw scores spread evenly over [0, 0.6]: for tests
    that add or change a predictor and care about its experts, not its map."""
    import numpy as np

    from muse.artifacts import QuantileArtifact, reference_digest, write_artifact
    from muse.transforms import QuantileMap

    loaded = load_config(config, require_transforms=False)
    r = loaded.references[reference]
    folder = loaded.spec.predictors[predictor].transforms
    write_artifact(
        config.parent / folder,
        QuantileArtifact(
            quantile_map=QuantileMap.fit(np.linspace(0.0, 0.6, 2001), r),
            fingerprint=loaded.fingerprints[predictor],
            reference=reference,
            reference_digest=reference_digest(r),
            version=0,
            predictor=predictor,
        ),
    )
