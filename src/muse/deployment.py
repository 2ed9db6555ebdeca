"""The deployment lifecycle: load → build → check → warm → swap → retire, in one place.

Every way muse takes a config version — a server starting or reloading, the library's
:class:`~muse.service.ScoringService`, ``muse validate`` and ``muse serve`` — goes through
:class:`Deployment`, so what "valid" and "ready" mean cannot drift between them (STYLE's
"one lifecycle"; MLServer's split: the core owns the model lifecycle, adapters call it).

- **load**: :func:`~muse.config.load_config` — schema, cross-references, T^Q artifacts and
  their fingerprints, every problem at once.
- **build**: :func:`~muse.snapshot.build_snapshot` — each model loaded once through the
  shared pool, the feature store opened.
- **check**: the feature store answers, every remote model server answers ready, and, for
  a server, the config says how callers authenticate.
- **warm**: synthetic requests through the caller's own request path
  (:mod:`muse.warmup`), so no first request pays a runtime's lazy start.
- **swap**: one reference assignment; a call that started on the old snapshot finishes on
  it (ARCHITECTURE invariant 4).
- **retire**: models and store connections only the old version used are released; for a
  server, the heap that survived is frozen out of the collector's reach.

:meth:`Deployment.prepare` does the first four *beside* the live version and changes
nothing; :meth:`Deployment.activate` does the last two. The split is what a fleet needs:
every replica prepares, then all switch together.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from muse.auth import Authenticator
from muse.backends.base import REMOTE_KINDS
from muse.backends.pool import ModelPool
from muse.config import LoadedConfig, load_config
from muse.errors import (
    BackendError,
    ConfigError,
    ConfigIssue,
    MuseError,
    ReasonsUnavailableError,
)
from muse.featurestore import StorePool
from muse.snapshot import Snapshot, build_snapshot
from muse.warmup import Warmer, WarmUpReport, warm_up

__all__ = [
    "Deployment",
    "Prepared",
    "check_config",
    "check_remote",
    "check_store",
    "describe",
    "freeze_heap",
]

log = logging.getLogger("muse.deployment")


@dataclass(frozen=True, slots=True, eq=False)
class Prepared:
    """A config version built, checked and warmed beside the live one, not yet serving."""

    snapshot: Snapshot
    auth: Authenticator
    #: What warm-up scored (None: warm-up was off, ``server.warmup_events: 0``).
    warm_up: WarmUpReport | None

    @property
    def version(self) -> str:
        return self.snapshot.version


class Deployment:
    """The live version of one deployment and the lifecycle that replaces it.

    ``config`` is the ``muse.yaml`` served. ``pool`` and ``stores`` keep models and
    feature-store connections across versions (a model unchanged between two versions is
    loaded once). ``warmer`` sends warm-up requests down the caller's request path
    (default: the library's, :func:`muse.warmup.warm_up`). A server passes
    ``require_auth=True`` (a config must say how callers authenticate, and a new version
    may not drop its keys by omission) and ``freeze_heap=True`` (see :func:`freeze_heap`).

    Thread-safe: readers take :attr:`snapshot` once per call; prepare/activate/reload are
    serialised. Constructing one does no I/O; :meth:`start` loads the first version.
    """

    def __init__(
        self,
        config: str | Path,
        *,
        pool: ModelPool | None = None,
        stores: StorePool | None = None,
        warmer: Warmer | None = None,
        require_auth: bool = False,
        freeze_heap: bool = False,
    ) -> None:
        self.config_path = Path(config)
        self.pool = pool if pool is not None else ModelPool()
        self.stores = stores if stores is not None else StorePool()
        self.warmer: Warmer = warmer if warmer is not None else warm_up
        self.require_auth = require_auth
        self.freeze_heap = freeze_heap
        self._live: Prepared | None = None
        self._lock = threading.RLock()

    @classmethod
    def of_snapshot(
        cls, snapshot: Snapshot, pool: ModelPool, stores: StorePool | None = None
    ) -> Deployment:
        """A deployment whose live version is ``snapshot``, already built (by a test, a
        tool that assembled one by hand); not checked nor warmed."""
        deployment = cls(snapshot.config.path, pool=pool, stores=stores)
        deployment._live = Prepared(
            snapshot, Authenticator.from_config(snapshot.config.spec.auth), None
        )
        return deployment

    # -- the live version ----------------------------------------------------------------

    @property
    def live(self) -> Prepared:
        """The version serving now; raises before :meth:`start`."""
        live = self._live
        if live is None:
            raise MuseError(f"deployment {self.config_path} is not started")
        return live

    @property
    def started(self) -> bool:
        return self._live is not None

    @property
    def snapshot(self) -> Snapshot:
        """The snapshot new calls score on."""
        return self.live.snapshot

    @property
    def auth(self) -> Authenticator:
        """The live version's authentication rules."""
        return self.live.auth

    @property
    def version(self) -> str:
        return self.live.snapshot.version

    # -- the lifecycle -------------------------------------------------------------------

    def start(self, config: str | Path | None = None, *, label: str | None = None) -> Snapshot:
        """Prepare ``config`` (default: the configured one) and make it live (the first one).

        On failure the feature-store connections opened for it are closed and the error
        propagates: a server must not start on a version it could not prepare.
        """
        if config is not None:
            self.config_path = Path(config)
        try:
            return self.activate(self.prepare(label=label))
        except BaseException:
            if self._live is None:
                self.stores.close()
            raise

    def prepare(self, config: str | Path | None = None, *, label: str | None = None) -> Prepared:
        """Load, build, check and warm ``config`` (default: the live version's file, else
        the configured one) beside the live version. Changes nothing that serves; raises a
        :class:`~muse.errors.MuseError` naming every problem found.

        ``label`` names the version in responses and lake rows instead of the config's
        own ``version`` (a deployment store's version id; see :attr:`Snapshot.label`).
        """
        with self._lock:
            path = Path(config) if config is not None else self._current_path()
            try:
                loaded = load_config(path)
            except ConfigError:
                # Say what is really wrong: a corrupt model also shows as its maps' stale
                # fingerprints; check_config loads the models anyway to name it.
                _, issues = check_config(path, self.pool)
                self._release_unused()
                raise ConfigError(issues, source=str(path)) from None
            auth = self._auth(loaded)
            try:
                snapshot = build_snapshot(loaded, self.pool, self.stores, label=label)
                check_store(snapshot)
                check_remote(snapshot, loaded.spec.server.remote_ready_timeout_s)
                n = loaded.spec.server.warmup_events
                report = self.warmer(snapshot, n) if n > 0 else None
            except BaseException:
                self._release_unused()
                raise
            return Prepared(snapshot, auth, report)

    def activate(self, prepared: Prepared) -> Snapshot:
        """Swap ``prepared`` in (one reference assignment), then retire what only the old
        version used: its models, its feature-store connections."""
        with self._lock:
            old = self._live
            self._live = prepared
            snapshot = prepared.snapshot
            self.pool.retain(snapshot.config.model_specs.values())
            store = snapshot.config.feature_store
            self.stores.retain(None if store is None else store.source)
            if self.freeze_heap:
                freeze_heap()
            # Only a server lets callers in; the library's users are the process itself.
            if (
                self.require_auth
                and not prepared.auth.enabled
                and (old is None or old.auth.enabled)
            ):
                log.warning(
                    "AUTHENTICATION IS OFF (auth: none): anyone who can reach this service can "
                    "score events as any tenant and reload the config. Use it for local work only."
                )
            return snapshot

    def reload(self, config: str | Path | None = None) -> Snapshot:
        """Prepare ``config`` (default: the live version's file) and activate it. On any
        error the live version keeps serving and the error propagates (invariant 4)."""
        with self._lock:
            return self.activate(self.prepare(config))

    def discard(self, prepared: Prepared) -> None:
        """Give up ``prepared`` (a promotion that did not go ahead): release what only it
        loaded — its models, its feature-store connections — keeping the live version's."""
        with self._lock:
            if prepared is not self._live:
                self._release_unused()

    def swap(self, snapshot: Snapshot) -> None:
        """Make an already-built ``snapshot`` live as it is (no check, no warm-up, no
        retirement): for tests and tools that assemble snapshots by hand."""
        with self._lock:
            auth = self._live.auth if self._live is not None else Authenticator.from_config(None)
            self._live = Prepared(snapshot, auth, None)

    def close(self) -> None:
        """Close the feature-store connections; the deployment is not used after."""
        self.stores.close()

    # -- steps ---------------------------------------------------------------------------

    def _release_unused(self) -> None:
        """Drop what a version that failed to prepare loaded, if something is live (else
        :meth:`start` closes everything)."""
        live = self._live
        if live is None:
            return
        self.pool.retain(live.snapshot.config.model_specs.values())
        store = live.snapshot.config.feature_store
        self.stores.retain(None if store is None else store.source)

    def _current_path(self) -> Path:
        return self._live.snapshot.config.path if self._live is not None else self.config_path

    def _auth(self, loaded: LoadedConfig) -> Authenticator:
        auth = loaded.spec.auth
        if auth is None and self.require_auth:
            # Never serve, nor let a new version switch authentication off, by omission.
            raise ConfigError(
                "the config has no `auth` section: give tenants' API key hashes, or write "
                "`auth: none` explicitly for local use",
                source=str(loaded.path),
            )
        return Authenticator.from_config(auth)


def check_config(
    config: str | Path, pool: ModelPool | None = None
) -> tuple[LoadedConfig | None, list[ConfigIssue]]:
    """Every problem of ``config`` — the loader's, and every model that does not load —
    without serving it (``muse validate``, ``muse publish``).

    A corrupt model file also changes the model's digest, so the loader reports the maps
    fitted for the old one as mismatched; loading the models anyway adds what is really
    wrong ("models.m1: cannot be loaded: …"). Returns the loaded config when it is valid.
    """
    pool = pool if pool is not None else ModelPool()
    try:
        loaded = load_config(config)
    except ConfigError as e:
        issues = list(e.issues)
        try:
            lenient = load_config(config, require_transforms=False)
        except ConfigError:
            return None, issues  # the models themselves are not even declared right
        broken = []
        for name, spec in lenient.model_specs.items():
            if spec.kind in REMOTE_KINDS:
                continue  # a server's model is checked by prepare(), not from a file
            try:
                pool.get(spec)
            except BackendError as be:
                broken.append(ConfigIssue(f"models.{name}", f"cannot be loaded: {be}"))
        return None, broken + issues  # the cause first, then what it broke
    try:
        snapshot = build_snapshot(loaded, pool)
    except ConfigError as e:
        return None, list(e.issues)
    except BackendError as e:
        return None, [ConfigIssue("", str(e))]
    # Explaining models load on first use when serving; a version is checked for them here.
    problems = []
    for model in loaded.explain_specs:
        try:
            snapshot.explainer(model)
        except ReasonsUnavailableError as e:
            problems.append(ConfigIssue(f"models.{model}.explain", str(e)))
    return (None, problems) if problems else (loaded, [])


def check_remote(snapshot: Snapshot, timeout_s: float) -> None:
    """Wait until every remote (kserve-v2) model answers its V2 readiness endpoints.

    Raises :class:`~muse.errors.BackendError` naming the models still not ready after
    ``timeout_s``: a service (or a new version) must not turn ready with an expert that
    cannot answer. Once serving, an outage only fails the predictors that need it.
    """
    remote = [b for b in snapshot.backends.values() if b.kind in REMOTE_KINDS]
    deadline = time.monotonic() + timeout_s
    while True:
        waiting = [b for b in remote if not b.ready(min(2.0, timeout_s))]  # type: ignore[attr-defined]
        if not waiting:
            return
        if time.monotonic() >= deadline:
            names = ", ".join(b.describe() for b in waiting)  # type: ignore[attr-defined]
            raise BackendError(
                f"not ready after {timeout_s:g} s: {names}; check the model servers "
                "(GET <url>/v2/health/ready)"
            )
        time.sleep(0.2)


def check_store(snapshot: Snapshot) -> None:
    """Raise :class:`~muse.errors.FeatureStoreError` unless the snapshot's store answers.

    Readiness, not liveness: once serving, a store outage fails only the events that need
    it (fast, through its circuit breaker), so it must not take the service out of rotation.
    """
    if snapshot.store is not None:
        snapshot.store.backend.check()


def freeze_heap() -> None:
    """Collect, then move every object alive out of the garbage collector's reach
    (``gc.freeze``); called by a server once started and after each new version.

    Why: loaded models, configs and runtimes are ~125k long-lived objects, and a full
    collection walks them all — ~70 ms with the GIL held, every few seconds under load,
    which alone breaks a 5 ms p99. Frozen objects are never scanned again (reference
    counting still frees them), so later collections, the one here after a reload
    included, walk only what was created since (~0.1 ms). What a replaced snapshot left in
    reference cycles among frozen objects stays: measured, < 1 object per reload.
    """
    gc.collect()
    gc.freeze()


def describe(prepared: Prepared | Snapshot) -> dict[str, Any]:
    """What ``GET /admin/config`` shows: version, routes, predictors and their maps, the
    feature store, and what warm-up scored."""
    snapshot = prepared.snapshot if isinstance(prepared, Prepared) else prepared
    report = prepared.warm_up if isinstance(prepared, Prepared) else None
    config = snapshot.config
    return {
        "config_version": snapshot.version,
        "config_digest": config.digest,
        "routing": snapshot.router.to_config(),
        "predictors": {
            name: {
                "fingerprint": p.fingerprint,
                "experts": [
                    {"model": e.model, "beta": e.beta, "weight": e.weight} for e in p.experts
                ],
                "default_map": p.default_map.version,
                "tenant_maps": {t: m.version for t, m in p.tenant_maps.items()},
            }
            for name, p in snapshot.predictors.items()
        },
        "feature_store": None
        if snapshot.store is None
        else {
            "backend": snapshot.store.backend.description,
            "key": [k.name for k in snapshot.store.spec.keys],
            "features": {
                f.name: "required" if f.required else {"default": f.default}
                for f in snapshot.store.spec.features
            },
        },
        "warm_up": None if report is None else report.to_dict(),
    }
