"""``make console``: the operator console over this quickstart, in one command.

Makes what a console needs to show something — a deployment store with the quickstart
published and active, a second version to promote (the paper's Fig. 3 step: bank2 moves to
the ensemble it was shadowing, and keeps ``single-v1`` in shadow), and a score lake with a
week of generated traffic replayed through the serving path — under ``.cache/console/`` of
the checkout (once; later runs reuse them), then serves ``muse console`` on it.

``python examples/quickstart/console.py [--port 8080] [--events 60000]``
"""

from __future__ import annotations

import argparse
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from muse.datasets import generate_events, make_tenants
from muse.fleet import DeploymentStore, publish
from muse.fleet.promotion import promote
from muse.scorelog import LakeWriter
from muse.scorelog.replay import replay_frame
from muse.service import ScoringService

QUICKSTART = Path(__file__).resolve().parent
ROOT = QUICKSTART.parents[1]


def prepare(folder: Path, events: int = 60_000) -> tuple[Path, Path]:
    """The store and the lake of the console's quickstart under ``folder``, made if absent."""
    store_dir, lake = folder / "store", folder / "lake"
    store = DeploymentStore(store_dir)
    if store.active() is None:
        first = publish(QUICKSTART / "muse.yaml", store, by="make console").version.id
        promote(store, first, timeout_s=5, by="make console")
        second = folder / "bank2-on-ensemble"
        if second.exists():
            shutil.rmtree(second)
        shutil.copytree(
            QUICKSTART, second, ignore=shutil.ignore_patterns("lake", "*.py", "__pycache__")
        )
        config = second / "muse.yaml"
        doc = yaml.safe_load(config.read_text())
        doc["version"] = "quickstart-2"
        doc["routing"]["scoringRules"][0]["condition"]["tenants"] = ["bank1", "bank2"]
        doc["routing"]["scoringRules"][0]["description"] = "bank1 and bank2 on the ensemble"
        doc["routing"]["shadowRules"] = [
            {
                "description": "single-v1 in shadow for bank2 (for a rollback's comparison)",
                "condition": {"tenants": ["bank2"]},
                "targetPredictorNames": ["single-v1"],
            },
            {
                "description": "the ensemble in shadow for fintech3",
                "condition": {"tenants": ["fintech3"]},
                "targetPredictorNames": ["ensemble-v1"],
            },
        ]
        config.write_text(yaml.safe_dump(doc, sort_keys=False))
        publish(config, store, by="make console")
    if not lake.exists():
        # The week after the traffic build.py fitted the quickstart's maps on (its tenants,
        # its drift): what the live service would have seen next.
        tenants = make_tenants(3, seed=11, names=("bank1", "bank2", "fintech3"))
        start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=42)
        frame = generate_events(tenants, events, seed=3, start=start, days=7.0)
        service = ScoringService.from_config(QUICKSTART / "muse.yaml")
        with LakeWriter(str(lake), max_rows_per_file=50_000, flush_interval_s=60) as writer:
            replay_frame(service, frame, writer)
    return store_dir, lake


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--folder", type=Path, default=ROOT / ".cache" / "console")
    args = parser.parse_args()
    store, lake = prepare(args.folder, args.events)
    from muse.cli import main as muse

    sys.argv = [
        "muse",
        "console",
        "--store",
        str(store),
        "--lake",
        str(lake),
        "--port",
        str(args.port),
        "--cache",
        str(args.folder / "versions"),
    ]
    muse()
    return 0


if __name__ == "__main__":
    sys.exit(main())
