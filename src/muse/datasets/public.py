"""The three public data sets muse is tested on, as time-ordered tables of periods.

Loaders for the gzip'd CSV files of ``../shared/data`` (see each folder's README for
source and licence; muse ships none of the data): each returns a :class:`PublicDataset` —
a numeric feature matrix (categorical columns as ordinal codes in sorted order), 0/1
labels, each row's period (consecutive integers from 0, oldest first) and tenant. Periods
are what a walk-forward evaluation steps through: a model trained on early periods, maps
refitted period by period.

================  =========================  ==========  ===============================
name              rows, positive rate        periods     drift
================  =========================  ==========  ===============================
``insurance``     15,420 claims, 6.0 %       36 months   fraud rate swings, small months
``bank``          45,211 calls, 11.7 %       31 months   strong (3 % → 50 % positives)
``cards``         99,992 payments, 15.2 %    32 weeks    none (synthetic)
================  =========================  ==========  ===============================
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = ["DATASETS", "PublicDataset", "load_public"]

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


@dataclass(frozen=True, slots=True)
class PublicDataset:
    """One data set: features, labels, period and tenant per row, in time order."""

    name: str
    features: npt.NDArray[np.float64]
    feature_names: tuple[str, ...]
    labels: npt.NDArray[np.int8]
    period: npt.NDArray[np.int64]
    period_names: tuple[str, ...]
    tenant: npt.NDArray[np.str_]

    @property
    def n_periods(self) -> int:
        return len(self.period_names)


def _rows(path: Path, delimiter: str = ",") -> list[dict[str, str]]:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: the public data sets live in shared/data beside the repository"
        )
    with gzip.open(path, "rt", encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f, delimiter=delimiter))


def _matrix(rows: list[dict[str, str]], columns: Sequence[str]) -> npt.NDArray[np.float64]:
    """Numeric columns as floats, others as ordinal codes of their sorted values."""
    out = np.empty((len(rows), len(columns)))
    for j, c in enumerate(columns):
        values = [r[c] for r in rows]
        try:
            out[:, j] = [float(v) for v in values]
        except ValueError:
            codes = {v: k for k, v in enumerate(sorted(set(values)))}
            out[:, j] = [codes[v] for v in values]
    return out


def _periods(keys: Sequence[tuple[int, int]]) -> tuple[npt.NDArray[np.int64], tuple[str, ...]]:
    """Consecutive period numbers (0 = oldest) for sortable (year, sub-period) keys."""
    distinct = sorted(set(keys))
    index = {k: i for i, k in enumerate(distinct)}
    return np.array([index[k] for k in keys], dtype=np.int64), tuple(
        f"{y}-{m:02d}" for y, m in distinct
    )


def _dataset(
    name: str,
    rows: list[dict[str, str]],
    keys: list[tuple[int, int]],
    columns: Sequence[str],
    label: Callable[[dict[str, str]], int],
    tenant: str,
) -> PublicDataset:
    period, names = _periods(keys)
    order = np.argsort(period, kind="stable")
    return PublicDataset(
        name=name,
        features=_matrix(rows, columns)[order],
        feature_names=tuple(columns),
        labels=np.array([label(r) for r in rows], dtype=np.int8)[order],
        period=period[order],
        period_names=names,
        tenant=np.array([r[tenant] for r in rows])[order],
    )


def load_insurance(root: Path) -> PublicDataset:
    """Vehicle-insurance claims: ``Year`` + accident ``Month``; tenant ``BasePolicy``.

    The calendar columns (accident and claim month, week, day) are not features: a period
    *is* a month, and a model fed the month would score each period on a scale of its own.
    """
    rows = _rows(root / "vehicle_insurance_fraud" / "fraud_oracle.csv.gz")
    keys = [(int(r["Year"]), _MONTHS.index(r["Month"].lower()[:3]) + 1) for r in rows]
    calendar = {"Month", "WeekOfMonth", "DayOfWeek", "MonthClaimed", "WeekOfMonthClaimed"}
    calendar |= {"DayOfWeekClaimed", "Year"}
    columns = [c for c in rows[0] if c not in {"FraudFound_P", "PolicyNumber", *calendar}]
    return _dataset(
        "insurance", rows, keys, columns, lambda r: int(r["FraudFound_P"]), "BasePolicy"
    )


def load_bank(root: Path) -> PublicDataset:
    """Bank marketing calls, in file order (the year inferred: +1 whenever the month goes
    down, from May 2008); ``duration`` dropped (it leaks the label), ``day`` and ``month``
    too (a period is a month); tenant ``contact``."""
    rows = _rows(root / "uci_bank_marketing" / "bank-full.csv.gz", delimiter=";")
    keys = []
    year, last = 2008, 0
    for r in rows:
        month = _MONTHS.index(r["month"]) + 1
        if month < last:
            year += 1
        last = month
        keys.append((year, month))
    columns = [c for c in rows[0] if c not in {"y", "duration", "day", "month"}]
    return _dataset("bank", rows, keys, columns, lambda r: int(r["y"] == "yes"), "contact")


def load_cards(root: Path) -> PublicDataset:
    """Card payments (synthetic labels): ISO weeks of ``datetime``; tenant ``provider``."""
    rows = _rows(root / "evalml_fraud_transactions" / "fraud_transactions.csv.gz")
    keys = []
    for r in rows:
        d = date.fromisoformat(r["datetime"][:10])
        iso = d.isocalendar()
        keys.append((iso.year, iso.week))
        r["hour"] = r["datetime"][11:13]
    columns = ["amount", "currency", "customer_present", "provider", "lat", "lng", "country"]
    columns.append("hour")
    return _dataset("cards", rows, keys, columns, lambda r: int(r["fraud"] == "True"), "provider")


#: Loaders by name, each taking the data root (the ``shared/data`` folder).
DATASETS: dict[str, Callable[[Path], PublicDataset]] = {
    "insurance": load_insurance,
    "bank": load_bank,
    "cards": load_cards,
}


def load_public(name: str, root: Path) -> PublicDataset:
    """The data set ``name`` (``insurance``, ``bank`` or ``cards``) from ``root``."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known: {sorted(DATASETS)}")
    return DATASETS[name](root)
