"""Hypothesis strategies shared by the test modules (one place, as attrs does it)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False, allow_infinity=False)
betas = st.floats(min_value=1e-4, max_value=1.0, allow_nan=False, allow_infinity=False)
weights = st.floats(min_value=1e-3, max_value=1e3, allow_nan=False, allow_infinity=False)


def score_arrays(min_size: int = 1, max_size: int = 200) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(np.float64, st.integers(min_size, max_size), elements=unit)


def expert_matrices(max_experts: int = 5) -> st.SearchStrategy[np.ndarray]:
    shape = st.tuples(st.integers(1, 50), st.integers(1, max_experts))
    return hnp.arrays(np.float64, shape, elements=unit)


# Raw score samples with heavy ties, as tree ensembles emit them.
tied_samples = st.lists(
    st.sampled_from([0.0, 0.01, 0.02, 0.05, 0.1, 0.3, 0.7, 0.99, 1.0]), min_size=1, max_size=300
).map(lambda xs: np.array(xs, dtype=np.float64))
continuous_samples = hnp.arrays(np.float64, st.integers(1, 300), elements=unit)
samples = st.one_of(tied_samples, continuous_samples)
