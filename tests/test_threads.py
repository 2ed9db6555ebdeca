"""Background threads lower their own CPU priority, and only their own."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from muse.threads import yield_to_requests


def _in_thread(niceness: int) -> tuple[bool, int, int]:
    out: list[tuple[bool, int, int]] = []

    def run() -> None:
        tid = threading.get_native_id()
        before = os.getpriority(os.PRIO_PROCESS, tid)
        lowered = yield_to_requests(niceness)
        out.append((lowered, before, os.getpriority(os.PRIO_PROCESS, tid)))

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return out[0]


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice values are Linux's")
def test_the_calling_thread_gets_a_higher_nice_value_capped_at_19() -> None:
    main_before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    lowered, before, after = _in_thread(10)
    assert lowered
    assert after == min(19, before + 10)
    lowered, before, after = _in_thread(40)
    assert after == 19
    assert lowered == (before < 19)
    # The rest of the process (the event loop's thread) keeps its priority.
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == main_before


def test_no_niceness_changes_nothing() -> None:
    lowered, before, after = _in_thread(0)
    assert not lowered
    assert after == before
