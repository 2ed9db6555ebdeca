"""The model-CI gate: a candidate predictor against the live one, on the same events.

"Quantify what good looks like" (the model-CI talk): before a candidate replaces live
for a tenant, compare both on the events the candidate shadowed — the same events, so
traffic drift cancels and what remains is the change itself. A tenant experiences a model
update through its thresholds only, so the checks are about what happens *there*:

* **action changes** — the share of events whose action (the highest threshold reached)
  would differ; the talk's headline number;
* **alert rate at each threshold** — the tenant's alert budget, which the score contract
  promises to keep;
* **alignment** to the reference R per bin (paper Fig. 4/6) — a stale or missing tenant
  map shows here first, even at thresholds the tenant has not declared;
* **ranking** — recall at a fixed false-positive rate and PR-AUC, when labels exist: the
  reason to ship a new model at all. T^Q cannot change them (it is monotone).

Noise: a check fails only when the data *prove* the limit is exceeded (the Wilson interval
at z = 3 lies beyond it), so a small but honest sample does not block a good candidate — and the
``min_events`` check keeps samples from being too small to prove anything.

The arms of a canary split are compared by :func:`compare_arms` instead: each arm scored
its *own* events (an entity sees one arm), so there are no pairs and no action changes to
count; what the tenant feels is still its alert rates (each arm's, with both arms' noise)
and each arm's alignment to R (both map onto the same R: that is what makes a split safe
for thresholds), and with labels the ranking of each arm on its own events.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from muse.evaluation.alignment import BinAlignment, relative_error_by_bin
from muse.evaluation.metrics import pr_auc, recall_at_fpr, wilson_interval
from muse.schema import ModelCIConfig
from muse.transforms import Reference
from muse.types import ScoreArray

__all__ = [
    "ALLOW",
    "GATE_LEVELS",
    "GATE_Z",
    "Check",
    "Comparison",
    "assign_actions",
    "compare_arms",
    "compare_predictors",
    "proven_error",
]

#: The action of an event below every threshold.
ALLOW = "allow"
#: Confidence of the gate's intervals. z = 3 rather than 1.96: the gate tests ~20 bins and
#: thresholds at once, and a 1-in-20 false alarm per test would block good candidates.
GATE_Z = 3.0
#: Paired bootstrap rounds of the ranking checks (recall at FPR, PR-AUC).
BOOTSTRAP_ROUNDS = 200
#: Largest resample of one bootstrap round (see :func:`_proven_drop`).
BOOTSTRAP_SAMPLE = 100_000
#: Probability levels of the gate's alignment bins: deciles, then the alert-rate tail.
GATE_LEVELS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.995, 0.999, 1.0)

Status = Literal["pass", "fail", "info"]


@dataclass(frozen=True, slots=True)
class Check:
    """One row of the gate's table: a metric for live and candidate, its limit and status."""

    metric: str
    live: str
    candidate: str
    limit: str
    status: Status
    note: str = ""


@dataclass(frozen=True, slots=True)
class Comparison:
    """Everything the gate measured; ``passed`` is what CI acts on."""

    tenant: str
    live: str
    candidate: str
    n: int
    checks: tuple[Check, ...]
    transitions: Mapping[tuple[str, str], int]
    shift_quantiles: Mapping[float, float]
    live_alignment: BinAlignment
    candidate_alignment: BinAlignment
    thresholds: Mapping[str, float] = field(default_factory=dict)
    #: False for a comparison of a split's arms: ``n`` is the candidate arm's events and
    #: ``live_n`` the control arm's (for paired events both are ``n``).
    paired: bool = True
    live_n: int | None = None

    @property
    def passed(self) -> bool:
        """No check failed (``info`` rows never fail)."""
        return all(c.status != "fail" for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]


def assign_actions(scores: npt.ArrayLike, thresholds: Mapping[str, float]) -> npt.NDArray[np.str_]:
    """The action of each score: the highest threshold it reaches (``>=``), else ``allow``."""
    x = np.asarray(scores, dtype=np.float64)
    ordered = sorted(thresholds.items(), key=lambda kv: kv[1])
    names = np.array([ALLOW, *(name for name, _ in ordered)])
    cuts = np.array([t for _, t in ordered], dtype=np.float64)
    return names[np.searchsorted(cuts, x, side="right")]


