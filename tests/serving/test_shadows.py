"""ShadowRunner's two lanes: model work on the worker thread, transforms on the event loop.

Real deferred work from the quickstart: bank2's shadow (the ensemble) needs models its
live single-v1 did not run; a copy whose bank1 (live: the ensemble) shadows single-v1
only transforms m1's output, so that work is light.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from pathlib import Path

import pytest

from muse.service import DeferredShadows, ScoreResult, ScoringService
from muse.serving.shadows import ShadowJob, ShadowRunner

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"
SAMPLE = json.loads((QUICKSTART / "sample_event.json").read_text())


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> ScoringService:
    root = tmp_path_factory.mktemp("quickstart")
    for name in ("models", "transforms", "features"):
        shutil.copytree(QUICKSTART / name, root / name)
    text = (QUICKSTART / "muse.yaml").read_text()
    (root / "muse.yaml").write_text(
        text.replace(
            "  shadowRules:\n",
            "  shadowRules:\n"
            "    - condition: {tenants: [bank1]}\n"
            "      targetPredictorNames: [single-v1]\n",
        )
    )
    return ScoringService.from_config(root / "muse.yaml")


def work(service: ScoringService, tenant: str) -> DeferredShadows:
    deferred = service.score_live([{"tenant": tenant}], [SAMPLE]).deferred
    assert deferred is not None
    return deferred


class Recorder:
    def __init__(self, capacity: int = 8) -> None:
        self.done: list[tuple[str, list[ScoreResult], int]] = []  # (event id, results, thread)
        self.shed: list[tuple[str, int]] = []
        self.failed: list[tuple[str, int]] = []
        self.runner = ShadowRunner(
            capacity,
            on_done=lambda job, results, _s: self.done.append(
                (results[0].event_id or "", results, threading.get_ident())
            ),
            on_shed=lambda p, n: self.shed.append((p, n)),
            on_failed=lambda p, n: self.failed.append((p, n)),
        )


def test_light_work_runs_on_the_event_loop_after_callbacks_already_queued(
    service: ScoringService,
) -> None:
    light = work(service, "bank1")
    assert not light.runs_models
    rec = Recorder()
    rec.runner.start()
    order: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.call_soon(order.append, "answer")  # what a response's wake-up looks like
        assert rec.runner.submit(ShadowJob(light, 0.0), light=True)
        assert rec.done == []  # queued, not run inside submit
        loop.call_soon(lambda: order.append(f"after: {len(rec.done)} done"))
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    asyncio.run(main())
    assert order == ["answer", "after: 1 done"]
    ((_, results, thread),) = rec.done
    assert thread == threading.get_ident()  # the loop's thread, not the worker
    assert [s.predictor for s in results[0].shadows] == ["single-v1"]
    assert rec.runner.stop(2)


def test_model_work_runs_on_the_worker_thread(service: ScoringService) -> None:
    heavy = work(service, "bank2")
    assert heavy.runs_models
    rec = Recorder()
    rec.runner.start()

    async def main() -> None:
        assert rec.runner.submit(ShadowJob(heavy, 0.0), light=not heavy.runs_models)

    asyncio.run(main())
    assert rec.runner.stop(5)
    ((_, results, thread),) = rec.done
    assert thread != threading.get_ident()
    assert [s.predictor for s in results[0].shadows] == ["ensemble-v1"]


def test_a_full_light_lane_sheds_and_counts(service: ScoringService) -> None:
    rec = Recorder(capacity=2)

    async def main() -> list[bool]:
        return [
            rec.runner.submit(ShadowJob(work(service, "bank1"), 0.0), light=True) for _ in "abc"
        ]

    assert asyncio.run(main()) == [True, True, False]
    assert rec.shed == [("single-v1", 1)]
    assert len(rec.done) == 2  # the loop ran the two it kept before it closed


def test_light_work_without_a_running_loop_goes_to_the_worker(service: ScoringService) -> None:
    rec = Recorder()
    rec.runner.start()
    assert rec.runner.submit(ShadowJob(work(service, "bank1"), 0.0), light=True)
    assert rec.runner.stop(5)
    ((_, _, thread),) = rec.done
    assert thread != threading.get_ident()


def test_stop_runs_light_work_still_queued(service: ScoringService) -> None:
    rec = Recorder()
    rec.runner.start()

    async def main() -> None:
        assert rec.runner.submit(ShadowJob(work(service, "bank1"), 0.0), light=True)
        assert rec.runner.pending == 1
        assert rec.runner.stop(5)  # before the loop's turn came
        assert rec.runner.pending == 0
        assert len(rec.done) == 1

    asyncio.run(main())
    assert len(rec.done) == 1  # the already scheduled drain found nothing left to run


def test_two_threads_draining_light_work_run_each_job_once(service: ScoringService) -> None:
    rec = Recorder(capacity=200)
    jobs = [ShadowJob(work(service, "bank1"), 0.0) for _ in range(120)]

    async def main() -> None:
        for job in jobs:
            assert rec.runner.submit(job, light=True)
        other = threading.Thread(target=rec.runner.drain_light)  # as stop() from a thread
        other.start()
        rec.runner.drain_light()
        other.join(10)

    asyncio.run(main())
    assert len(rec.done) == len(jobs)
    assert rec.runner.pending == 0
