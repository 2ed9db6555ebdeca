"""Chaos under load, short: each dependency broken for two seconds while four clients send
events, with the score lake on (``tests/e2e/chaos.py``; ``benchmarks/chaos.py`` runs the
same cases longer and records the figures).

What every case must show: only the events that need the broken part fail, each with a 503
and the code naming the part, fast; scoring recovers after the repair without a reload; every
acknowledged event is in the lake exactly once — when the lake itself is what broke, too,
because its writer retries a failed file for longer than the outage lasts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.chaos import BUDGET_MS, CASES, Case, ChaosReport, run_case

SECONDS = 6.0
#: The failing dependency each case's needing events must be refused for.
CODE = {
    "redis": "feature_store_unavailable",
    "triton": "model_unavailable",
    "slow-model": "model_unavailable",
}


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[Case, ChaosReport]:
    """Every case run once (about a minute in all, Triton's start-ups included)."""
    return {case: run_case(case, SECONDS, tmp_path_factory.mktemp(case)) for case in CASES}


@pytest.mark.parametrize("case", CASES)
def test_only_what_needs_the_broken_part_fails(
    reports: dict[Case, ChaosReport], case: Case
) -> None:
    report = reports[case]
    text = "\n".join(report.lines())
    assert report.sent > 1_000, text
    assert not report.failures(needs=False), text
    assert report.failed_outside_fault() == 0, text
    if case in CODE:
        failed = report.failures(needs=True)
        assert failed, f"the fault never showed:\n{text}"
        assert set(failed) == {f"503 {CODE[case]}"}, text
        elapsed = report.failed_elapsed()
        # A broken dependency costs a refusal, not a wait: the breaker answers at once.
        assert elapsed[len(elapsed) // 2] < 0.05, text
        if case == "slow-model":
            # Not one request waited for the slow answer (5x the budget): the budget cut it.
            assert elapsed[-1] < 4 * BUDGET_MS / 1e3, text
        assert report.recovery_s is not None, text
        assert report.recovery_s < 3.0, text
    else:
        assert report.failures(needs=True) == {}, text


@pytest.mark.parametrize("case", CASES)
def test_every_acknowledged_event_is_in_the_lake_exactly_once(
    reports: dict[Case, ChaosReport], case: Case
) -> None:
    report = reports[case]
    text = "\n".join(report.lines())
    assert report.written_twice == 0, text
    assert report.written_unacknowledged == 0, text
    assert report.server_dropped == 0, text
    assert report.server_written == report.lake_rows, text
    assert report.server_lost == 0, text
    assert report.written == len(report.acknowledged), text
    if case == "lake":
        assert report.write_retries, f"the read-only folder refused no write:\n{text}"
        assert report.recovery_s is not None, text
        assert report.recovery_s < 3.0, text
    else:
        assert report.write_retries == 0, text


def test_reloads_kept_coming(reports: dict[Case, ChaosReport]) -> None:
    assert reports["sighup"].reloads >= 3 * SECONDS, "\n".join(reports["sighup"].lines())


def test_unknown_case_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown chaos case 'disk'"):
        run_case("disk", SECONDS, tmp_path)  # type: ignore[arg-type]
