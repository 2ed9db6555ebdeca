"""A replica following a deployment store: the replica's side of a promotion.

One :class:`Follower` per serving process — every worker process of every pod is a replica
of its own, with its own id, heartbeat and answer, because each holds its own snapshot.
It polls two small objects of the store (``promotion.json`` and ``active.json``) every
``poll_s`` and acts on what changed:

- **heartbeat** (every ``heartbeat_s``): ``replicas/<id>.json`` says the replica is alive
  and which version it serves — how a promoter knows whom to wait for and what
  ``muse versions`` / the console show per replica.
- **a promotion is preparing**: the version is unpacked from the store into the local
  cache, then prepared beside the live one (:meth:`Deployment.prepare`: load, build,
  check, warm); the replica answers ``prepared`` and keeps the result, or ``refused`` with
  the error and keeps serving what it serves.
- **the active pointer names a newer promotion**: the replica swaps the version it
  prepared in at the pointer's ``activate_at`` — every replica at the same instant, so
  the mixed-version window is the spread of clocks and wake-ups, not of load times. A
  replica that did not prepare it (started mid-promotion, or was unreachable) prepares it
  now and swaps as soon as it is ready.
- **never back**: a replica follows only a pointer written by a *newer* promotion than
  the one it serves (promotion ids sort by time), so a stale read of an eventually
  consistent object store cannot switch it back. A rollback is a newer promotion.

``poll_s`` must stay below the promoter's ``switch_delay_s`` (1 s by default) so every
replica sees the pointer before the activation time.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from muse.deployment import Deployment, Prepared
from muse.errors import MuseError
from muse.fleet.promotion import answer, heartbeat, pending_promotion
from muse.fleet.store import DeploymentStore, StoreError, now_iso
from muse.snapshot import Snapshot

__all__ = ["Follower", "FollowerEvents", "Refusal", "default_replica_id"]

log = logging.getLogger("muse.fleet")

#: Default poll interval: well under the promoter's default 1 s switch delay.
POLL_S = 0.25
#: Default heartbeat interval: well under the promoter's 5 s liveness window.
HEARTBEAT_S = 1.0


def default_replica_id() -> str:
    """``<host>-<pid>``: unique per worker process (a pod's hostname is its name)."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class Refusal:
    """A version this replica could not prepare, and why."""

    version: str
    promotion: str | None
    detail: str
    at: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "promotion": self.promotion,
            "detail": self.detail,
            "at": self.at,
        }


@dataclass(slots=True)
class FollowerEvents:
    """Callbacks for what a follower does (metrics); each gets the version id."""

    switched: Callable[[str], None] = lambda version: None
    prepared: Callable[[str], None] = lambda version: None
    refused: Callable[[str], None] = lambda version: None
    store_error: Callable[[], None] = lambda: None


@dataclass(slots=True)
class _Pending:
    promotion: str
    version: str
    prepared: Prepared


