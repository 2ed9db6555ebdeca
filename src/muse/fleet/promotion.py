"""Promotion and rollback: two-phase, all-or-nothing across the fleet (invariant 9).

1. **Request.** The promoter writes ``promotions/<pid>.json`` (state ``preparing``) naming the
   version and the replicas expected to answer: those whose heartbeat is fresh.
2. **Prepare.** Every replica — every worker process of every pod — that sees the promotion
   prepares the version beside its live one (load, build, check, warm) and answers
   ``promotions/<pid>/<replica>.json``: ``prepared``, or ``refused`` with why.
3. **Decide.** Once every expected replica answered (a replica whose heartbeat goes stale
   meanwhile is no longer waited for: it follows the active version when it comes back):
   any refusal, or no answer before the timeout, and the promotion ends ``refused`` /
   ``timed_out`` — the active pointer never moved, so no replica switches. Otherwise the
   promoter sets ``active.json`` to the version with an **activation time** a little
   ahead (``switch_delay_s``, longer than the replicas' poll interval), and every replica,
   already prepared, swaps at that instant: the mixed-version window is the spread of
   their clocks and wake-ups, not of their load times.

A rollback is a promotion of the version that was active before, through the same path
and checks.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from muse.fleet.store import DeploymentStore, StoreError, VersionRecord, actor, now_iso

__all__ = [
    "PromotionResult",
    "VersionState",
    "answer",
    "forget_gone_replicas",
    "heartbeat",
    "live_replicas",
    "pending_promotion",
    "promote",
    "rollback",
    "version_states",
]

#: A replica whose heartbeat is older than this is taken for gone.
LIVENESS_S = 5.0
#: The newest promotion, whatever its state (what replicas poll).
_CURRENT = "promotion.json"


@dataclass(frozen=True, slots=True)
class PromotionResult:
    """How a promotion ended: ``activated``, ``refused`` or ``timed_out``."""

    promotion: str
    version: str
    state: str
    activate_at: str | None = None
    prepared: tuple[str, ...] = ()
    refused: dict[str, str] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def activated(self) -> bool:
        return self.state == "activated"


def heartbeat(store: DeploymentStore, replica: str, version: str | None, **info: Any) -> None:
    """Say replica ``replica`` is alive and serves ``version``."""
    store.write_json(
        {"replica": replica, "version": version, "at": now_iso(), **info},
        "replicas",
        f"{replica}.json",
    )


def live_replicas(
    store: DeploymentStore, liveness_s: float = LIVENESS_S
) -> dict[str, dict[str, Any]]:
    """Replica → its last heartbeat, for the replicas heard from within ``liveness_s``."""
    now = datetime.now(UTC)
    out: dict[str, dict[str, Any]] = {}
    for name in store.list_json("replicas"):
        doc = store.read_json("replicas", f"{name}.json")
        if doc is None:
            continue
        try:
            at = datetime.fromisoformat(str(doc["at"]))
        except (KeyError, ValueError):
            continue
        if (now - at).total_seconds() <= liveness_s:
            out[name] = doc
    return out


#: A heartbeat older than this is a replica gone for good (killed, or its pod deleted):
#: each promotion deletes such files, so ``replicas/`` does not grow with every restart.
FORGET_S = 24 * 3600.0


def forget_gone_replicas(store: DeploymentStore, older_than_s: float = FORGET_S) -> list[str]:
    """Delete the heartbeats last written more than ``older_than_s`` ago; their names."""
    now = datetime.now(UTC)
    gone = []
    for name in store.list_json("replicas"):
        doc = store.read_json("replicas", f"{name}.json")
        try:
            at = datetime.fromisoformat(str((doc or {})["at"]))
        except (KeyError, ValueError):
            continue
        if (now - at).total_seconds() > older_than_s:
            store.delete("replicas", f"{name}.json")
            gone.append(name)
    return gone


def answer(
    store: DeploymentStore,
    promotion: str,
    replica: str,
    state: str,
    detail: str = "",
    *,
    seconds: float | None = None,
) -> None:
    """Replica ``replica``'s answer to ``promotion``: ``prepared`` or ``refused``, and how
    long preparing took (``seconds``: unpack, load, build, check, warm)."""
    if state not in ("prepared", "refused"):
        raise ValueError(f"a replica answers 'prepared' or 'refused', not {state!r}")
    store.write_json(
        {
            "replica": replica,
            "state": state,
            "detail": detail,
            "seconds": None if seconds is None else round(seconds, 4),
            "at": now_iso(),
        },
        "promotions",
        promotion,
        f"{replica}.json",
    )


def pending_promotion(store: DeploymentStore) -> dict[str, Any] | None:
    """The promotion replicas should be preparing now, if any.

    Read from ``promotion.json``, the newest promotion's pointer: a replica polls one small
    object, however many promotions the store has seen.
    """
    doc = store.read_json(_CURRENT)
    if doc is not None and doc.get("state") == "preparing":
        return doc
    return None


def _record(store: DeploymentStore, doc: dict[str, Any]) -> None:
    """Write a promotion's document and the newest-promotion pointer."""
    store.write_json(doc, "promotions", f"{doc['id']}.json")
    store.write_json(doc, _CURRENT)


