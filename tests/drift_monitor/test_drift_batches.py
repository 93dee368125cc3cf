"""Feeding detectors a run of values at once gives what feeding them one by one gives."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kfp_edge.drift_monitor.detectors import Detector
from kfp_edge.drift_monitor.stream import DriftMonitor


def _shifting_values(rows: int = 6000, seed: int = 0) -> list[float]:
    """Values whose mean jumps every 600 values, so ADWIN detects (and resets) many times."""
    rng = np.random.default_rng(seed)
    means = np.repeat(np.resize([0.0, 1.5, -1.5], rows // 600), 600)
    return (means + rng.normal(size=rows)).tolist()


def test_a_run_of_values_detects_and_saves_like_one_value_at_a_time():
    from river.drift import ADWIN

    values = _shifting_values()
    one = Detector(0.01)
    expected = [(k, e) for k, v in enumerate(values) if (e := one.update(v)) is not None]
    assert len(expected) >= 5  # enough resets to exercise them, some at a batch's end below
    adwin, river_hits = ADWIN(delta=0.01, clock=1), []  # river itself, value by value
    for k, value in enumerate(values):
        adwin.update(value)
        if adwin.drift_detected:
            river_hits.append(k)
    assert [k for k, _ in expected] == river_hits

    rng = np.random.default_rng(1)
    cuts = np.cumsum(rng.integers(1, 400, size=100))
    cuts = sorted({int(c) for c in cuts if c < len(values)} | {expected[0][0] + 1})
    batched, got, start = Detector(0.01), [], 0
    for end in [*cuts, len(values)]:
        got += [(start + k, e) for k, e in batched.update_many(values[start:end])]
        # the saved state rebuilds the same detector after every run
        batched = Detector.from_dict(batched.to_dict())
        start = end
    assert got == expected
    assert batched.to_dict() == one.to_dict()
    assert batched.estimation == one.estimation


def test_detections_keep_the_stream_order_however_the_rows_are_chunked():
    """Two features drift at different rows inside one chunk of many windows; the detections
    come in stream order (window by window), as when the chunks are one window each."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12_000, 2))
    x[6_000:, 1] += 1.0  # b first
    x[7_000:, 0] += 1.0  # then a, in the same 4096-row chunk
    frame = pd.DataFrame(x, columns=["a", "b"])

    def detections(chunk: int) -> list[tuple]:
        monitor = DriftMonitor(["a", "b"], "label", ["y"], window=50)
        for offset in range(0, len(frame), chunk):
            monitor.process(frame.iloc[offset : offset + chunk], offset=offset)
        return [(e["detector"], e["position"], e["stream_position"]) for e in monitor.detections]

    by_window = detections(50)
    assert [d[0] for d in by_window[:2]] == ["b.mean", "a.mean"], by_window
    assert detections(4096) == by_window
    assert detections(333) == by_window