class Follower:
    """Keeps ``deployment`` on the active version of ``store`` (see the module doc).

    ``cache`` is a local folder where versions are unpacked (shared safely by the worker
    processes of one machine). :meth:`start` serves the active version; :meth:`run`
    (or :meth:`start_thread`) follows it; :meth:`step` is one poll, for tests.
    """

    def __init__(
        self,
        store: DeploymentStore,
        deployment: Deployment,
        *,
        cache: Path,
        replica: str | None = None,
        poll_s: float = POLL_S,
        heartbeat_s: float = HEARTBEAT_S,
        events: FollowerEvents | None = None,
    ) -> None:
        if poll_s <= 0 or heartbeat_s <= 0:
            raise ValueError("poll_s and heartbeat_s must be > 0")
        self.store = store
        self.deployment = deployment
        self.cache = Path(cache)
        self.replica = replica or default_replica_id()
        self.poll_s = poll_s
        self.heartbeat_s = heartbeat_s
        self.events = events or FollowerEvents()
        #: The promotion whose version is live here ("" before start, or when the active
        #: pointer names none).
        self.promotion = ""
        self.refusals: list[Refusal] = []
        self._pending: _Pending | None = None
        self._answered: set[str] = set()
        self._failed_active: str | None = None
        self._last_beat = 0.0
        self._started_at = now_iso()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- serving ------------------------------------------------------------------------

    @property
    def version(self) -> str | None:
        """The version id this replica serves (None before :meth:`start`)."""
        return self.deployment.version if self.deployment.started else None

    def start(self) -> Snapshot:
        """Unpack, prepare and serve the store's active version.

        Raises :class:`~muse.fleet.store.StoreError` when the store has no active version
        (``muse publish`` then ``muse promote`` first), or the version's own error when it
        cannot be prepared: a replica must not turn ready on nothing.
        """
        active = self.store.active()
        if active is None or not active.get("version"):
            raise StoreError(
                f"{self.store.url} has no active version yet: run `muse publish CONFIG "
                f"--store {self.store.url}` then `muse promote VERSION --store {self.store.url}`"
            )
        vid = str(active["version"])
        path = self.store.materialize(vid, self.cache)
        snapshot = self.deployment.start(path, label=vid)
        self.promotion = str(active.get("promotion") or "")
        log.info("replica %s serves version %s from %s", self.replica, vid, self.store.url)
        self._beat(force=True)
        return snapshot

    def status(self) -> dict[str, Any]:
        """What ``/admin/config`` shows of the replica's place in the fleet."""
        pending = self._pending
        return {
            "replica": self.replica,
            "store": self.store.url,
            "version": self.version,
            "promotion": self.promotion or None,
            "prepared": None
            if pending is None
            else {"version": pending.version, "promotion": pending.promotion},
            "refusals": [r.to_dict() for r in self.refusals[-10:]],
        }

    # -- following ----------------------------------------------------------------------

    def step(self) -> None:
        """One poll: heartbeat, answer a pending promotion, follow the active pointer.

        Never raises: a store that cannot be read is logged and counted, and the replica
        keeps serving what it serves (the store is not on the request path).
        """
        try:
            self._beat()
            # The promotion first, then the pointer: a promoter writes the pointer before
            # marking its promotion decided, so a decided promotion is never read with a
            # pointer older than it.
            doc = pending_promotion(self.store)
            active = self.store.active()
            if doc is not None:
                self._prepare_pending(doc)
            else:
                self._drop_pending(active)
            if active is not None:
                self._follow_active(active)
        except StoreError as e:
            self.events.store_error()
            log.warning("replica %s: deployment store unreachable: %s", self.replica, e)

    def run(self) -> None:
        """Poll until :meth:`stop`; the heartbeat is withdrawn on the way out."""
        while not self._stop.wait(self.poll_s):
            self.step()
        try:
            self.store.delete("replicas", f"{self.replica}.json")
        except StoreError as e:
            log.warning("replica %s: heartbeat not withdrawn: %s", self.replica, e)

    def start_thread(self) -> None:
        """Follow the store in a daemon thread."""
        self._thread = threading.Thread(target=self.run, name="muse-follower", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop following (a preparation under way finishes first, within ``timeout``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- steps --------------------------------------------------------------------------

    def _beat(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_beat < self.heartbeat_s:
            return
        self._last_beat = now
        last = self.refusals[-1].to_dict() if self.refusals else None
        heartbeat(
            self.store,
            self.replica,
            self.version,
            promotion=self.promotion or None,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=self._started_at,
            last_refusal=last,
        )

    def _prepare_pending(self, doc: dict[str, Any]) -> None:
        pid = str(doc["id"])
        if pid in self._answered or pid <= self.promotion:
            return
        self._answered.add(pid)
        vid = str(doc["version"])
        if vid == self.version:
            answer(self.store, pid, self.replica, "prepared", "already serving it")
            return
        started = time.monotonic()
        try:
            prepared = self._prepare(vid)
        except Exception as e:  # a version may fail in any way; the live one keeps serving
            self._refuse(vid, pid, e)
            answer(
                self.store,
                pid,
                self.replica,
                "refused",
                _detail(e),
                seconds=time.monotonic() - started,
            )
            return
        seconds = time.monotonic() - started
        old = self._pending
        self._pending = _Pending(pid, vid, prepared)
        if old is not None:
            self.deployment.discard(old.prepared)
        self.events.prepared(vid)
        answer(self.store, pid, self.replica, "prepared", seconds=seconds)
        log.info(
            "replica %s prepared version %s for promotion %s in %.2f s",
            self.replica,
            vid,
            pid,
            seconds,
        )

    def _follow_active(self, active: dict[str, Any]) -> None:
        pid = str(active.get("promotion") or "")
        vid = str(active.get("version") or "")
        if not vid or pid <= self.promotion:
            return  # not newer than what serves here: never switch back
        if vid == self.version:
            self.promotion = pid
            return
        pending = self._pending
        if pending is not None and pending.version == vid:
            self._pending = None
            _sleep_until(str(active.get("activate_at") or ""), self._stop)
            self._switch(pending.prepared, pid)
            return
        # Not prepared here (started mid-promotion, or missed it): catch up now.
        if self._failed_active == pid:
            return  # refused once; wait for the next promotion rather than retry each poll
        try:
            prepared = self._prepare(vid)
        except Exception as e:
            self._failed_active = pid
            self._refuse(vid, pid, e)
            return
        self._switch(prepared, pid)

    def _prepare(self, vid: str) -> Prepared:
        path = self.store.materialize(vid, self.cache)
        return self.deployment.prepare(path, label=vid)

    def _switch(self, prepared: Prepared, pid: str) -> None:
        old = self.version
        self.deployment.activate(prepared)
        self.promotion = pid
        self.events.switched(prepared.version)
        log.info(
            "replica %s switched %s → %s (promotion %s)", self.replica, old, prepared.version, pid
        )
        self._beat(force=True)

    def _refuse(self, vid: str, pid: str | None, error: BaseException) -> None:
        detail = _detail(error)
        self.refusals.append(Refusal(vid, pid, detail, now_iso()))
        del self.refusals[:-100]
        self.events.refused(vid)
        self._beat(force=True)  # operators see it at once (muse versions --replicas)
        log.error(
            "replica %s refused version %s (promotion %s), still serving %s: %s",
            self.replica,
            vid,
            pid,
            self.version,
            detail,
        )

    def _drop_pending(self, active: dict[str, Any] | None) -> None:
        """No promotion is preparing: a prepared version the pointer does not name (the
        promotion was refused elsewhere, or timed out) is given up, its models released."""
        pending = self._pending
        if pending is None:
            return
        if active is not None and str(active.get("promotion") or "") == pending.promotion:
            return  # activated: _follow_active swaps it in
        self._pending = None
        self.deployment.discard(pending.prepared)
        log.info(
            "replica %s: promotion %s did not go ahead; version %s released",
            self.replica,
            pending.promotion,
            pending.version,
        )


def _detail(error: BaseException) -> str:
    text = str(error) if isinstance(error, MuseError) else f"{type(error).__name__}: {error}"
    return text[:8000]


def _sleep_until(at: str, stop: threading.Event) -> None:
    """Wait until wall-clock time ``at`` (ISO 8601); at once when past or unreadable."""
    try:
        target = datetime.fromisoformat(at).timestamp()
    except ValueError:
        return
    delay = target - time.time()
    if delay > 0:
        stop.wait(delay)
