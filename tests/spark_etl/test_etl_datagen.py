"""The synthetic sensor generator: determinism, drift, and defects the ETL finds one for one."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from kfp_edge import dataset
from kfp_edge.app.cli import main as cli_main
from kfp_edge.spark_etl.datagen import CLASSES, generate_sensor_data
from kfp_edge.spark_etl.etl import run_etl


def test_same_arguments_same_bytes_other_seed_other_data(tmp_path):
    a = generate_sensor_data(tmp_path / "a.csv", 3000, seed=5, bad_fraction=0.02)
    generate_sensor_data(tmp_path / "b.csv", 3000, seed=5, bad_fraction=0.02)
    generate_sensor_data(tmp_path / "c.csv", 3000, seed=6, bad_fraction=0.02)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert (tmp_path / "a.csv").read_bytes() != (tmp_path / "c.csv").read_bytes()
    frame = pd.read_csv(tmp_path / "a.csv", on_bad_lines="skip")
    assert list(frame.columns)[:3] == ["reading_id", "timestamp", "device_id"]
    assert set(frame["device_id"]) == {"dev-0", "dev-1", "dev-2", "dev-3"}
    assert set(CLASSES) <= set(frame["fault"])  # every fault class occurs
    assert a["bad_rows"] == sum(a["bad_by_reason"].values()) > 0
    with pytest.raises(FileExistsError):
        generate_sensor_data(tmp_path / "a.csv", 10)
    generate_sensor_data(tmp_path / "p1.parquet", 2000, seed=1, fmt="parquet")
    generate_sensor_data(tmp_path / "p2.parquet", 2000, seed=1, fmt="parquet")
    assert pd.read_parquet(tmp_path / "p1.parquet").equals(pd.read_parquet(tmp_path / "p2.parquet"))


def test_drift_shifts_the_sensors_from_the_given_time_on(tmp_path):
    generate_sensor_data(tmp_path / "d.csv", 8000, devices=2, seed=3, drift_at=2000.0)
    generate_sensor_data(tmp_path / "n.csv", 8000, devices=2, seed=3)
    drift, plain = pd.read_csv(tmp_path / "d.csv"), pd.read_csv(tmp_path / "n.csv")
    late = pd.to_datetime(drift["timestamp"]) >= pd.Timestamp("2026-01-01") + pd.Timedelta(
        seconds=2000
    )
    np.testing.assert_allclose(drift.loc[~late, "temp"], plain.loc[~late, "temp"])
    shift = (drift.loc[late, "temp"] - plain.loc[late, "temp"]).to_numpy()
    np.testing.assert_allclose(shift, 5.0, atol=1e-3)
    assert (drift.loc[late, "humidity"] - plain.loc[late, "humidity"]).mean() == pytest.approx(15)


def test_cli_datagen(tmp_path, capsys):
    assert cli_main(["datagen", str(tmp_path / "x.parquet"), "--rows", "500", "--seed", "2"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["format"] == "parquet" and printed["rows"] == 500
    assert len(pd.read_parquet(tmp_path / "x.parquet")) == 500


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_etl_quarantines_exactly_the_generated_defects(spark, tmp_path, fmt):
    info = generate_sensor_data(tmp_path / f"s.{fmt}", 2000, seed=9, bad_fraction=0.06, fmt=fmt)
    (tmp_path / "schema.json").write_text(json.dumps(info["schema"]))
    summary = run_etl(
        str(tmp_path / "out"),
        input_path=info["path"],
        schema_path=str(tmp_path / "schema.json"),
        window_seconds=0,
        max_bad_fraction=0.1,
        spark=spark,
    )
    found = {k: v for k, v in summary["bad_by_reason"].items() if v}
    assert found == {k: v for k, v in info["bad_by_reason"].items() if v}
    assert summary["rows_good"] == 2000 - info["bad_rows"]
    assert summary["rows_per_class"] == {c: n for c, n in info["rows_by_class"].items() if n}


def test_sensor_dataset_is_windowed_per_device(spark, tmp_path):
    summary = run_etl(str(tmp_path / "out"), dataset="sensor", sensor_rows=2000, spark=spark)
    # 4 devices x 500 s / 20 s windows
    assert summary["examples"] == 4 * 25
    assert summary["num_features"] == 6 * 4 + 1
    assert "temp_std" in summary["feature_columns"] and summary["feature_columns"][-1] == "count"
    x, _ = dataset.load_split(tmp_path / "out", "train")
    counts = x[:, -1]
    assert set(counts.tolist()) == {20.0}
