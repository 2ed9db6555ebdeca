"""The demo's ``muse.yaml`` at each step of the lifecycle, as an operator would edit it.

Every model update in muse is a config change (paper §2.5.1): add a model and a predictor,
mirror traffic to it with a shadow rule, then point the scoring rule at it. The demo writes
each version of the file in full and prints the diff, so the output shows exactly the edit
an operator makes — and nothing on the tenants' side changes.
"""

from __future__ import annotations

import difflib
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from muse.demo.experts import EXPERTS
from muse.demo.world import TENANTS
from muse.transforms import Reference

__all__ = [
    "BLOCK_RATE",
    "REFERENCE",
    "REFERENCE_NAME",
    "REVIEW_RATE",
    "Stage",
    "config_text",
    "diff",
    "thresholds",
    "write_config",
]

REFERENCE_NAME = "fraud-v1"
#: The score contract R = Beta(0.8, 9): dense near 0, a long tail to 1 (the quickstart's).
REFERENCE_A, REFERENCE_B = 0.8, 9.0
REFERENCE = Reference.beta(REFERENCE_A, REFERENCE_B)
#: Alert rates the tenants chose their thresholds for: review 5 %, block 0.5 % of traffic.
REVIEW_RATE = 0.05
BLOCK_RATE = 0.005


class Stage(Enum):
    """The deployment's versions, in the order the demo goes through them."""

    P1 = "p1"  #: p1 = {m1, m2} live for every tenant
    P2_SHADOW = "p2-shadow"  #: p2 = {m1, m2, m3} added, shadowing every tenant
    P15 = "p1.5"  #: the paper's mistake: m3 added to p1 in place, p1's maps kept
    PROMOTED = "promoted"  #: p2 live; p1 kept, unrouted, for a rollback


def thresholds() -> dict[str, float]:
    """The tenants' thresholds: R⁻¹(1 − rate), rounded as a person would type them."""
    ppf = REFERENCE.ppf(np.array([1.0 - REVIEW_RATE, 1.0 - BLOCK_RATE]))
    return {"review": round(float(ppf[0]), 4), "block": round(float(ppf[1]), 4)}


def _document(stage: Stage) -> dict[str, Any]:
    with_m3 = stage is not Stage.P1
    models = {
        name: {"backend": r.backend, "uri": f"models/{r.filename}", "undersampling": r.beta}
        for name, r in EXPERTS.items()
        if with_m3 or name != "m3"
    }
    p1_experts = ["m1", "m2", "m3"] if stage is Stage.P15 else ["m1", "m2"]
    predictors: dict[str, Any] = {
        "p1": {
            "experts": [{"model": m, "weight": 1} for m in p1_experts],
            "reference": REFERENCE_NAME,
            "transforms": "transforms/p1",
        }
    }
    if stage in (Stage.P2_SHADOW, Stage.PROMOTED):
        predictors["p2"] = {
            "experts": [{"model": m, "weight": 1} for m in ("m1", "m2", "m3")],
            "reference": REFERENCE_NAME,
            "transforms": "transforms/p2",
        }
    live = "p2" if stage is Stage.PROMOTED else "p1"
    routing: dict[str, Any] = {
        "scoringRules": [
            {
                "description": f"every tenant is served by {live}",
                "condition": {},
                "targetPredictorName": live,
            }
        ]
    }
    if stage is Stage.P2_SHADOW:
        routing["shadowRules"] = [
            {
                "description": "evaluate p2 in shadow mode for every tenant",
                "condition": {"tenants": list(TENANTS)},
                "targetPredictorNames": ["p2"],
            }
        ]
    return {
        "version": f"demo-{stage.value}",
        "auth": "none",
        "lake": {"url": "lake", "flush_interval_s": 60, "max_rows_per_file": 200_000},
        "references": {REFERENCE_NAME: {"beta": {"a": REFERENCE_A, "b": REFERENCE_B}}},
        "models": models,
        "predictors": predictors,
        "routing": routing,
        "tenants": {t: {"thresholds": thresholds()} for t in TENANTS},
        # The model-CI gate's limits (muse report compare), spelled out: these are the
        # defaults, and what "p2 may replace p1" means in this deployment.
        "model_ci": {
            "min_events": 1000,
            "max_action_changes": 0.05,
            "max_alert_rate_change": 0.25,
            "max_alignment_error": 0.25,
            "fpr": 0.01,
            "max_recall_drop": 0.02,
        },
    }


_HEADER = {
    Stage.P1: "p1 = {m1, m2} serves every tenant",
    Stage.P2_SHADOW: "p2 = p1 + m3 shadows every tenant",
    Stage.P15: "m3 added to p1 in place, p1's maps kept (refused)",
    Stage.PROMOTED: "p2 serves every tenant; no tenant changed anything",
}


def config_text(stage: Stage) -> str:
    """The full ``muse.yaml`` of ``stage``, with a comment saying what it is."""
    body = yaml.safe_dump(_document(stage), sort_keys=False, default_flow_style=None, width=100)
    return f"# muse demo, stage {stage.value}: {_HEADER[stage]}\n{body}"


def diff(old: str, new: str, old_name: str, new_name: str) -> str:
    """A unified diff of two config texts, as ``git diff`` would show the edit."""
    lines = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        f"a/{old_name}",
        f"b/{new_name}",
        n=1,
    )
    return "".join(lines)


def write_config(path: Path, stage: Stage) -> str:
    """Write ``stage``'s config to ``path``; return its text."""
    text = config_text(stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return text
