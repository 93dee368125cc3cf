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
    from kfp_edge.drift_monitor.config import DriftConfig
    from kfp_edge.drift_monitor.stream import DriftMonitor
    from kfp_edge.spark_etl.datagen import CHANNELS, CLASSES

    reference = frame.iloc[:drift_row][list(CHANNELS)]  # what training saw
    monitor = DriftMonitor(
        list(CHANNELS),
        "fault",
        list(CLASSES),
        reference.mean(),
        reference.std(),
        delta=DriftConfig().delta,
        window=window,
    )
    monitor.process(frame)
    return monitor


def _first(monitor, column):
    found = [e["position"] for e in monitor.detections if e["detector"].startswith(column + ".")]
    return min(found, default=None)


def test_sensor_drift_is_found_without_false_alarms_with_the_default_window(sensor_streams):
    from kfp_edge.drift_monitor.config import DriftConfig

    for frame, drift_row in sensor_streams:
        assert drift_row == 8000
        monitor = _monitor(frame, drift_row, window=DriftConfig().window)
        before = [e for e in monitor.detections if e["position"] < drift_row]
        assert not before, f"false alarms before the drift: {before}"
        first = {c: _first(monitor, c) for c in monitor.feature_columns}
        assert first["humidity"] is not None and first["humidity"] - drift_row <= 2500
        assert first["rpm"] is None and first["current"] is None  # they do not drift


def test_short_windows_also_flag_the_fault_episodes(sensor_streams):
    """With 10-reading windows ADWIN sees the fault episodes themselves (real changes of the
    channels' means, not drift): why the window is a parameter, and why the sensor pipeline
    should monitor with windows longer than an episode's swing."""
    frame, drift_row = sensor_streams[0]
    monitor = _monitor(frame, drift_row, window=10)
    early = sum(e["position"] < drift_row for e in monitor.detections)
    assert early > 0
    humidity = [e["position"] for e in monitor.detections if e["detector"] == "humidity.mean"]
    assert humidity and min(humidity) >= drift_row and min(humidity) - drift_row <= 100
