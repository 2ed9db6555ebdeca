"""``muse.fitting.fit_tenant_maps``: the ``muse fit quantiles`` workflow as a function that
returns what it did — maps written where the config finds them, refusals by tenant."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from muse.config import load_config
from muse.errors import MuseError
from muse.fitting import fit_cold_start, fit_tenant_maps, required_samples
from muse.scorelog import LakeWriter
from tests.config_fixtures import Deployment as Quickstart
from tests.fleet.test_refresh_pass import lake_rows


def test_each_tenant_gets_its_next_map_or_a_refusal(tmp_path: Path) -> None:
    quickstart = Quickstart.copy_quickstart(tmp_path / "deploy")
    loaded = load_config(quickstart.config, require_transforms=False)
    lake = str(tmp_path / "lake")
    rng = np.random.default_rng(3)
    need = required_samples(0.005, 0.2)
    with LakeWriter(lake) as writer:
        big = rng.beta(2, 20, int(need / 0.8) + 500)
        writer.append(list(lake_rows(loaded, "bank1", "ensemble-v1", big, day=1)))
        writer.append(list(lake_rows(loaded, "tiny", "ensemble-v1", big[:300], day=1)))
    seen: list[tuple[str, str]] = []
    done = fit_tenant_maps(
        loaded, "ensemble-v1", lake=lake, on_tenant=lambda t, stage: seen.append((t, stage))
    )
    (written,) = done.written
    assert written.tenant == "bank1"
    assert written.path == quickstart.root / "transforms/ensemble-v1/tenants/bank1/v2.json"
    assert written.path.is_file()
    assert written.fit.n_fit >= need
    assert written.fit.artifact.window is not None
    assert written.fit.artifact.window["role"] == "any"
    (refused,) = done.refused
    assert refused.tenant == "tiny"
    assert f"Eq. 5 requires {need:,}" in refused.reason
    assert ("bank1", "done") in seen
    assert ("tiny", "fitting") in seen
    # the map written is what the config now deploys for bank1
    assert load_config(quickstart.config).transforms["ensemble-v1"].tenants["bank1"].version == 2


def test_what_cannot_be_fitted_at_all_is_named(tmp_path: Path) -> None:
    quickstart = Quickstart.copy_quickstart(tmp_path / "deploy")
    loaded = load_config(quickstart.config, require_transforms=False)
    with pytest.raises(MuseError, match="no predictor 'nope'"):
        fit_tenant_maps(loaded, "nope", lake=str(tmp_path))
    with pytest.raises(ValueError, match="role must be live, shadow or None"):
        fit_tenant_maps(loaded, "ensemble-v1", role="both")
    lake = str(tmp_path / "lake")
    with LakeWriter(lake) as writer:
        writer.append(list(lake_rows(loaded, "bank1", "single-v1", np.full(10, 0.1), day=1)))
    with pytest.raises(MuseError, match="no rows of 'ensemble-v1'"):
        fit_tenant_maps(loaded, "ensemble-v1", lake=lake)


def test_a_cold_start_writes_the_next_default_map_and_returns_its_mixture(tmp_path: Path) -> None:
    quickstart = Quickstart.copy_quickstart(tmp_path / "deploy")
    loaded = load_config(quickstart.config, require_transforms=False)
    rng = np.random.default_rng(4)
    scores = np.concatenate([rng.beta(2, 30, 19_000), rng.beta(5, 3, 1_000)])
    done = fit_cold_start(loaded, "single-v1", scores, 0.05, trials=2, seed=1, source="t.npy")
    assert done.path == quickstart.root / "transforms/single-v1/default/v1.json"
    assert done.artifact.method == "beta-mixture"
    assert done.artifact.fit is not None
    assert done.artifact.fit["training_scores"] == "t.npy"
    assert done.mixture.params.w == pytest.approx(0.05)
    assert done.mixture.jsd < 0.02
    with pytest.raises(ValueError, match="prior must be in"):
        fit_cold_start(loaded, "single-v1", scores, 1.5)
    with pytest.raises(MuseError, match="no predictor 'nope'"):
        fit_cold_start(loaded, "nope", scores, 0.05)
