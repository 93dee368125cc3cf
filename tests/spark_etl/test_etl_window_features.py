"""The device-side window features (numpy, kfp_edge.features) reproduce Spark's exactly."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from kfp_edge.features import WindowSpec, features_of_window, window_features
from kfp_edge.spark_etl.schema import schema_from_dict
from kfp_edge.spark_etl.windowing import DEVICE, START, windowed

CHANNELS = ("temp", "vib")


def _readings(n=400):
    """Irregular readings of three devices: jittered times with milliseconds, gaps."""
    rng = np.random.default_rng(3)
    start = dt.datetime(2026, 3, 29, 0, 59, 0)  # no offset: UTC by definition
    rows = []
    for i in range(n):
        t = start + dt.timedelta(milliseconds=int(i * 700 + rng.integers(0, 400)))
        if 150 <= i < 180:
            continue  # a gap of ~20 s
        rows.append(
            {
                "timestamp": t.isoformat(timespec="milliseconds"),
                "device": f"d{i % 3}",
                "temp": float(60 + rng.normal(0, 2)),
                "vib": float(rng.normal(0.5, 0.2)),
                "fault": str(rng.choice(["normal", "wear"], p=[0.7, 0.3])),
            }
        )
    return rows


@pytest.mark.parametrize("window,hop", [(5.0, 0.0), (6.0, 2.5)], ids=["tumbling", "sliding"])
def test_numpy_windows_equal_spark_windows(spark, window, hop):
    from pyspark.sql import functions as F

    readings = _readings()
    schema = schema_from_dict(
        {
            "columns": [
                {"name": "timestamp", "type": "timestamp"},
                {"name": "device", "type": "string"},
            ]
            + [{"name": c, "type": "double"} for c in CHANNELS]
            + [{"name": "fault", "type": "string"}],
            "label_column": "fault",
            "time_column": "timestamp",
            "device_column": "device",
        }
    )
    spec = WindowSpec(CHANNELS, window, hop, time_column="timestamp", device_column="device")
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    frame = spark.createDataFrame(readings).select(
        F.col("timestamp").try_cast("timestamp").alias("timestamp"), "device", *CHANNELS, "fault"
    )
    rows = sorted(windowed(frame, schema, spec).collect(), key=lambda r: (r[DEVICE], r[START]))
    columns = {k: [r[k] for r in readings] for k in readings[0]}
    ours = window_features(columns, spec, label_column="fault")
    assert [(r[DEVICE], r[START]) for r in rows] == list(
        zip(ours["device"], ours["window_start"], strict=True)
    )
    theirs = np.array([[r[c] for c in spec.output_columns] for r in rows])
    np.testing.assert_allclose(ours["x"], theirs, rtol=1e-12, atol=1e-12)
    assert ours["label"] == [r["fault"] for r in rows]
    if hop:  # each reading is in 2 or 3 of the 6 s windows starting every 2.5 s
        assert 2 * len(readings) <= sum(r["count"] for r in rows) <= 3 * len(readings)


def test_one_window_and_the_spec_round_trip():
    spec = WindowSpec(("a",), 10, stats=("mean", "max", "count"))
    assert spec.output_columns == ["a_mean", "a_max", "count"]
    assert WindowSpec.from_dict(spec.to_dict()) == spec
    assert features_of_window([[1.0], [3.0]], spec).tolist() == [2.0, 3.0, 2.0]
    with pytest.raises(ValueError, match="hop_seconds"):
        WindowSpec(("a",), 10, 20)
    with pytest.raises(ValueError, match="lack column"):
        window_features({"timestamp": [0.0]}, spec)
    with pytest.raises(ValueError, match="row 1, column 'a': not a finite"):
        window_features({"timestamp": [0.0, 1.0], "a": [1.0, float("nan")]}, spec)
    offset = window_features({"timestamp": ["2026-01-01T01:00:00+01:00"], "a": [1.0]}, spec)
    assert offset["window_start"] == [dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc).timestamp()]
