"""``muse report alignment | calibration | compare``: evidence from the score lake.

Each renders to the terminal and, with ``--out DIR``, to ``DIR/report.md`` plus PNGs.
``compare`` is the model-CI gate: exit 1 when a check fails, so a pipeline can refuse to
promote the candidate.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer
from rich.markup import escape

from muse.cli import app
from muse.cli._common import ConfigArg, fail, out
from muse.cli.lifecycle import load_lenient
from muse.errors import MuseError

if TYPE_CHECKING:
    from muse.config import LoadedConfig
    from muse.evaluation.compare import Comparison
    from muse.evaluation.render import Report
    from muse.scorelog import LakeReader, Window

report_app = typer.Typer(help="Reports from the score lake.", no_args_is_help=True)
app.add_typer(report_app, name="report")

TenantOpt = Annotated[str, typer.Option("--tenant", "-t", help="Tenant to report on.")]
SinceOpt = Annotated[
    str | None, typer.Option(help="Window start (ISO date/datetime, UTC; inclusive).")
]
UntilOpt = Annotated[
    str | None, typer.Option(help="Window end (ISO date/datetime, UTC; exclusive).")
]
OutOpt = Annotated[
    Path | None, typer.Option("--out", help="Also write report.md and PNGs into this folder.")
]
LakeOpt = Annotated[
    str | None, typer.Option(help="Score lake to read (default: the config's lake.url).")
]
LabelsOpt = Annotated[
    Path | None,
    typer.Option(help="Labels: Parquet file or folder with event_id, label, labelled_at."),
]


def _open(loaded: LoadedConfig, config: Path, lake: str | None, labels: Path | None) -> LakeReader:
    from muse.scorelog import LakeReader

    url = lake or loaded.lake_url
    if url is None:
        fail(f"{config} has no `lake` section; pass --lake URL")
    if labels is not None and not labels.exists():
        fail(f"labels file {labels} does not exist")
    return LakeReader(url, labels=labels)


def _window(since: str | None, until: str | None) -> Window:
    from muse.scorelog import Window

    try:
        return Window.parse(since, until)
    except ValueError as e:
        fail(str(e))


def _emit(report: Report, folder: Path | None, verdict: tuple[str, bool] | None = None) -> None:
    for table in report.tables():
        out.print(table)
    for note in report.notes:
        out.print(note, highlight=False, markup=False)
    if verdict is not None:
        text, ok = verdict
        out.print(f"[bold {'green' if ok else 'red'}]{escape(text)}[/]", highlight=False)
        report.notes.append(f"**{text}**")
    if folder is not None:
        path = report.write(folder)
        out.print(f"wrote {escape(str(path))}", highlight=False)


@report_app.command("alignment")
def alignment(
    config: ConfigArg,
    predictor: Annotated[
        list[str],
        typer.Option(
            "--predictor",
            "-p",
            help="Predictor, or predictor@T^Q-version (e.g. ensemble-v1@v2); repeat to compare.",
        ),
    ],
    tenant: TenantOpt,
    since: SinceOpt = None,
    until: UntilOpt = None,
    role: Annotated[str, typer.Option(help="Rows: live, shadow or any.")] = "any",
    bins: Annotated[int, typer.Option(help="Equal-probability bins of R (plus the tail).")] = 10,
    out_dir: OutOpt = None,
    lake: LakeOpt = None,
) -> None:
    """Per-bin relative error to the reference of each (predictor, T^Q version) on one
    tenant and window: the paper's Fig. 4/6, as a table and a PNG."""
    from muse.evaluation.render import Report, alignment_table, plot_alignment
    from muse.evaluation.reports import alignment_report

    if role not in ("live", "shadow", "any"):
        fail(f"--role must be live, shadow or any, got {role!r}")
    if bins < 1:
        fail(f"--bins must be >= 1, got {bins}")
    loaded = load_lenient(config, *(item.partition("@")[0] for item in predictor))
    window = _window(since, until)
    try:
        with _open(loaded, config, lake, None) as reader:
            result = alignment_report(
                loaded, reader, predictor, tenant, window=window, role=role, bins=bins
            )
    except (MuseError, ValueError, OSError) as e:
        fail(str(e))
    report = Report(f"Alignment to {result.reference} — tenant {tenant}")
    report.notes.append(
        ", ".join(
            f"{k}: {v.n:,} events, max |rel. error| {v.max_abs_error:.1%}"
            for k, v in result.series.items()
        )
    )
    figure = None
    if out_dir is not None:
        plot_alignment(result.series, out_dir / "alignment.png", title=f"tenant {tenant}")
        figure = "alignment.png"
    header, rows = alignment_table(result.series)
    report.add("relative error per score bin", header, rows, figure)
    _emit(report, out_dir)


