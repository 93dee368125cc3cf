"""The device-side window features over chunked raw readings (numpy only, no Spark)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kfp_edge.features import WindowSpec, WindowStream, window_features


def _readings(n=300):
    rng = np.random.default_rng(1)
    t = np.sort(rng.uniform(0, 120, n)).round(3)
    return pd.DataFrame(
        {
            "ts": t,
            "dev": [f"d{i % 2}" for i in range(n)],
            "a": rng.normal(0, 1, n),
            "b": rng.normal(5, 2, n),
            "y": rng.choice(["p", "q"], n),
        }
    )


@pytest.mark.parametrize("hop", [0.0, 4.0])
def test_chunked_stream_equals_all_at_once(hop):
    frame = _readings()
    spec = WindowSpec(("a", "b"), 10.0, hop, time_column="ts", device_column="dev")
    whole = window_features(frame, spec, label_column="y")
    stream = WindowStream(spec, "y")
    rows = []
    for start in range(0, len(frame), 37):  # chunks cut windows anywhere
        rows += stream.feed(frame.iloc[start : start + 37])
    rows += stream.flush()
    rows.sort(key=lambda r: (r["dev"], r["window_start"]))
    assert [(r["dev"], r["window_start"]) for r in rows] == list(
        zip(whole["device"], whole["window_start"], strict=True)
    )
    got = np.array([[r[c] for c in spec.output_columns] for r in rows])
    np.testing.assert_allclose(got, whole["x"], rtol=1e-12)
    assert [r["y"] for r in rows] == whole["label"]


def test_drift_monitor_turns_raw_readings_into_model_rows():
    from kfp_edge.drift_monitor.monitor import model_rows

    frame = _readings()
    spec = WindowSpec(("a", "b"), 10.0, time_column="ts", device_column="dev")
    chunks = [("r.csv", i + 1, frame.iloc[i : i + 50]) for i in range(0, len(frame), 50)]
    out = list(model_rows(iter(chunks), spec.to_dict(), "y"))
    converted = pd.concat([f for _, _, f in out])
    assert set(spec.output_columns) <= set(converted.columns) and "y" in converted
    assert len(converted) == len(window_features(frame, spec)["device"])
    assert [o[:2] for o in out][0] == ("r.csv", 1)
    # an unwindowed model, or chunks already holding the model's columns, pass unchanged
    assert list(model_rows(iter(chunks), None, "y")) == chunks
