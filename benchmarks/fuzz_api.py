"""The long fuzz of the HTTP API: Schemathesis against a started ``muse serve`` with keys on.

The same run as ``tests/e2e/test_fuzz.py`` (every phase and check, positive and negative
data, the test data of ``tests/e2e/fuzzing.py``), longer: ``--examples`` per operation,
bounded by ``--max-time`` seconds. Prints the requests sent by operation and status, the
failures Schemathesis reported, and the server's resident memory before and after.
Pass = 0 failures, 0 responses with a 5xx status.

``python benchmarks/fuzz_api.py [--examples 10000] [--max-time 300] [--seed N]``
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

from tests.e2e.fuzzing import run_schemathesis, write_config  # noqa: E402
from tests.e2e.support import Deployment, MuseProcess  # noqa: E402
from tests.e2e.test_auth import ADMIN_KEY, BANK1_KEY, with_keys  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=10_000, help="per operation")
    parser.add_argument("--max-time", type=float, default=300.0, help="seconds, whole run")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(
        f"{time.strftime('%Y-%m-%d')} {platform.machine()} cores={len(os.sched_getaffinity(0))} "
        f"python {platform.python_version()}; examples {args.examples}, seed {args.seed}"
    )
    with tempfile.TemporaryDirectory(prefix="muse-fuzz-") as tmp:
        root = Path(tmp)
        d = with_keys(Deployment.copy_quickstart(root / "deploy"))
        server = MuseProcess(d.config, root / "serve.log").start()
        try:
            before = rss_mb(server.pid)
            config = write_config(
                root / "schemathesis.toml",
                tenant_key=BANK1_KEY,
                admin_key=ADMIN_KEY,
                tenants=["bank1", "bank2", "fintech3"],
                cards=[f"card-{i:05d}" for i in range(0, 5000, 50)],
            )
            (root / "report").mkdir()
            run = run_schemathesis(
                server.url,
                config,
                root / "report",
                max_examples=args.examples,
                seed=args.seed,
                timeout_s=args.max_time + 120,
                max_time_s=args.max_time,
            )
            after = rss_mb(server.pid)
            with server.client() as client:
                ready = client.get("/health/ready").status_code
            tracebacks = server.output().count("Traceback")
        finally:
            server.stop_gracefully()
    print(
        f"\n{run.requests:,} requests in {run.seconds:.0f} s ({run.requests / run.seconds:.0f}/s)"
    )
    for operation, counts in sorted(run.by_operation.items()):
        shown = ", ".join(f"{s}: {n:,}" for s, n in sorted(counts.items()))
        print(f"  {operation:<22} {sum(counts.values()):>7,}  {shown}")
    summary = [line for line in run.output.splitlines() if "generated" in line or "issues" in line]
    print("schemathesis:", " / ".join(s.strip() for s in summary))
    print(f"5xx responses: {run.server_errors}; st exit code {run.returncode}")
    print(
        f"server RSS {before:.0f} MB -> {after:.0f} MB; ready after: {ready}; tracebacks: {tracebacks}"
    )
    ok = run.returncode == 0 and run.server_errors == 0 and ready == 200 and not tracebacks
    print("PASS" if ok else "FAIL\n" + run.output[-5000:])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
