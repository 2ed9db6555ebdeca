"""What the console knows, kept fresh in the background so a page view only reads memory.

The console is a read-mostly control-plane app: the deployment store says what is
published and active and what the replicas last said; the active version's config says
the routes, tenants, thresholds and maps; the score lake says what was served. Reading the
store and the lake on every page view would make each page as slow as the slowest of
them, so a :class:`ConsoleState` refreshes them every ``refresh_s`` on a thread of its own
and pages read the snapshot (:meth:`ConsoleState.snapshot`):

* the active version's config is materialised from the store once per version (cached in
  ``cache``) and loaded;
* the lake is summarised file by file (:class:`~muse.console.summary.LakeSummary`); a new
  active version whose thresholds or references differ starts a new summary;
* replicas given by URL are probed (``/health/ready``, ``/admin/config``) with the admin
  key the console was given for them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from muse.config import LoadedConfig, load_config
from muse.console import views
from muse.console.summary import Binning, LakeSummary
from muse.errors import MuseError
from muse.evaluation.compare import Comparison
from muse.evaluation.reports import arms_report, compare_report
from muse.fitting.monitor import threshold_levels
from muse.fleet.promotion import VersionState, version_states
from muse.fleet.store import DeploymentStore, StoreError
from muse.scorelog.reader import LakeReader, Window
from muse.serving_config import AuthConfig
from muse.splits import Split

__all__ = ["CandidateResult", "ConsoleState", "ReplicaProbe", "Snapshot"]

logger = logging.getLogger("muse.console")

#: Loaded configs kept (each holds every tenant map of its version).
MAX_CONFIGS = 8


@dataclass(frozen=True, slots=True)
class ReplicaProbe:
    """What a replica given by URL answered the console's last probe."""

    url: str
    ready: bool
    #: The store version it serves (following a store), else None.
    version: str | None
    #: The config's own version name (``x-muse-config-version``).
    config_version: str | None
    replica: str | None
    at: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class CandidateResult:
    """The model-CI gate for one (candidate, tenant) on the events both scored, or why not;
    for a canary split's arm (``arm``), against the control arm, each on its own events."""

    candidate: str
    live: str
    tenant: str
    comparison: Comparison | None
    error: str | None = None
    arm: bool = False


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything a page reads, as of ``at``."""

    at: str
    versions: list[VersionState]
    active: dict[str, Any] | None
    heartbeats: list[dict[str, Any]]
    probes: list[ReplicaProbe]
    loaded: LoadedConfig | None
    summary: LakeSummary | None
    errors: list[str] = field(default_factory=list)
    #: Candidate comparisons as of ``candidates_at`` (computed at most every
    #: ``candidates_every_s``: they read paired rows from the lake with DuckDB).
    candidates: list[CandidateResult] = field(default_factory=list)
    candidates_at: str | None = None
    #: The tenants table of the last ``DEFAULT_DAYS`` days, computed with the snapshot so
    #: the tenants page only renders it.
    tenants: list[views.TenantRow] | None = None
    tenants_window: views.Days | None = None
    #: The ``auth`` section of the last active config the console could load, and whether
    #: there was one: sign-in fails closed (503) until then, never open.
    auth: AuthConfig | str | None = None
    auth_known: bool = False


class ConsoleState:
    """The console's view of the store, the active config, the lake and the replicas.

    ``lake`` overrides the active config's lake URL (a replica's ``--lake``); ``labels``
    (a Parquet file, folder or glob of ``event_id, label, labelled_at``) adds the ranking
    checks to the candidates' comparisons. ``replicas`` are base URLs of replicas to probe;
    ``replica_key`` the admin key they take.
    """

    def __init__(
        self,
        store: DeploymentStore,
        cache: Path,
        *,
        lake: str | None = None,
        labels: str | None = None,
        replicas: Sequence[str] = (),
        replica_key: str | None = None,
        refresh_s: float = 5.0,
        candidates_every_s: float = 60.0,
        candidate_days: int = 7,
        max_candidate_tenants: int = 200,
        keep_days: int = 92,
    ) -> None:
        self.store = store
        self.cache = cache
        self.lake = lake
        self.labels = labels
        self.replicas = tuple(r.rstrip("/") for r in replicas)
        self.replica_key = replica_key
        self.refresh_s = refresh_s
        self.candidates_every_s = candidates_every_s
        self.candidate_days = candidate_days
        self.max_candidate_tenants = max_candidate_tenants
        self.keep_days = keep_days
        self._candidates: list[CandidateResult] = []
        self._candidates_at: str | None = None
        self._candidates_due = 0.0
        self._candidates_files = -1
        self._loaded: OrderedDict[str, LoadedConfig] = OrderedDict()
        self._auth: AuthConfig | str | None = None
        self._auth_known = False
        self._summary: LakeSummary | None = None
        self._summary_key: tuple[Any, ...] | None = None
        self._snapshot = Snapshot(now(), [], None, [], [], None, None, ["not read yet"])
        self._lock = threading.Lock()
        # One refresh at a time: the background thread and a page that just promoted may
        # both ask, and two readers of the same new lake file would count it twice.
        self._refreshing = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Read everything once (so the first page has data), then keep refreshing."""
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="muse-console-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.refresh_s):
            try:
                self.refresh()
            except Exception:  # the next round tries again; a page shows the last snapshot
                logger.exception("console refresh failed")

    def snapshot(self) -> Snapshot:
        with self._lock:
            return self._snapshot

    # -- reading ------------------------------------------------------------------------

    def refresh(self) -> Snapshot:
        """Read the store, the active config, new lake files and the replicas now."""
        with self._refreshing:
            return self._refresh()

    def _refresh(self) -> Snapshot:
        errors: list[str] = []
        versions: list[VersionState] = []
        active: dict[str, Any] | None = None
        heartbeats: list[dict[str, Any]] = []
        try:
            versions = version_states(self.store)
            active = self.store.active()
            heartbeats = self._heartbeats()
        except StoreError as e:
            errors.append(f"deployment store: {e}")
        loaded = None
        if active is not None:
            try:
                loaded = self.config(str(active["version"]))
            except Exception as e:  # shown on the page, not a crash
                errors.append(f"active version {active.get('version')}: {e}")
        if loaded is not None:
            self._auth, self._auth_known = loaded.spec.auth, True
        summary = self._lake_summary(loaded, errors)
        probes = [self._probe(url) for url in self.replicas]
        if loaded is not None and summary is not None:
            self._compare_candidates(loaded, summary, errors)
        snap = Snapshot(
            now(),
            versions,
            active,
            heartbeats,
            probes,
            loaded,
            summary,
            errors,
            list(self._candidates),
            self._candidates_at,
        )
        window = views.last_days(snap, views.DEFAULT_DAYS)
        try:
            rows: list[views.TenantRow] | None = views.tenant_rows(snap, window)
        except Exception as e:  # a page computes them again, and says what failed
            errors.append(f"tenants table: {e}")
            rows = None
        snap = replace(
            snap,
            tenants=rows,
            tenants_window=window,
            auth=self._auth,
            auth_known=self._auth_known,
        )
        with self._lock:
            self._snapshot = snap
        return snap

    def config(self, version: str) -> LoadedConfig:
        """Version ``version``'s config, materialised from the store and loaded (cached)."""
        with self._lock:
            held = self._loaded.get(version)
            if held is not None:
                self._loaded.move_to_end(version)  # least recently used goes first
        if held is None:
            self.store.version(version)  # an id the store knows, before any path is made of it
            held = load_config(self.store.materialize(version, self.cache))
            with self._lock:
                self._loaded[version] = held
                while len(self._loaded) > MAX_CONFIGS:  # the oldest loaded first
                    del self._loaded[next(iter(self._loaded))]
        return held

    def _heartbeats(self) -> list[dict[str, Any]]:
        out = []
        for name in self.store.list_json("replicas"):
            doc = self.store.read_json("replicas", f"{name}.json")
            if doc is not None:
                out.append(doc)
        return out

    def _lake_summary(self, loaded: LoadedConfig | None, errors: list[str]) -> LakeSummary | None:
        url = self.lake or (loaded.lake_url if loaded is not None else None)
        if loaded is None:
            return self._summary  # the store failed this round: keep the last one
        if url is None:
            errors.append(
                "the active version names no absolute score lake: give muse console --lake"
            )
            self._summary, self._summary_key = None, None
            return None
        binnings = {}
        for name, spec in loaded.spec.predictors.items():
            reference = loaded.references[spec.reference]
            levels: set[float] = set()
            thresholds: set[float] = set()
            for tenant in loaded.spec.tenants.values():
                thresholds.update(tenant.thresholds.values())
                levels.update(threshold_levels(tenant.thresholds, reference))
            binnings[name] = Binning(reference, tuple(sorted(levels)), tuple(sorted(thresholds)))
        # By value (a refitted R with as many knots must not reuse the old edges).
        key = (url, tuple(sorted(binnings.items(), key=lambda kv: kv[0])))
        if key != self._summary_key:
            self._summary = LakeSummary(url, binnings, keep_days=self.keep_days)
            self._summary_key = key
        assert self._summary is not None
        try:
            self._summary.refresh()
        except Exception as e:  # an unreadable lake is shown, not fatal
            errors.append(f"score lake {url}: {e}")
        errors.extend(
            f"score lake file {path} skipped: {why}"
            for path, why in list(self._summary.unreadable.items())[-3:]
        )
        return self._summary

    def _compare_candidates(
        self, loaded: LoadedConfig, summary: LakeSummary, errors: list[str]
    ) -> None:
        """The gate for every shadow predictor on every tenant it shadowed in the last
        ``candidate_days`` days, when new lake files arrived and at most every
        ``candidates_every_s``; the busiest ``max_candidate_tenants`` tenants per candidate."""
        if time.monotonic() < self._candidates_due or summary.files_read == self._candidates_files:
            return
        self._candidates_due = time.monotonic() + self.candidates_every_s
        self._candidates_files = summary.files_read
        span = summary.days()
        if span is None:
            return
        first = span[1] - timedelta(days=self.candidate_days - 1)
        window = Window(
            since=datetime.combine(first, datetime.min.time(), UTC),
            until=datetime.combine(span[1] + timedelta(days=1), datetime.min.time(), UTC),
        )
        shadowed = summary.totals(role="shadow", first=first, last=span[1])
        by_candidate: dict[str, list[tuple[int, str]]] = {}
        for (tenant, predictor), row in shadowed.items():
            by_candidate.setdefault(predictor, []).append((row["events"], tenant))
        served = summary.totals(role="live", first=first, last=span[1])
        results = []
        url = summary.url
        try:
            with LakeReader(url, labels=self.labels) as reader:
                for candidate, tenants in sorted(by_candidate.items()):
                    busiest = sorted(tenants, reverse=True)[: self.max_candidate_tenants]
                    for _, tenant in sorted(busiest, key=lambda t: t[1]):
                        results.append(
                            self._compare(loaded, reader, candidate, tenant, window, self.labels)
                        )
                # Each canary arm against its split's first arm (the control), on the
                # tenants the split routes that the arm served most.
                for split in loaded.router.splits:
                    control = split.arms[0].predictor
                    for arm in split.arms[1:]:
                        tenants = [
                            (r["events"], t)
                            for (t, p), r in served.items()
                            if p == arm.predictor and _split_of(loaded, t) == split
                        ]
                        busiest = sorted(tenants, reverse=True)[: self.max_candidate_tenants]
                        for _, tenant in sorted(busiest, key=lambda t: t[1]):
                            results.append(
                                self._compare_arm(
                                    loaded,
                                    reader,
                                    control,
                                    arm.predictor,
                                    tenant,
                                    window,
                                    self.labels,
                                )
                            )
        except Exception as e:  # shown on the page
            errors.append(f"candidate comparisons: {e}")
            return
        self._candidates = results
        self._candidates_at = now()

    @staticmethod
    def _compare(
        loaded: LoadedConfig,
        reader: LakeReader,
        candidate: str,
        tenant: str,
        window: Window,
        labels: str | None,
    ) -> CandidateResult:
        try:
            live = loaded.router.route({"tenant": tenant}).live
        except MuseError as e:
            return CandidateResult(candidate, "?", tenant, None, f"no live route: {e}")
        if live == candidate:
            return CandidateResult(candidate, live, tenant, None, "already live for this tenant")
        try:
            report = compare_report(
                loaded, reader, live, candidate, tenant, window=window, with_labels=bool(labels)
            )
        except MuseError as e:
            return CandidateResult(candidate, live, tenant, None, str(e))
        return CandidateResult(candidate, live, tenant, report.comparison)

    @staticmethod
    def _compare_arm(
        loaded: LoadedConfig,
        reader: LakeReader,
        control: str,
        arm: str,
        tenant: str,
        window: Window,
        labels: str | None,
    ) -> CandidateResult:
        try:
            report = arms_report(
                loaded, reader, control, arm, tenant, window=window, with_labels=bool(labels)
            )
        except MuseError as e:
            return CandidateResult(arm, control, tenant, None, str(e), arm=True)
        return CandidateResult(arm, control, tenant, report.comparison, arm=True)

    def _probe(self, url: str) -> ReplicaProbe:
        headers = (
            {} if self.replica_key is None else {"Authorization": f"Bearer {self.replica_key}"}
        )
        try:
            with httpx.Client(base_url=url, timeout=2.0, headers=headers) as client:
                ready = client.get("/health/ready").status_code == 200
                answer = client.get("/admin/config")
                if answer.status_code != 200:
                    error = f"/admin/config answered {answer.status_code}"
                    return ReplicaProbe(url, ready, None, None, None, now(), error)
                doc = answer.json()
                fleet = doc.get("fleet") or {}
                return ReplicaProbe(
                    url,
                    ready,
                    fleet.get("version"),
                    doc.get("config_version"),
                    doc.get("replica"),
                    now(),
                )
        except (httpx.HTTPError, ValueError) as e:
            return ReplicaProbe(url, False, None, None, None, now(), f"{type(e).__name__}: {e}")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _split_of(loaded: LoadedConfig, tenant: str) -> Split | None:
    """The split a tenant's events are routed by (None: one live predictor, or no route)."""
    try:
        return loaded.router.route({"tenant": tenant}).split
    except MuseError:
        return None
