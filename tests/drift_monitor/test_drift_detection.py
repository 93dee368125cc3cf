"""ADWIN drift detection on generated streams with drift injected at a known point."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kfp_edge.drift_monitor.monitor import monitor_drift
from kfp_edge.drift_monitor.stream import DriftMonitor

IRIS_COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
DRIFT_AT = 5000
MAX_DELAY = 500  # observations, for a 0.5-standard-deviation shift with delta=0.002, window=10
W = 10  # short windows: Iris-like rows are independent (sensor defaults: test_drift_lifecycle)


def _events(monitor, detector=None):
    return [e for e in monitor.detections if detector is None or e["detector"] == detector]


def _iris_stats():
    from sklearn.datasets import load_iris

    iris = load_iris()
    return list(iris.target_names), iris.data.mean(axis=0), iris.data.std(axis=0)


def test_adwin_detects_mean_shift_within_delay_and_false_alarms_are_bounded_over_20_seeds(
    make_drift_stream,
):
    classes, mean, std = _iris_stats()
    false_alarms = 0
    delays = []
    for seed in range(20):
        stream = make_drift_stream(DRIFT_AT + 1000, DRIFT_AT, seed, shift=0.5)
        monitor = DriftMonitor(IRIS_COLUMNS, "label", classes, mean, std, delta=0.002, window=W)
        monitor.process(stream)
        false_alarms += sum(e["position"] < DRIFT_AT for e in _events(monitor))
        after = [e for e in _events(monitor, "petal_length.mean") if e["position"] >= DRIFT_AT]
        assert after, f"seed {seed}: the shift of petal_length was not detected"
        delays.append(after[0]["position"] - DRIFT_AT)
        assert after[0]["statistic"] > 0.3  # kept-minus-dropped mean, in training stds
    # 20 seeds x 8 detectors x 500 windows of stationary data.
    assert false_alarms <= 1, f"{false_alarms} false alarms on the stationary prefixes"
    assert max(delays) <= MAX_DELAY, f"detection delays {delays}"


def test_stationary_stream_is_not_flagged_and_unshifted_features_stay_quiet(make_drift_stream):
    classes, mean, std = _iris_stats()
    monitor = DriftMonitor(IRIS_COLUMNS, "label", classes, mean, std, delta=0.002, window=W)
    monitor.process(make_drift_stream(3000, None, seed=7))
    assert _events(monitor) == []
    shifted = DriftMonitor(IRIS_COLUMNS, "label", classes, mean, std, delta=0.002, window=W)
    shifted.process(make_drift_stream(3000, 1500, seed=7))
    assert {e["detector"] for e in _events(shifted)} == {"petal_length.mean"}


def test_monitor_runs_the_published_model_and_detects_the_error_increase(
    workspace, make_drift_stream
):
    stream = make_drift_stream(3000, 1500, seed=3)
    source = workspace / "new.csv"
    stream.to_csv(source, index=False)
    decision = monitor_drift(workspace, "iris", source, window=W, bias_rate=0.002)
    json.dumps(decision)  # JSON-able
    assert decision["drifted"] is True
    assert decision["observations"] == 3000
    assert decision["model"]["version"] == 1
    petal = decision["features"]["petal_length"]
    assert petal["detected"] and 1500 <= petal["position"] <= 1500 + MAX_DELAY
    error = decision["error"]
    assert error["monitored"] and error["labelled_rows"] == 3000
    assert error["detected"] and 1500 <= error["position"] <= 1500 + MAX_DELAY
    assert error["statistic"] > 0.2  # the swap of two classes raises the error rate
    # The model is good before the drift: few errors overall from the first half.
    assert error["errors"] < 0.5 * 3000
    # State saved on the workspace: reservoir and decision.
    state = workspace / "drift" / "iris"
    assert (state / "gen-1" / "reservoir.parquet").is_file()
    assert json.loads((state / "decision.json").read_text())["drifted"] is True
    reservoir = decision["reservoir"]
    assert reservoir["capacity"] == 500 and reservoir["seen"] == 3000
    # Aggarwal's reservoir fills asymptotically: an insert appends with probability 1 - F.
    assert 0.95 * 500 <= reservoir["size"] <= 500


def test_state_carries_over_between_calls_so_a_later_shifted_batch_is_detected(
    workspace, make_drift_stream
):
    stream = make_drift_stream(4000, 2000, seed=5)
    first, second = workspace / "day1.csv", workspace / "day2.parquet"
    stream.iloc[:2000].to_csv(first, index=False)
    stream.iloc[2000:].reset_index(drop=True).to_parquet(second)
    quiet = monitor_drift(workspace, "iris", first, window=W, model_in_loop=False)
    assert quiet["drifted"] is False and quiet["error"]["monitored"] is False
    later = monitor_drift(workspace, "iris", second, window=W, model_in_loop=False)
    assert later["drifted"] is True
    petal = later["features"]["petal_length"]
    assert petal["position"] <= MAX_DELAY  # position within this call's input
    assert petal["stream_position"] == 2000 + petal["position"]
    assert later["stream_observations"] == 4000
    assert later["reservoir"]["seen"] == 4000
    with pytest.raises(ValueError, match="a reservoir keeps its bias rate"):
        monitor_drift(workspace, "iris", first, window=W, bias_rate=0.5, save_state=False)


def test_reference_data_makes_an_already_shifted_first_batch_detectable(
    workspace, tmp_path, make_drift_stream
):
    reference = tmp_path / "reference.csv"
    make_drift_stream(1000, None, seed=11).to_csv(reference, index=False)
    shifted = make_drift_stream(1000, 0, seed=12)
    source = tmp_path / "shifted.csv"
    shifted.to_csv(source, index=False)
    without = monitor_drift(
        workspace, "iris", source, window=W, model_in_loop=False, save_state=False
    )
    assert not without["features"]["petal_length"]["detected"]
    primed = monitor_drift(
        workspace,
        "iris",
        source,
        window=W,
        model_in_loop=False,
        reference=reference,
        save_state=False,
    )
    assert primed["features"]["petal_length"]["detected"]
    assert primed["observations"] == 1000 and primed["reservoir"]["seen"] == 1000
    assert not (workspace / "drift" / "iris").exists()


def test_directory_of_files_is_read_in_name_order(workspace, tmp_path, make_drift_stream):
    stream = make_drift_stream(3000, 1500, seed=9)
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    for i, start in enumerate(range(0, 3000, 1000)):
        part = stream.iloc[start : start + 1000]
        if i % 2:
            part.reset_index(drop=True).to_parquet(incoming / f"part-{i}.parquet")
        else:
            part.to_csv(incoming / f"part-{i}.csv", index=False)
    (incoming / ".partial.csv").write_text("garbage")
    decision = monitor_drift(workspace, "iris", incoming, window=W, model_in_loop=False)
    assert decision["observations"] == 3000
    assert 1500 <= decision["features"]["petal_length"]["position"] <= 1500 + MAX_DELAY


def test_bad_values_name_file_row_and_column_and_leave_saved_state_alone(
    workspace, tmp_path, make_drift_stream
):
    good = tmp_path / "good.csv"
    make_drift_stream(200, None, seed=1).to_csv(good, index=False)
    monitor_drift(workspace, "iris", good, window=W)
    state = workspace / "drift" / "iris"
    before = {p: p.read_bytes() for p in state.rglob("*") if p.is_file()}
    bad = make_drift_stream(50, None, seed=2)
    bad["sepal_width"] = bad["sepal_width"].astype(object)
    bad.loc[17, "sepal_width"] = "n/a"
    path = tmp_path / "bad.csv"
    bad.to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"bad\.csv: row 18, column 'sepal_width'"):
        monitor_drift(workspace, "iris", path, window=W)
    missing = tmp_path / "missing.csv"
    bad.drop(columns=["petal_width"]).to_csv(missing, index=False)
    with pytest.raises(ValueError, match=r"missing\.csv: missing feature column.*petal_width"):
        monitor_drift(workspace, "iris", missing, window=W)
    assert {p: p.read_bytes() for p in state.rglob("*") if p.is_file()} == before
    with pytest.raises(FileNotFoundError, match="no version 7"):
        monitor_drift(workspace, "iris", good, window=W, version=7)


def test_unlabelled_rows_feed_only_the_feature_detectors(workspace, tmp_path, make_drift_stream):
    stream = make_drift_stream(1000, None, seed=4)
    stream.loc[::2, "label"] = None
    path = tmp_path / "partly.csv"
    stream.to_csv(path, index=False)
    decision = monitor_drift(workspace, "iris", path, window=W, bias_rate=0.01)
    assert decision["error"]["labelled_rows"] == 500
    assert decision["reservoir"]["seen"] == 500
    assert np.isclose(decision["features"]["sepal_length"]["window_means"], 100)
    assert decision["error"]["labelled_rows"] == 500


def test_a_watched_directory_is_read_once_per_file(workspace, tmp_path, make_drift_stream):
    stream = make_drift_stream(3000, 2000, seed=13)
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    stream.iloc[:1000].to_csv(incoming / "2026-01-01.csv", index=False)
    first = monitor_drift(workspace, "iris", incoming, window=W, model_in_loop=False)
    assert first["observations"] == 1000 and not first["drifted"]
    stream.iloc[1000:2000].to_csv(incoming / "2026-01-02.csv", index=False)
    second = monitor_drift(workspace, "iris", incoming, window=W, model_in_loop=False)
    assert second["observations"] == 1000 and second["stream_observations"] == 2000
    assert second["inputs"]["skipped_already_processed"] == [str(incoming / "2026-01-01.csv")]
    nothing = monitor_drift(workspace, "iris", incoming, window=W, model_in_loop=False)
    assert nothing["observations"] == 0 and nothing["drifted"] is False
    stream.iloc[2000:].to_csv(incoming / "2026-01-03.csv", index=False)
    third = monitor_drift(workspace, "iris", incoming, window=W, model_in_loop=False)
    assert third["drifted"] and third["stream_observations"] == 3000
    assert third["reservoir"]["seen"] == 3000  # no row was offered twice
    processed = read_state(workspace)["processed"]
    assert sorted(v["rows"] for v in processed.values()) == [1000, 1000, 1000]


def read_state(workspace):
    from kfp_edge.drift_monitor.state import load_state

    return load_state(workspace / "drift" / "iris")["state"]


def test_labels_map_to_class_ids_whatever_pandas_made_of_them():
    import pandas as pd

    monitor = DriftMonitor(["a"], "y", [0, 1, 2])
    gappy = pd.DataFrame({"a": [1.0] * 5, "y": [0.0, 1.0, np.nan, 7.0, 2.5]})  # ints with a gap
    ids, raw = monitor._labels(gappy)
    assert ids.tolist() == [0, 1, -2, -1, -1] and raw[2] is None
    named = DriftMonitor(["a"], "y", ["setosa", "virginica"])
    ids, _ = named._labels(pd.DataFrame({"a": [1.0] * 3, "y": ["virginica", None, "x"]}))
    assert ids.tolist() == [1, -2, -1]
