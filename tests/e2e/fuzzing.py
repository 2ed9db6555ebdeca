"""Schemathesis against a started ``muse serve``, driven by the server's own ``/openapi.json``.

Shared by the seeded run of the test suite (``tests/e2e/test_fuzz.py``) and the long run of
``benchmarks/fuzz_api.py``. The run is Schemathesis' own command line (``st run``: every
phase — examples, coverage, fuzzing — every check, positive and negative data) with a
config file written here, so a failure prints the ``curl`` that reproduces it. What the
schema cannot say is given as test data, the way Schemathesis asks for it:

- keys: a tenant key for ``/v1/score`` and an admin key for ``/admin/*`` (with one key for
  everything, half the operations would only ever see 403);
- tenants: intents name the deployment's tenants most of the time (else every positive
  event is refused for its tenant, 403, and the scoring path is never reached);
- entities: ``card_id`` is drawn from cards the feature store knows — a schema-valid id the
  store lacks is refused for the data, 422, which no schema can express.

The report (``--report ndjson``) is read back to count the requests by status.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FuzzRun", "run_schemathesis", "write_config"]


@dataclass(frozen=True)
class FuzzRun:
    """One ``st run``: its exit code and output, and every response's status, counted."""

    returncode: int
    output: str
    statuses: Counter[int]
    by_operation: dict[str, Counter[int]]
    seconds: float

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


def write_config(
    path: Path, *, tenant_key: str, admin_key: str, tenants: list[str], cards: list[str]
) -> Path:
    """A ``schemathesis.toml`` with the keys and test data above."""

    def toml_list(values: list[str]) -> str:
        return "[" + ", ".join(json.dumps(v) for v in values) + "]"

    path.write_text(
        f"""headers = {{ Authorization = "Bearer {tenant_key}" }}

[[operations]]
include-path-regex = "^/admin/"
headers = {{ Authorization = "Bearer {admin_key}" }}

[dictionaries.tenants]
values = {toml_list(tenants)}

[dictionaries.cards]
values = {toml_list(cards)}

[parameters]
"body.intent.tenant" = {{ dictionary = "tenants", probability = 0.7 }}
"body.events[*].intent.tenant" = {{ dictionary = "tenants", probability = 0.7 }}
"body.intent.card_id" = {{ dictionary = "cards" }}
"body.events[*].intent.card_id" = {{ dictionary = "cards" }}
""",
        encoding="utf-8",
    )
    return path


def run_schemathesis(
    url: str,
    config: Path,
    report_dir: Path,
    *,
    max_examples: int,
    seed: int,
    timeout_s: float,
    workers: int = 1,
    max_time_s: float | None = None,
) -> FuzzRun:
    """``st run URL/openapi.json`` with every check, positive and negative data; bounded
    by ``timeout_s`` (the run is killed past it and the test fails); ``max_time_s`` asks
    Schemathesis itself to stop generating after that long (a long run's bound)."""
    st = Path(sys.executable).parent / "st"
    command = [
        str(st) if st.is_file() else "st",
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--mode",
        "all",
        "--max-examples",
        str(max_examples),
        "--seed",
        str(seed),
        "--workers",
        str(workers),
        "--request-timeout",
        "10",
        "--max-failures",
        "20",
        "--report",
        "ndjson",
        "--report-dir",
        str(report_dir),
        *([] if max_time_s is None else ["--max-time", str(round(max_time_s))]),
    ]
    started = time.monotonic()
    proc = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        cwd=report_dir.parent,
    )
    statuses: Counter[int] = Counter()
    by_operation: dict[str, Counter[int]] = {}
    for report in sorted(report_dir.glob("*.ndjson")):
        for line in report.read_text(encoding="utf-8").splitlines():
            event = json.loads(line) if line.strip() else {}
            finished = event.get("ScenarioFinished")
            if not finished:
                continue
            recorder = finished.get("recorder", {})
            counts = by_operation.setdefault(recorder.get("label", "?"), Counter())
            for interaction in recorder.get("interactions", {}).values():
                response = interaction.get("response")
                if response is not None:
                    counts[int(response["status_code"])] += 1
                    statuses[int(response["status_code"])] += 1
    return FuzzRun(
        returncode=proc.returncode,
        output=proc.stdout + proc.stderr,
        statuses=statuses,
        by_operation=by_operation,
        seconds=time.monotonic() - started,
    )
