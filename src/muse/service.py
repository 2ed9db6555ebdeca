"""The scoring core's library face: route → live predictor → shadows, on the live version.

No HTTP here (STYLE rule 2): the ASGI app and the CLI only parse, call and map errors.
:class:`ScoringService` scores on the live snapshot of a :class:`~muse.deployment.Deployment`
(which owns loading, checking, warming and swapping versions); a call reads the snapshot
reference once, so a call that started on a version finishes on it.

Every physical model runs once per event, whichever predictors (live or shadow) use it,
and its output feeds all of them (ARCHITECTURE invariant 5). Features a request omits are
filled from the deployment's feature store, if it has one, once per batch after routing
and before the models run (paper §2.5.1; :mod:`muse.featurestore`).

One scoring pass — the plan, the model runs, the results, the deferred shadows — lives in
:mod:`muse.scoring`, the snapshot in :mod:`muse.snapshot`; their public types are
re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from muse.backends.pool import ModelPool
from muse.deployment import Deployment
from muse.features.table import FeatureTable
from muse.featurestore import StorePool
from muse.reasons import Reasons, explain_batch
from muse.routing import Route
from muse.scoring import (
    DeferredShadows,
    LiveOutcome,
    PredictorScore,
    ScoreResult,
    score_batch,
    score_live,
)
from muse.snapshot import Snapshot, build_snapshot
from muse.types import Intent

__all__ = [
    "DeferredShadows",
    "LiveOutcome",
    "PredictorScore",
    "ScoreResult",
    "ScoringService",
    "Snapshot",
    "build_snapshot",
]

Features = FeatureTable | Mapping[str, Any] | Sequence[Mapping[str, Any]]


class ScoringService:
    """Scores events on a deployment's live version; :meth:`reload` replaces it.

    Built from a :class:`~muse.deployment.Deployment` (what a server does), or from a
    snapshot already built (``ScoringService(snapshot, pool)``: tests, tools).
    :meth:`from_config` runs the whole lifecycle — load, build, check, warm — like a
    server's start. Thread-safe: scoring reads the snapshot once per call.
    """

    def __init__(
        self,
        source: Deployment | Snapshot,
        pool: ModelPool | None = None,
        stores: StorePool | None = None,
    ) -> None:
        if isinstance(source, Deployment):
            self.deployment = source
        else:
            self.deployment = Deployment.of_snapshot(
                source, pool if pool is not None else ModelPool(), stores
            )

    @classmethod
    def from_config(
        cls, path: str | Path, *, pool: ModelPool | None = None, stores: StorePool | None = None
    ) -> ScoringService:
        """Load ``muse.yaml``, load its models once each, check and warm it, serve it."""
        deployment = Deployment(path, pool=pool, stores=stores)
        deployment.start()
        return cls(deployment)

    @property
    def snapshot(self) -> Snapshot:
        """The snapshot new calls score on."""
        return self.deployment.snapshot

    @property
    def pool(self) -> ModelPool:
        return self.deployment.pool

    @property
    def stores(self) -> StorePool:
        return self.deployment.stores

    def close(self) -> None:
        """Close the feature-store backends (connections); the service is not used after."""
        self.deployment.close()

    def swap(self, snapshot: Snapshot) -> None:
        """Make an already-built ``snapshot`` the one new calls score on, as it is."""
        self.deployment.swap(snapshot)

    def reload(self, path: str | Path | None = None) -> Snapshot:
        """Prepare ``path`` (default: the current config file) and swap it in.

        Models already loaded are reused. On any error the current snapshot keeps serving
        and the error propagates (ARCHITECTURE invariant 4).
        """
        return self.deployment.reload(path)

    # -- scoring ------------------------------------------------------------------------

    def route(self, intent: Intent) -> Route:
        """The live and shadow predictors for ``intent`` under the current snapshot."""
        return self.snapshot.router.route(intent)

    def score(
        self,
        intent: Intent,
        features: Mapping[str, Any],
        *,
        event_id: str | None = None,
        shadows: bool = True,
    ) -> ScoreResult:
        """Score one event; raises on bad input (IntentError, FeatureError, NoRouteError)."""
        return self.score_batch(
            [intent],
            FeatureTable.from_row(features),
            event_ids=None if event_id is None else [event_id],
            shadows=shadows,
        )[0]

    def score_batch(
        self,
        intents: Sequence[Intent],
        features: Features,
        *,
        event_ids: Sequence[str] | None = None,
        shadows: bool = True,
    ) -> list[ScoreResult]:
        """Score many events (any mix of tenants and routes) in one pass per model.

        ``features`` is a :class:`FeatureTable`, a mapping of feature → column, or one
        mapping per event. A bad event rejects the whole batch with an error naming its
        index, before anything is scored. Shadows are scored in the same call; a server
        uses :meth:`score_live` instead, to answer before the shadows run.
        """
        return score_batch(self.snapshot, intents, features, event_ids=event_ids, shadows=shadows)

    def explain(
        self,
        intent: Intent,
        features: Mapping[str, Any],
        *,
        event_id: str | None = None,
        top: int = 3,
    ) -> Reasons:
        """Why one event scores what it scores: its live predictor's top ``top`` features'
        contributions to the final score (see :mod:`muse.reasons`). Raises what
        :meth:`score` raises, and :class:`~muse.reasons.ReasonsUnavailableError`."""
        return explain_batch(
            self.snapshot,
            [intent],
            FeatureTable.from_row(features),
            event_ids=None if event_id is None else [event_id],
            top=top,
        )[0]

    def score_live(
        self,
        intents: Sequence[Intent],
        features: Features,
        *,
        event_ids: Sequence[str] | None = None,
    ) -> LiveOutcome:
        """Score only what the client waits for; return the shadow work for later.

        The live results carry no shadows. :attr:`LiveOutcome.deferred` (None when no
        shadow rule matched) scores the shadows when run — off the response path — reusing
        every model output the live predictors already computed (invariant 5), and never
        raises for a shadow's sake (invariant 3).
        """
        return score_live(self.snapshot, intents, features, event_ids=event_ids)
