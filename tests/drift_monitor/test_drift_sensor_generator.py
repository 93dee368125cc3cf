"""Drift detection on the ETL's synthetic sensor data (kfp_edge.spark_etl.datagen), whose
sensors drift from a known second on (temperature +5, vibration x1.4, humidity +15, pressure
+0.3) while fault episodes of 60-300 readings move some channels all along."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

DRIFT_AT_S = 2000.0
ROWS = 12_000  # 4 devices, one reading per second each: the drift starts at row 8000


@pytest.fixture(scope="module")
def sensor_streams(tmp_path_factory):
    from kfp_edge.spark_etl.datagen import generate_sensor_data

    directory = tmp_path_factory.mktemp("sensor")
    streams = []
    for seed in range(3):
        path = directory / f"sensor-{seed}.csv"
        generate_sensor_data(path, ROWS, devices=4, seed=seed, drift_at=DRIFT_AT_S)
        frame = pd.read_csv(path)
        seconds = (
            pd.to_datetime(frame["timestamp"]) - pd.Timestamp("2026-01-01")
        ).dt.total_seconds()
        streams.append((frame, int(np.argmax(seconds.to_numpy() >= DRIFT_AT_S))))
    return streams


def _monitor(frame, drift_row, window):
    from kfp_edge.drift_monitor.monitor import DriftMonitor
    from kfp_edge.spark_etl.datagen import CHANNELS, CLASSES

    reference = frame.iloc[:drift_row][list(CHANNELS)]  # what training saw
    monitor = DriftMonitor(
        list(CHANNELS),
        "fault",
        list(CLASSES),
        reference.mean(),
        reference.std(),
        delta=0.002,
        window=window,
    )
    monitor.process(frame)
    return monitor


def test_sensor_drift_is_found_without_false_alarms_with_long_windows(sensor_streams):
    for frame, drift_row in sensor_streams:
        assert drift_row == 8000
        monitor = _monitor(frame, drift_row, window=100)
        before = {
            c: [e["position"] for e in d.detections if e["position"] < drift_row]
            for c, d in monitor.features.items()
        }
        assert not any(before.values()), f"false alarms before the drift: {before}"
        first = {
            c: min((e["position"] for e in d.detections), default=None)
            for c, d in monitor.features.items()
        }
        assert first["humidity"] is not None and first["humidity"] - drift_row <= 1000
        assert first["temp"] is not None and first["temp"] - drift_row <= 3000
        assert first["rpm"] is None  # rpm does not drift


def test_short_windows_also_flag_the_fault_episodes(sensor_streams):
    """With 10-reading windows ADWIN sees the fault episodes themselves (real changes of the
    channels' means, not drift): why the window is a parameter, and why the sensor pipeline
    should monitor with windows longer than an episode's swing."""
    frame, drift_row = sensor_streams[0]
    monitor = _monitor(frame, drift_row, window=10)
    early = sum(e["position"] < drift_row for d in monitor.features.values() for e in d.detections)
    assert early > 0
    assert not any(e["position"] < drift_row for e in monitor.features["humidity"].detections)
    assert monitor.features["humidity"].detections[0]["position"] - drift_row <= 100
