"""Canary splits: shares within sampling error of the weights, the same arm for the same
entity on every machine, and an entity of the candidate's arm staying there as it grows."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from muse.splits import BUCKETS, Arm, Split, bucket_of

KEYS = [f"card-{i:06d}" for i in range(40_000)]


def split(*weights: float, salt: str = "exp-1") -> Split:
    return Split(tuple(Arm(f"p{i}", w) for i, w in enumerate(weights)), "card_id", salt)


def test_worked_example_ninety_ten() -> None:
    s = split(90, 10)
    assert s.bounds.tolist() == [9_000, 10_000]
    assert s.shares == (0.9, 0.1)
    assert s.arm_of_bucket([0, 8_999, 9_000, 9_999]).tolist() == [0, 0, 1, 1]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 100), min_size=2, max_size=4), st.text(max_size=8))
def test_the_observed_split_is_within_sampling_error_of_the_weights(
    weights: list[int], salt: str
) -> None:
    s = split(*weights, salt=salt)
    arms = s.assign(KEYS)
    n = len(KEYS)
    for i, share in enumerate(s.shares):
        observed = float(np.mean(arms == i))
        sigma = np.sqrt(share * (1 - share) / n)
        assert abs(observed - share) <= 5 * sigma + 1e-12, (weights, i, observed, share)
    total = sum(weights)
    assert all(abs(sh - w / total) <= 1 / BUCKETS for sh, w in zip(s.shares, weights, strict=True))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 98), st.integers(1, 50))
def test_an_entity_of_the_growing_last_arm_stays_in_it(candidate: int, more: int) -> None:
    more = min(more, 99 - candidate)
    before, after = (
        split(100 - candidate, candidate),
        split(100 - candidate - more, candidate + more),
    )
    was = before.assign(KEYS) == 1
    now = after.assign(KEYS) == 1
    assert not np.any(was & ~now)  # nobody leaves the candidate's arm
    assert after.moved(before) == pytest.approx(more / 100, abs=1 / BUCKETS)


def test_the_same_key_gets_the_same_arm_in_another_process() -> None:
    """Python's hash() differs per process; the split must not."""
    s = split(70, 20, 10)
    here = s.assign(KEYS[:500]).tolist()
    code = (
        "from muse.splits import Arm, Split\n"
        "s = Split(tuple(Arm(f'p{i}', w) for i, w in enumerate((70, 20, 10))), 'card_id', 'exp-1')\n"
        "print(s.assign([f'card-{i:06d}' for i in range(500)]).tolist())"
    )
    there = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    ).stdout
    assert there.strip() == str(here)
    assert bucket_of("card-000001", "exp-1") == bucket_of("card-000001", "exp-1")


def test_two_salts_split_independently() -> None:
    a = split(50, 50, salt="exp-a").assign(KEYS)
    b = split(50, 50, salt="exp-b").assign(KEYS)
    assert abs(float(np.corrcoef(a, b)[0, 1])) < 0.03
    assert split(50, 50).moved(split(50, 50, salt="other")) == 1.0


def test_a_zero_weight_arm_gets_nothing_and_a_tiny_one_still_gets_a_bucket() -> None:
    zero = split(0, 100)
    assert zero.shares == (0.0, 1.0)
    assert not np.any(zero.assign(KEYS) == 0)
    tiny = split(1e-9, 1e-9, 100)
    assert tiny.bounds.tolist() == [1, 2, BUCKETS]
    assert np.all(np.diff(split(0, 1e-9, 0, 5).bounds) >= 0)


@pytest.mark.parametrize(
    ("arms", "message"),
    [
        ((Arm("a", 1),), "at least two arms"),
        ((Arm("a", 1), Arm("a", 2)), "lists a predictor twice"),
        ((Arm("a", 0), Arm("b", 0)), "must not all be 0"),
    ],
)
def test_bad_splits_are_refused_by_name(arms: tuple[Arm, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Split(arms)


@pytest.mark.parametrize("weight", [-1, float("nan"), float("inf"), True, "10"])
def test_bad_weights_are_refused_by_name(weight: object) -> None:
    with pytest.raises(ValueError, match="arm 'a': weight must be a finite number >= 0"):
        Arm("a", weight)  # type: ignore[arg-type]
