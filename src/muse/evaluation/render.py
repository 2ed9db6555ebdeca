"""Reports as a terminal table (rich), a Markdown file and PNG figures (matplotlib).

One report object, three renderings: operators read the terminal, CI archives the folder
(Markdown renders in any code review tool, PNGs next to it). Figures follow the paper's
Fig. 4/6: relative error per score bin with Wilson error bars, one series per predictor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy.typing as npt
from rich.markup import escape
from rich.table import Table

from muse.evaluation.alignment import BinAlignment
from muse.evaluation.calibration import CalibrationRow
from muse.evaluation.compare import Comparison
from muse.extras import require

__all__ = [
    "Report",
    "alignment_table",
    "calibration_table_view",
    "comparison_table",
    "plot_alignment",
    "plot_reliability",
]

_MARK = {"pass": "✓", "fail": "✗", "info": "·"}


@dataclass
class Report:
    """A titled list of sections, each a header, a table (header + rows) and an optional figure."""

    title: str
    sections: list[tuple[str, list[str], list[list[str]], str | None]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(
        self, heading: str, header: list[str], rows: list[list[str]], figure: str | None = None
    ) -> None:
        self.sections.append((heading, header, rows, figure))

    def markdown(self) -> str:
        lines = [f"# {self.title}", ""]
        for note in self.notes:
            lines += [note, ""]
        for heading, header, rows, figure in self.sections:
            lines += [f"## {heading}", ""]
            lines.append("| " + " | ".join(h.replace("|", "\\|") for h in header) + " |")
            lines.append("|" + "---|" * len(header))
            lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
            lines.append("")
            if figure:
                lines += [f"![{heading}]({figure})", ""]
        return "\n".join(lines)

    def write(self, folder: Path, name: str = "report.md") -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        path.write_text(self.markdown(), encoding="utf-8")
        return path

    def tables(self) -> list[Table]:
        out = []
        for heading, header, rows, _ in self.sections:
            # Cells are data (bin labels like "[0.1, 0.2[", predictor names): never markup.
            table = Table(title=escape(heading))
            for col in header:
                table.add_column(escape(col), overflow="fold")
            for row in rows:
                table.add_row(*(escape(c) for c in row))
            out.append(table)
        return out


def comparison_table(c: Comparison) -> tuple[list[str], list[list[str]]]:
    """The model-CI table of the talk: metric, live, candidate, limit, status."""
    header = ["metric", c.live, c.candidate, "limit", "status", "note"]
    rows = [
        [ch.metric, ch.live, ch.candidate, ch.limit, _MARK[ch.status], ch.note] for ch in c.checks
    ]
    return header, rows


def alignment_table(
    series: Mapping[str, BinAlignment],
) -> tuple[list[str], list[list[str]]]:
    """Per-bin expected share and each series' relative error with its interval."""
    names = list(series)
    first = series[names[0]]
    header = ["bin", "expected", *(f"{n} (rel. error [interval])" for n in names)]
    rows = []
    for i, b in enumerate(first.bins):
        cells = [b.label, f"{b.expected_share:.3%}"]
        for n in names:
            x = series[n].bins[i]
            cells.append(f"{x.relative_error:+.1%} [{x.error_low:+.0%}, {x.error_high:+.0%}]")
        rows.append(cells)
    return header, rows


def calibration_table_view(
    rows: Sequence[CalibrationRow],
) -> tuple[list[str], list[list[str]]]:
    """Table 1: ECE and Brier without and with posterior correction."""
    header = ["expert", "β", "ECE raw", "ECE corrected", "Brier raw", "Brier corrected"]
    body = [
        [
            r.name,
            "-" if r.beta is None else f"{r.beta:g}",
            f"{r.ece_raw:.4f}",
            f"{r.ece_corrected:.4f}",
            f"{r.brier_raw:.5f}",
            f"{r.brier_corrected:.5f}",
        ]
        for r in rows
    ]
    return header, body


def plot_alignment(series: Mapping[str, BinAlignment], path: Path, title: str = "") -> Path:
    """Paper Fig. 4/6: relative error per bin with Wilson error bars, one series each."""
    plt = _pyplot()
    import numpy as np

    names = list(series)
    n_bins = len(series[names[0]].bins)
    x = np.arange(n_bins, dtype=np.float64)
    width = 0.8 / max(1, len(names))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * n_bins + 2), 4.0), dpi=110)
    for k, name in enumerate(names):
        bins = series[name].bins
        err = np.array([b.relative_error for b in bins])
        low = np.array([b.error_low for b in bins])
        high = np.array([b.error_high for b in bins])
        ax.errorbar(
            x + (k - (len(names) - 1) / 2) * width,
            err,
            yerr=np.vstack([np.clip(err - low, 0, None), np.clip(high - err, 0, None)]),
            fmt="o",
            capsize=3,
            label=name,
        )
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels([b.label for b in series[names[0]].bins], rotation=45, ha="right")
    ax.set_ylabel("relative error of the bin's share vs R")
    ax.set_xlabel("score bin")
    if title:
        ax.set_title(title)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_reliability(
    curves: Mapping[str, npt.ArrayLike],
    labels: npt.ArrayLike,
    path: Path,
    title: str = "",
    bins: int = 15,
) -> Path:
    """Reliability diagram: mean predicted probability vs observed fraud rate in equal-mass
    bins, one curve per series (e.g. the ensemble without and with posterior correction).

    Equal-mass bins, as ECE_SWEEP^EM uses: with 1 % fraud, equal-width bins would put
    almost every event in the first bin and leave the upper ones nearly empty.
    """
    plt = _pyplot()
    import numpy as np

    y = np.asarray(labels, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(5.5, 5.0), dpi=110)
    top = 0.0
    for name, probs in curves.items():
        p = np.asarray(probs, dtype=np.float64)
        order = np.argsort(p, kind="stable")
        groups = np.array_split(order, min(bins, p.size))
        mean_p = np.array([p[g].mean() for g in groups if g.size])
        mean_y = np.array([y[g].mean() for g in groups if g.size])
        ax.plot(mean_p, mean_y, "o-", label=name, markersize=4)
        top = max(top, float(mean_p.max()), float(mean_y.max()))
    top = min(1.0, top * 1.05) or 1.0
    ax.plot([0, top], [0, top], color="black", linewidth=0.8, label="perfect calibration")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed fraud rate")
    if title:
        ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend (never a display); ``reports`` extra."""
    matplotlib = require("matplotlib", "drawing report plots")
    matplotlib.use("Agg")
    return require("matplotlib.pyplot", "drawing report plots")