def proven_error(alignment: BinAlignment) -> float:
    """The largest per-bin |relative error| the data prove: 0 for a bin whose interval
    spans the expected share, else the interval's bound nearest to zero error."""
    worst = 0.0
    for b in alignment.bins:
        if b.error_low > 0.0:
            worst = max(worst, b.error_low)
        elif b.error_high < 0.0:
            worst = max(worst, -b.error_high)
    return worst


def compare_predictors(
    live_scores: npt.ArrayLike,
    candidate_scores: npt.ArrayLike,
    *,
    reference: Reference,
    thresholds: Mapping[str, float],
    limits: ModelCIConfig | None = None,
    labels: npt.ArrayLike | None = None,
    tenant: str = "",
    live: str = "live",
    candidate: str = "candidate",
) -> Comparison:
    """Run every check of the gate on paired final scores (element ``i`` of both arrays is
    the same event). ``labels`` (0/1 per event) enables the ranking checks."""
    limits = limits or ModelCIConfig()
    a = np.asarray(live_scores, dtype=np.float64).ravel()
    b = np.asarray(candidate_scores, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(
            f"live_scores and candidate_scores must pair up event by event, got {a.size} and {b.size}"
        )
    if a.size == 0:
        raise ValueError(
            "no paired events to compare: the candidate shadowed none of live's events"
        )
    n = int(a.size)
    checks: list[Check] = []
    checks.append(
        Check(
            "paired events",
            f"{n:,}",
            f"{n:,}",
            f">= {limits.min_events:,}",
            "pass" if n >= limits.min_events else "fail",
            "" if n >= limits.min_events else "too few events to prove anything; collect more",
        )
    )

    live_actions = assign_actions(a, thresholds)
    cand_actions = assign_actions(b, thresholds)
    changed = live_actions != cand_actions
    k = int(changed.sum())
    transitions: dict[tuple[str, str], int] = {}
    if k:
        pairs, counts = np.unique(
            np.stack([live_actions[changed], cand_actions[changed]]), axis=1, return_counts=True
        )
        transitions = {(str(x), str(y)): int(c) for (x, y), c in zip(pairs.T, counts, strict=True)}
    if thresholds:
        low, _ = wilson_interval(k, n, GATE_Z)
        checks.append(
            Check(
                "action changes",
                "-",
                f"{k / n:.2%}",
                f"<= {limits.max_action_changes:.2%}",
                "fail" if low > limits.max_action_changes else "pass",
                ", ".join(f"{x}→{y}: {c}" for (x, y), c in sorted(transitions.items())),
            )
        )
        for action, t in sorted(thresholds.items(), key=lambda kv: kv[1]):
            checks.append(_alert_rate_check(action, t, a, b, reference, limits))
    else:
        checks.append(
            Check(
                "action changes",
                "-",
                "-",
                "-",
                "info",
                "the tenant declares no thresholds (config: tenants.<name>.thresholds)",
            )
        )

    diff = b - a
    probs = (0.5, 0.9, 0.99)
    shift = {p: float(np.quantile(np.abs(diff), p)) for p in probs}
    checks.append(
        Check(
            "score shift |Δ| p50 / p99",
            "-",
            f"{shift[0.5]:.4f} / {shift[0.99]:.4f}",
            "-",
            "info",
            f"mean Δ {float(diff.mean()):+.4f}",
        )
    )

    live_al, cand_al, check = _alignment_check(a, b, reference, limits)
    checks.append(check)

    if labels is not None:
        y = np.asarray(labels).ravel()
        if y.shape != a.shape:
            raise ValueError(f"labels must have one value per paired event ({n}), got {y.size}")
        positives = int(np.count_nonzero(y))
        if positives == 0 or positives == n:
            checks.append(
                Check(
                    "ranking", "-", "-", "-", "info", "labels hold a single class: not comparable"
                )
            )
        else:
            checks.extend(
                _ranking_checks(
                    limits,
                    lambda fn: (fn(a, y), fn(b, y), *_proven_drop(fn, a, b, y)),
                    f"{positives:,}",
                )
            )

    return Comparison(
        tenant=tenant,
        live=live,
        candidate=candidate,
        n=n,
        checks=tuple(checks),
        transitions=transitions,
        shift_quantiles=shift,
        live_alignment=live_al,
        candidate_alignment=cand_al,
        thresholds=dict(thresholds),
    )


def compare_arms(
    control_scores: npt.ArrayLike,
    candidate_scores: npt.ArrayLike,
    *,
    reference: Reference,
    thresholds: Mapping[str, float],
    limits: ModelCIConfig | None = None,
    control_labels: npt.ArrayLike | None = None,
    candidate_labels: npt.ArrayLike | None = None,
    tenant: str = "",
    control: str = "control",
    candidate: str = "candidate",
) -> Comparison:
    """The gate for a canary split: the candidate arm's final scores on its own events
    against the control arm's on theirs (no event in both). Labels (0/1 per event of each
    arm, both or neither) enable the ranking checks; a check fails only on a proven
    difference, counting the noise of both samples."""
    limits = limits or ModelCIConfig()
    a = np.asarray(control_scores, dtype=np.float64).ravel()
    b = np.asarray(candidate_scores, dtype=np.float64).ravel()
    if a.size == 0 or b.size == 0:
        empty = control if a.size == 0 else candidate
        raise ValueError(f"no events in arm {empty!r}: nothing to compare")
    if (control_labels is None) != (candidate_labels is None):
        raise ValueError("give labels for both arms or for neither")
    n_a, n_b = int(a.size), int(b.size)
    low_n = min(n_a, n_b)
    checks = [
        Check(
            "events per arm",
            f"{n_a:,}",
            f"{n_b:,}",
            f">= {limits.min_events:,}",
            "pass" if low_n >= limits.min_events else "fail",
            "" if low_n >= limits.min_events else "too few events to prove anything; collect more",
        ),
        Check(
            "action changes",
            "-",
            "-",
            "-",
            "info",
            "arms score different events (sticky by entity): compare alert rates instead",
        ),
    ]
    for action, t in sorted(thresholds.items(), key=lambda kv: kv[1]):
        checks.append(_arm_alert_rate_check(action, t, a, b, reference, limits))
    if not thresholds:
        checks.append(
            Check(
                "alert rates",
                "-",
                "-",
                "-",
                "info",
                "the tenant declares no thresholds (config: tenants.<name>.thresholds)",
            )
        )
    probs = (0.5, 0.9, 0.99)
    qa, qb = np.quantile(a, probs), np.quantile(b, probs)
    shift = {p: float(y - x) for p, x, y in zip(probs, qa, qb, strict=True)}
    checks.append(
        Check(
            "score quantiles p50 / p99",
            f"{qa[0]:.4f} / {qa[2]:.4f}",
            f"{qb[0]:.4f} / {qb[2]:.4f}",
            "-",
            "info",
            "each arm on its own events",
        )
    )
    live_al, cand_al, check = _alignment_check(a, b, reference, limits)
    checks.append(check)
    if control_labels is not None and candidate_labels is not None:
        ya = np.asarray(control_labels).ravel()
        yb = np.asarray(candidate_labels).ravel()
        if ya.shape != a.shape or yb.shape != b.shape:
            raise ValueError(
                f"labels must have one value per event of each arm ({n_a} and {n_b}), got "
                f"{ya.size} and {yb.size}"
            )
        if not (0 < np.count_nonzero(ya) < n_a and 0 < np.count_nonzero(yb) < n_b):
            checks.append(
                Check("ranking", "-", "-", "-", "info", "an arm's labels hold a single class")
            )
        else:
            checks.extend(
                _ranking_checks(
                    limits,
                    lambda fn: (fn(a, ya), fn(b, yb), *_proven_drop_unpaired(fn, a, ya, b, yb)),
                    f"{int(np.count_nonzero(ya)):,} / {int(np.count_nonzero(yb)):,}",
                )
            )
    return Comparison(
        tenant=tenant,
        live=control,
        candidate=candidate,
        n=n_b,
        checks=tuple(checks),
        transitions={},
        shift_quantiles=shift,
        live_alignment=live_al,
        candidate_alignment=cand_al,
        thresholds=dict(thresholds),
        paired=False,
        live_n=n_a,
    )


Metric = Callable[[ScoreArray, npt.NDArray[Any]], float]


def _alignment_check(
    a: ScoreArray, b: ScoreArray, reference: Reference, limits: ModelCIConfig
) -> tuple[BinAlignment, BinAlignment, Check]:
    """Each side's alignment to R on the gate's bins, and the check on the candidate's."""
    edges = reference.ppf(np.asarray(GATE_LEVELS))
    edges[0], edges[-1] = 0.0, 1.0
    edges = np.unique(edges)
    live_al = relative_error_by_bin(a, reference, edges, z=GATE_Z)
    cand_al = relative_error_by_bin(b, reference, edges, z=GATE_Z)
    live_err, cand_err = proven_error(live_al), proven_error(cand_al)
    check = Check(
        "alignment to R: proven max |rel. error|",
        f"{live_err:.1%}",
        f"{cand_err:.1%}",
        f"<= {limits.max_alignment_error:.0%}",
        "fail" if cand_err > limits.max_alignment_error else "pass",
        f"{len(live_al.bins)} bins, deciles + tail; raw max {live_al.max_abs_error:.0%} / "
        f"{cand_al.max_abs_error:.0%}",
    )
    return live_al, cand_al, check


def _ranking_checks(
    limits: ModelCIConfig,
    measure: Callable[[Metric], tuple[float, float, float, float]],
    positives: str,
) -> list[Check]:
    """Recall at the FPR and PR-AUC: ``measure(metric)`` gives live's and the candidate's
    value, the drop and its proven lower bound."""
    checks = []
    for metric, fn, limit in (
        (
            f"recall at {limits.fpr:.1%} FPR",
            lambda s, t: recall_at_fpr(s, t, limits.fpr),
            limits.max_recall_drop,
        ),
        ("PR-AUC", pr_auc, limits.max_pr_auc_drop),
    ):
        m_live, m_cand, drop, lower = measure(fn)
        checks.append(
            Check(
                metric,
                f"{m_live:.4f}",
                f"{m_cand:.4f}",
                f"drop <= {limit:.2f}",
                "fail" if lower > limit else "pass",
                f"{positives} positives; drop {drop:+.4f}, proven {max(lower, 0.0):.4f}",
            )
        )
    return checks


def _proven_drop_unpaired(
    fn: Callable[[ScoreArray, npt.NDArray[Any]], float],
    a: ScoreArray,
    ya: npt.NDArray[Any],
    b: ScoreArray,
    yb: npt.NDArray[Any],
) -> tuple[float, float]:
    """As :func:`_proven_drop` for two independent samples: each arm is resampled on its
    own, so the spread holds both arms' noise (nothing cancels: the events differ)."""
    drop = fn(a, ya) - fn(b, yb)
    rng = np.random.default_rng(0)
    ma, mb = min(a.size, BOOTSTRAP_SAMPLE), min(b.size, BOOTSTRAP_SAMPLE)
    da, db = [], []
    for _ in range(BOOTSTRAP_ROUNDS):
        ia, ib = rng.integers(0, a.size, size=ma), rng.integers(0, b.size, size=mb)
        if 0 < int(np.count_nonzero(ya[ia])) < ma and 0 < int(np.count_nonzero(yb[ib])) < mb:
            da.append(fn(a[ia], ya[ia]))
            db.append(fn(b[ib], yb[ib]))
    if len(da) < 2:
        return drop, drop
    sd_a = float(np.std(da, ddof=1)) * float(np.sqrt(ma / a.size))
    sd_b = float(np.std(db, ddof=1)) * float(np.sqrt(mb / b.size))
    return drop, drop - GATE_Z * float(np.hypot(sd_a, sd_b))


def _arm_alert_rate_check(
    action: str,
    t: float,
    a: ScoreArray,
    b: ScoreArray,
    reference: Reference,
    limits: ModelCIConfig,
) -> Check:
    """The candidate arm's alert rate at ``t`` against the control arm's, on their own
    events: fails only when the intervals of both prove a change beyond the band."""
    k_a, k_b = int(np.count_nonzero(a >= t)), int(np.count_nonzero(b >= t))
    rate_a, rate_b = k_a / a.size, k_b / b.size
    expected = float(1.0 - reference.cdf(np.array([t]))[0])
    low_a, high_a = wilson_interval(k_a, a.size, GATE_Z)
    low_b, high_b = wilson_interval(k_b, b.size, GATE_Z)
    band = limits.max_alert_rate_change
    # The control's own interval, even with no alert in it: its upper bound is then what
    # the control's sample allows, and two arms alike never prove each other different.
    fail = low_b > high_a * (1.0 + band) or high_b < low_a * (1.0 - band)
    base = rate_a if k_a else expected
    change = f"{rate_b / base - 1.0:+.0%}" if base > 0 else "n/a"
    return Check(
        f"alert rate at {action} >= {t:g}",
        f"{rate_a:.3%}",
        f"{rate_b:.3%}",
        f"within ±{band:.0%}",
        "fail" if fail else "pass",
        f"change {change}; contract {expected:.3%}",
    )


def _proven_drop(
    fn: Callable[[ScoreArray, npt.NDArray[Any]], float],
    a: ScoreArray,
    b: ScoreArray,
    y: npt.NDArray[Any],
) -> tuple[float, float]:
    """The metric's drop (live − candidate) and its lower bound at z = 3, by a paired
    bootstrap: resampling events keeps each event's two scores together, so the noise that
    both models share (which positives happen to be in the sample) cancels.

    Each round resamples at most :data:`BOOTSTRAP_SAMPLE` events and the spread is scaled
    by ``sqrt(m / n)`` (a mean-like statistic's standard error goes as ``1/sqrt(n)``), so a
    million-event comparison costs what a 100k one does. Seeded: the same lake gives the
    same verdict.
    """
    n = a.size
    drop = fn(a, y) - fn(b, y)
    m = min(n, BOOTSTRAP_SAMPLE)
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(BOOTSTRAP_ROUNDS):
        idx = rng.integers(0, n, size=m)
        yy = y[idx]
        if 0 < int(np.count_nonzero(yy)) < m:
            diffs.append(fn(a[idx], yy) - fn(b[idx], yy))
    if len(diffs) < 2:
        return drop, drop
    sd = float(np.std(diffs, ddof=1)) * float(np.sqrt(m / n))
    return drop, drop - GATE_Z * sd


def _alert_rate_check(
    action: str,
    t: float,
    a: ScoreArray,
    b: ScoreArray,
    reference: Reference,
    limits: ModelCIConfig,
) -> Check:
    """Candidate's alert rate at ``t`` against live's, failing only on a proven excess."""
    n = a.size
    k_live, k_cand = int(np.count_nonzero(a >= t)), int(np.count_nonzero(b >= t))
    rate_live, rate_cand = k_live / n, k_cand / n
    expected = float(1.0 - reference.cdf(np.array([t]))[0])
    low, high = wilson_interval(k_cand, n, GATE_Z)
    band = limits.max_alert_rate_change
    # With no live alert to be relative to, the candidate is judged against the contract.
    base = expected if k_live == 0 else rate_live
    fail = low > base * (1.0 + band) or high < base * (1.0 - band)
    change = f"{rate_cand / base - 1.0:+.0%}" if base > 0 else "n/a"
    return Check(
        f"alert rate at {action} >= {t:g}",
        f"{rate_live:.3%}",
        f"{rate_cand:.3%}",
        f"within ±{band:.0%}",
        "fail" if fail else "pass",
        f"change {change}; contract {expected:.3%}",
    )
