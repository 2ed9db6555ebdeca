"""Dependencies broken under load, with the score lake on: what fails, how fast it recovers,
and whether every acknowledged event reaches the lake exactly once.

The cases and what each breaks are described in ``tests/e2e/chaos.py`` (``make test`` runs
each for a few seconds; this runs them longer and prints the figures recorded in
``benchmarks/RESULTS.md``): ``redis``, ``triton``, ``slow-model``, ``lake``, ``sighup``.

``python benchmarks/chaos.py [--case NAME|all] [--seconds 30]``
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.e2e.chaos import CASES, run_case  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=(*CASES, "all"), default="all")
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    print(
        f"{time.strftime('%Y-%m-%d')} {platform.machine()} cores={len(os.sched_getaffinity(0))} "
        f"python {platform.python_version()}"
    )
    for case in CASES if args.case == "all" else (args.case,):
        with tempfile.TemporaryDirectory(prefix=f"muse-chaos-{case}-") as tmp:
            report = run_case(case, args.seconds, Path(tmp))
        print()
        print("\n".join(report.lines()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