def promote(
    store: DeploymentStore,
    version: str,
    *,
    timeout_s: float = 120.0,
    switch_delay_s: float = 1.0,
    liveness_s: float = LIVENESS_S,
    poll_s: float = 0.1,
    by: str | None = None,
    event: str = "promotion",
    on_progress: Callable[[str], None] | None = None,
) -> PromotionResult:
    """Promote ``version`` across the fleet following ``store`` (see the module doc).

    Returns how it ended; raises :class:`~muse.fleet.store.StoreError` for an unknown
    version or an unreachable store. With no live replica, the version is activated at
    once (a replica that starts later serves the active version).
    """
    record = store.version(version)  # raises for an unknown version
    who = by or actor()
    say = on_progress or (lambda _: None)
    started = time.monotonic()
    pid = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ") + "-" + secrets.token_hex(3)
    forget_gone_replicas(store)
    expected = set(live_replicas(store, liveness_s))
    doc: dict[str, Any] = {
        "id": pid,
        "version": record.id,
        "config_version": record.config_version,
        "state": "preparing",
        "kind": event,
        "requested_at": now_iso(),
        "by": who,
        "replicas": sorted(expected),
    }
    _record(store, doc)
    store.log(
        f"{event}-requested", by=who, version=record.id, promotion=pid, replicas=sorted(expected)
    )
    say(f"promotion {pid}: {len(expected)} replica(s) preparing {record.id}")

    deadline = started + timeout_s
    prepared: set[str] = set()
    refused: dict[str, str] = {}
    while True:
        answers = {
            n: store.read_json("promotions", pid, f"{n}.json")
            for n in store.list_json("promotions", pid)
        }
        for name, ans in answers.items():
            if ans is None:
                continue
            if ans.get("state") == "prepared":
                prepared.add(name)
            elif ans.get("state") == "refused":
                refused[name] = str(ans.get("detail", ""))
        alive = set(live_replicas(store, liveness_s))
        waiting = (expected & alive) - prepared - set(refused)
        if refused or not waiting or time.monotonic() >= deadline:
            break
        time.sleep(poll_s)

    seconds = time.monotonic() - started
    if refused or waiting:
        state = "refused" if refused else "timed_out"
        doc.update(state=state, refused=refused, missing=sorted(waiting), decided_at=now_iso())
        _record(store, doc)
        store.log(
            f"{event}-{state}",
            by=who,
            version=record.id,
            promotion=pid,
            refused=refused,
            missing=sorted(waiting),
        )
        return PromotionResult(
            pid,
            record.id,
            state,
            None,
            tuple(sorted(prepared)),
            refused,
            tuple(sorted(waiting)),
            seconds,
        )

    previous = store.active()
    activate_at = (datetime.now(UTC) + timedelta(seconds=switch_delay_s)).isoformat(
        timespec="microseconds"
    )
    store.set_active(
        {
            "version": record.id,
            "config_version": record.config_version,
            "promotion": pid,
            "activate_at": activate_at,
            "by": who,
            "at": now_iso(),
            "previous": None if previous is None else previous.get("version"),
        }
    )
    doc.update(
        state="activated", activate_at=activate_at, prepared=sorted(prepared), decided_at=now_iso()
    )
    _record(store, doc)
    store.log("activated", by=who, version=record.id, promotion=pid, activate_at=activate_at)
    if previous is not None and previous.get("version") != record.id:
        store.log("retired", by=who, version=previous.get("version"), promotion=pid)
    return PromotionResult(
        pid, record.id, "activated", activate_at, tuple(sorted(prepared)), {}, (), seconds
    )


def rollback(store: DeploymentStore, **options: Any) -> PromotionResult:
    """Promote the version that was active before the current one (same two phases)."""
    active = store.active()
    if active is None:
        raise StoreError(f"{store.url} has no active version to roll back from")
    previous = active.get("previous")
    if not previous:
        raise StoreError(
            f"{store.url}: version {active.get('version')} was the first one activated; "
            "there is nothing to roll back to (muse promote VERSION picks any)"
        )
    return promote(store, str(previous), event="rollback", **options)


@dataclass(frozen=True, slots=True)
class VersionState:
    """A version as ``muse versions`` shows it: state and when / by whom it got there."""

    record: VersionRecord
    state: str  # published / preparing / active / retired
    activated_at: str | None
    activated_by: str | None
    retired_at: str | None


def version_states(store: DeploymentStore) -> list[VersionState]:
    """Every version with its state, from the active pointer, promotions and the log."""
    active = store.active()
    active_id = None if active is None else active.get("version")
    pending = pending_promotion(store)
    activated: dict[str, tuple[str, str]] = {}
    retired: dict[str, str] = {}
    for event in store.history():
        v = str(event.get("version"))
        if event.get("event") == "activated":
            activated[v] = (str(event.get("at")), str(event.get("by")))
        elif event.get("event") == "retired":
            retired[v] = str(event.get("at"))
    out = []
    for record in store.versions():
        if record.id == active_id:
            state = "active"
        elif pending is not None and pending.get("version") == record.id:
            state = "preparing"
        elif record.id in activated:
            state = "retired"
        else:
            state = "published"
        at, who = activated.get(record.id, (None, None))
        out.append(
            VersionState(
                record, state, at, who, retired.get(record.id) if state == "retired" else None
            )
        )
    return out
