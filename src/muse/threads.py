"""Background threads that give way to the request path.

The service's own background work — the score lake's writer, the shadow worker — shares
the process with the event loop that answers requests, and often a single core with it.
Run at the same priority, a lake flush (tens of milliseconds of conversion, encoding and
compression) takes half the core from the loop while it lasts, and requests queue behind
it. A higher nice value for those threads lets the kernel run the loop first whenever it
has work, and the background work in its idle time, which is what "off the request path"
should mean. Linux schedules threads individually, so this is per thread; elsewhere it is
a no-op. Threads that a lowered thread starts inherit its nice value (on Linux), e.g. a
helper thread an fsspec filesystem starts on its first use from the lake writer.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

__all__ = ["BACKGROUND_NICENESS", "yield_to_requests"]

log = logging.getLogger("muse.threads")

#: Added to the thread's nice value: a nice-5 thread gets ~1/4 of a core that a nice-0
#: thread also wants (Linux CFS weights), and all of an idle one.
BACKGROUND_NICENESS = 5


def yield_to_requests(niceness: int = BACKGROUND_NICENESS) -> bool:
    """Lower the *calling* thread's CPU priority by ``niceness``; True if this call
    lowered it (False: not Linux, nothing asked, already at the lowest, or not allowed).

    Only raises the nice value (never needs privileges), capped at 19. Call it first
    thing in a background thread's target.
    """
    if sys.platform != "linux" or niceness <= 0:
        return False
    tid = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, tid)
        target = min(19, current + niceness)
        if target <= current:
            return False
        os.setpriority(os.PRIO_PROCESS, tid, target)
    except OSError as e:  # a sandbox may forbid it: the thread just keeps its priority
        log.debug("could not lower the priority of thread %s: %s", tid, e)
        return False
    return True
