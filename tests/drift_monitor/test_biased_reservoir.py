"""Aggarwal's exponentially biased reservoir: fixed memory, age distribution, persistence."""

from __future__ import annotations

import numpy as np
import pytest

from kfp_edge.drift_monitor.reservoir import BiasedReservoir


def _stream(reservoir: BiasedReservoir, rows: int, chunk: int = 1000, seed: int = 0):
    rng = np.random.default_rng(seed)
    for start in range(0, rows, chunk):
        m = min(chunk, rows - start)
        reservoir.add_many(rng.normal(size=(m, 2)), list(range(start, start + m)))


def test_memory_stays_fixed_however_long_the_stream():
    reservoir = BiasedReservoir(["a", "b"], "y", bias_rate=0.01, capacity=50, seed=1)
    buffers = (reservoir.features, reservoir.labels, reservoir.arrivals)
    before = reservoir.nbytes
    sizes = []
    for _ in range(5):
        _stream(reservoir, 20_000)
        sizes.append(reservoir.size)
        assert reservoir.nbytes == before
        assert all(
            a is b
            for a, b in zip(
                buffers, (reservoir.features, reservoir.labels, reservoir.arrivals), strict=True
            )
        )
    assert max(sizes) <= 50 and sizes[-1] >= 45
    assert reservoir.seen == 100_000
    # Labels stay attached to their features' rows: arrival time equals the label given.
    assert list(reservoir.labels[: reservoir.size] % 20_000) == list(
        reservoir.arrivals[: reservoir.size] % 20_000
    )


@pytest.mark.parametrize("bias_rate, capacity", [(0.01, None), (0.01, 40)])
def test_age_distribution_follows_the_exponential_bias(bias_rate, capacity):
    """Full reservoir: a resident survives each arrival with probability 1 - lambda, so ages are
    geometric, P(age >= k) = (1 - lambda) ** k, whatever the capacity."""
    ages = []
    for seed in range(30):
        reservoir = BiasedReservoir(["a", "b"], "y", bias_rate, capacity, seed=seed)
        _stream(reservoir, 4000, seed=seed)
        ages.append(reservoir.ages())
    ages = np.sort(np.concatenate(ages))
    empirical_survival = 1.0 - np.arange(len(ages)) / len(ages)  # P(age >= ages[i])
    expected_survival = (1.0 - bias_rate) ** ages
    ks = np.max(np.abs(empirical_survival - expected_survival))
    assert ks < 0.06, f"KS distance {ks:.3f} from the geometric age distribution"
    expected_mean = (1.0 - bias_rate) / bias_rate
    assert abs(ages.mean() - expected_mean) < 0.1 * expected_mean
    # Contrast: an unbiased sample of 4000 rows would have a mean age near 2000.
    assert ages.mean() < 200


def test_a_higher_bias_rate_keeps_younger_rows():
    young, old = [], []
    for seed in range(10):
        fast = BiasedReservoir(["a", "b"], "y", 0.02, capacity=40, seed=seed)
        slow = BiasedReservoir(["a", "b"], "y", 0.002, capacity=40, seed=seed)
        _stream(fast, 5000, seed=seed)
        _stream(slow, 5000, seed=seed)
        young.append(fast.ages().mean())
        old.append(slow.ages().mean())
    assert np.mean(young) * 5 < np.mean(old)


def test_saved_reservoir_resumes_exactly_like_an_uninterrupted_one(tmp_path):
    whole = BiasedReservoir(["a", "b"], "y", 0.01, capacity=60, seed=3)
    _stream(whole, 3000, seed=5)
    first = BiasedReservoir(["a", "b"], "y", 0.01, capacity=60, seed=3)
    rng = np.random.default_rng(5)
    chunks = [(rng.normal(size=(1000, 2)), list(range(i, i + 1000))) for i in range(0, 3000, 1000)]
    first.add_many(*chunks[0])
    first.save(tmp_path)
    resumed = BiasedReservoir.load(tmp_path)
    for chunk in chunks[1:]:
        resumed.add_many(*chunk)
    assert resumed.summary() == whole.summary()
    assert resumed.to_frame().equals(whole.to_frame())
    frame = resumed.to_frame()
    assert list(frame.columns) == ["a", "b", "y"]  # usable directly as training input


def test_invalid_parameters_and_torn_state_are_refused(tmp_path):
    with pytest.raises(ValueError, match="capacity \\* bias_rate must be at most 1"):
        BiasedReservoir(["a"], "y", bias_rate=0.1, capacity=11)
    with pytest.raises(ValueError, match="bias_rate must be in"):
        BiasedReservoir(["a"], "y", bias_rate=0.0)
    reservoir = BiasedReservoir(["a"], "y", 0.1, seed=0)
    reservoir.add_many(np.ones((30, 1)), ["x"] * 30)
    reservoir.save(tmp_path)
    # A Parquet file without the state (e.g. a user's table copied over it) is refused.
    reservoir.to_frame().to_parquet(tmp_path / "reservoir.parquet")
    with pytest.raises(ValueError, match="reservoir.parquet: no reservoir state"):
        BiasedReservoir.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="no saved reservoir"):
        BiasedReservoir.load(tmp_path / "nothing")


def _naive(bias_rate, capacity, seed, batches):
    """Aggarwal's algorithm row by row, drawing the same random numbers per batch."""
    rng = np.random.default_rng(seed)
    p_in = capacity * bias_rate
    slots, size, seen = [None] * capacity, 0, 0
    for x, labels in batches:
        u = rng.random((len(x), 3))
        for i in range(len(x)):
            t = seen
            seen += 1
            if p_in < 1.0 and u[i, 0] >= p_in:
                continue
            if size > 0 and u[i, 1] < size / capacity:
                slot = min(int(u[i, 2] * size), size - 1)
            else:
                slot, size = size, size + 1
            slots[slot] = (t, labels[i], tuple(x[i]))
    return sorted(slots[:size])


@pytest.mark.parametrize(
    "bias_rate, capacity", [(0.01, None), (0.02, 20), (0.5, 2), (0.001, None), (0.002, 100)]
)
def test_vectorized_insertion_equals_the_row_by_row_algorithm(bias_rate, capacity):
    rng = np.random.default_rng(9)
    batches = [
        (rng.normal(size=(m, 2)), [f"r{k}-{i}" for i in range(m)])
        for k, m in enumerate([1, 7, 300, 2000, 5, 1500])
    ]
    reservoir = BiasedReservoir(["a", "b"], "y", bias_rate, capacity, seed=4)
    for x, labels in batches:
        reservoir.add_many(x, labels)
    got = sorted(
        (int(reservoir.arrivals[k]), reservoir.labels[k], tuple(reservoir.features[k]))
        for k in range(reservoir.size)
    )
    assert got == _naive(bias_rate, reservoir.capacity, 4, batches)
