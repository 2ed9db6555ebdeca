"""Remote experts that cannot answer: readiness waits and then names them; a shadow on a
dead server only counts failures, live answers are untouched."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from muse.backends import ModelPool
from muse.config import load_config
from muse.deployment import check_remote
from muse.errors import BackendError
from muse.service import ScoringService, build_snapshot
from muse.testing import free_port
from tests.e2e.support import SAMPLE
from tests.modelservers.test_remote_e2e import remote_deployment


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


def test_readiness_waits_then_names_the_model_that_never_answered(tmp_path: Path) -> None:
    d = remote_deployment(tmp_path / "d", dead_url(), remote=True)
    snapshot = build_snapshot(load_config(d.config), ModelPool())
    t = time.monotonic()
    with pytest.raises(BackendError, match=r"not ready after 0.5 s: model 'm1_fp64'"):
        check_remote(snapshot, 0.5)
    assert 0.5 <= time.monotonic() - t < 5.0


def test_a_shadow_on_a_dead_server_only_records_its_failure(tmp_path: Path) -> None:
    d = remote_deployment(tmp_path / "d", dead_url(), remote=True)
    with d.editing() as doc:
        # bank2 back on single-v1 live; the remote ensemble only shadows it.
        doc["routing"]["scoringRules"].pop(0)
        doc["routing"]["shadowRules"] = [
            {"condition": {"tenants": ["bank2"]}, "targetPredictorNames": ["mixed-v1"]}
        ]
    # The server died after this version went live: built, not checked (from_config would
    # refuse to start on a model server that is not ready).
    pool = ModelPool()
    service = ScoringService(build_snapshot(load_config(d.config), pool), pool)
    reference = service.score({"tenant": "bank2"}, SAMPLE, shadows=False)
    for _ in range(5):  # connection refused, then the open breaker: all shadow failures
        result = service.score({"tenant": "bank2"}, SAMPLE)
        assert result.score == reference.score
        assert result.shadows == ()
        assert "m1_fp64" in result.shadow_errors["mixed-v1"]
    assert "circuit breaker is open" in result.shadow_errors["mixed-v1"]
    assert np.isfinite(result.score)


def test_the_library_refuses_to_start_on_a_model_server_that_is_not_ready(
    tmp_path: Path,
) -> None:
    d = remote_deployment(tmp_path / "d", dead_url(), remote=True)
    with d.editing() as doc:
        doc["server"] = {"remote_ready_timeout_s": 0.5}
    with pytest.raises(BackendError, match=r"not ready after 0.5 s: model 'm1_fp64'"):
        ScoringService.from_config(d.config)
