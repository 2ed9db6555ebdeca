"""The public data sets load as their READMEs describe them: rows, positives, periods in
time order, and no calendar column among the features of a data set whose periods are
months (a model fed the month would score each period on a scale of its own)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from muse.datasets.public import load_public

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.parametrize(
    ("name", "rows", "positives", "periods", "first", "last", "tenants"),
    [
        ("insurance", 15_420, 923, 36, "1994-01", "1996-12", 3),
        ("bank", 45_211, 5_289, 30, "2008-05", "2010-11", 3),
        ("cards", 99_992, 15_179, 32, "2019-01", "2019-32", 10),
    ],
)
def test_a_public_data_set_loads_as_documented(
    name: str, rows: int, positives: int, periods: int, first: str, last: str, tenants: int
) -> None:
    data = load_public(name, DATA)
    assert data.features.shape[0] == rows
    assert int(data.labels.sum()) == positives
    assert data.n_periods == periods
    assert (data.period_names[0], data.period_names[-1]) == (first, last)
    assert np.all(np.diff(data.period) >= 0)  # time order
    assert set(np.unique(data.period)) == set(range(periods))
    assert len(set(data.tenant.tolist())) == tenants
    assert np.isfinite(data.features).all()
    calendar = {"Month", "MonthClaimed", "month", "day", "Year", "duration", "datetime"}
    assert not calendar & set(data.feature_names)


def test_the_bank_years_are_inferred_from_the_month_order() -> None:
    data = load_public("bank", DATA)
    per_year = {
        y: int((np.char.startswith(np.array(data.period_names)[data.period], y)).sum())
        for y in ("2008", "2009", "2010")
    }
    assert per_year == {"2008": 27_729, "2009": 14_862, "2010": 2_620}


def test_an_unknown_data_set_or_a_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown data set 'credit'"):
        load_public("credit", DATA)
    with pytest.raises(FileNotFoundError, match=r"fraud_oracle\.csv\.gz not found"):
        load_public("insurance", tmp_path)