@report_app.command("calibration")
def calibration(
    config: ConfigArg,
    predictor: Annotated[str, typer.Option("--predictor", "-p", help="Predictor.")],
    tenant: TenantOpt,
    labels: Annotated[
        Path, typer.Option(help="Labels: Parquet file or folder with event_id, label, labelled_at.")
    ],
    since: SinceOpt = None,
    until: UntilOpt = None,
    out_dir: OutOpt = None,
    lake: LakeOpt = None,
) -> None:
    """ECE and Brier score per expert and for the ensemble, with and without posterior
    correction (paper Table 1), from the predictor's labelled lake rows."""
    from muse.evaluation.render import Report, calibration_table_view, plot_reliability
    from muse.evaluation.reports import ReportError, calibration_report

    loaded = load_lenient(config, predictor)
    window = _window(since, until)
    try:
        with _open(loaded, config, lake, labels) as reader:
            result = calibration_report(loaded, reader, predictor, tenant, window=window)
    except ReportError as e:
        fail(str(e))
    except (MuseError, ValueError, OSError, KeyError) as e:
        fail(f"cannot compute calibration: {e}")
    report = Report(f"Calibration of {predictor} — tenant {tenant}")
    report.notes.append(
        f"{result.n:,} labelled events, {result.positives:,} positive; ECE is ECE_SWEEP^EM (p = 1)"
    )
    header, body = calibration_table_view(result.rows)
    figure = None
    if out_dir is not None:
        plot_reliability(
            {
                "without posterior correction": result.uncorrected,
                "with posterior correction": result.corrected,
            },
            result.labels,
            out_dir / "reliability.png",
            title=f"{predictor}, tenant {tenant}",
        )
        figure = "reliability.png"
    report.add("with and without posterior correction", header, body, figure)
    _emit(report, out_dir)


@report_app.command("compare")
def compare(
    config: ConfigArg,
    live: Annotated[str, typer.Option(help="The live predictor.")],
    candidate: Annotated[str, typer.Option(help="The candidate (normally in shadow).")],
    tenant: TenantOpt,
    labels: LabelsOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    out_dir: OutOpt = None,
    lake: LakeOpt = None,
    arms: Annotated[
        bool,
        typer.Option(
            "--arms",
            help="Compare two arms of a canary split, each on the events it served "
            "(--live: the control arm) instead of a shadow on live's events.",
        ),
    ] = False,
) -> None:
    """The model-CI gate: candidate vs live on the same events, at the tenant's thresholds,
    against the limits in the config's `model_ci`. Exit 1 when a check fails.

    With --arms, the two arms of a canary split on their own events (no pairs: alert rates,
    alignment to R and, with labels, ranking per arm)."""
    from muse.evaluation.compare import assign_actions
    from muse.evaluation.reports import arms_report, compare_report

    loaded = load_lenient(config, live, candidate)
    window = _window(since, until)
    if arms:
        try:
            with _open(loaded, config, lake, labels) as reader:
                split = arms_report(
                    loaded, reader, live, candidate, tenant,
                    window=window, with_labels=labels is not None,
                )  # fmt: skip
        except (MuseError, ValueError, OSError) as e:
            fail(str(e))
        _emit_comparison(
            split.comparison,
            f"Canary arms — {candidate} vs {live} for {tenant}",
            f"{split.comparison.live_n:,} events in {live}'s arm, {split.comparison.n:,} in "
            f"{candidate}'s",
            out_dir,
        )
        return
    try:
        with _open(loaded, config, lake, labels) as reader:
            found = compare_report(
                loaded,
                reader,
                live,
                candidate,
                tenant,
                window=window,
                with_labels=labels is not None,
            )
    except (MuseError, ValueError, OSError) as e:
        fail(str(e))
    result = found.comparison
    if out_dir is not None:
        a, b = found.live_scores, found.candidate_scores
        _write_events(
            out_dir / "events.csv",
            found.event_ids,
            a,
            b,
            assign_actions(a, result.thresholds),
            assign_actions(b, result.thresholds),
        )
    _emit_comparison(
        result,
        f"Model CI — {candidate} vs {live} for {tenant}",
        f"{result.n:,} paired events; candidate T^Q {', '.join(found.candidate_versions)}",
        out_dir,
    )


def _emit_comparison(result: Comparison, title: str, note: str, out_dir: Path | None) -> None:
    """Print (and with ``out_dir`` write) a gate's table and verdict; exit 1 if it failed."""
    from muse.evaluation.render import Report, comparison_table, plot_alignment

    thresholds = result.thresholds
    report = Report(title)
    report.notes.append(
        f"{note}; thresholds "
        + (", ".join(f"{k} >= {v:g}" for k, v in thresholds.items()) or "none declared")
    )
    figure = None
    if out_dir is not None:
        plot_alignment(
            {result.live: result.live_alignment, result.candidate: result.candidate_alignment},
            out_dir / "alignment.png",
            title=f"tenant {result.tenant}",
        )
        figure = "alignment.png"
    header, rows = comparison_table(result)
    report.add("happy path", header, rows, figure)
    verdict = (
        "PASS: every check holds; the candidate may be promoted"
        if result.passed
        else "FAIL: " + "; ".join(c.metric for c in result.failed)
    )
    _emit(report, out_dir, (verdict, result.passed))
    if not result.passed:
        raise typer.Exit(1)


def _write_events(
    path: Path,
    ids: list[str],
    live: np.ndarray,
    cand: np.ndarray,
    live_actions: np.ndarray,
    cand_actions: np.ndarray,
) -> None:
    """The talk's per-event table: both scores, their difference and both actions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["event_id", "score", "live_score", "abs_score_diff", "action", "live_action"])
        for row in zip(
            ids, cand, live, np.abs(cand - live), cand_actions, live_actions, strict=True
        ):
            w.writerow([row[0], f"{row[1]:.6f}", f"{row[2]:.6f}", f"{row[3]:.6f}", row[4], row[5]])
