"""A user's own device/time/label export: windows, leakage-free splits, any time zone, retries."""

from __future__ import annotations

import collections
import json

import pyarrow.parquet as pq
import pytest

from kfp_edge import dataset
from kfp_edge.spark_etl.datagen import generate_sensor_data
from kfp_edge.spark_etl.etl import BadDataError, run_etl

ROLES = {
    "label_column": "fault",
    "id_column": "reading_id",
    "time_column": "timestamp",
    "device_column": "device_id",
}


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """8 devices x 300 readings, one a second, timestamps without an offset, 1 % bad rows."""
    path = tmp_path_factory.mktemp("export") / "export.csv"
    return generate_sensor_data(path, 2400, devices=8, seed=5, bad_fraction=0.01)


def _parquet_column(out, split, column):
    table = pq.read_table(out / "parquet" / split)
    return table.column(column).to_pylist() if table.num_rows else []


def test_windows_and_grouped_split_keep_each_device_in_one_split(spark, tmp_path, export):
    out = tmp_path / "out"
    summary = run_etl(
        str(out), input_path=export["path"], window_seconds=20, spark=spark, **ROLES
    )  # no schema file: the roles are named, the types inferred
    assert summary["split_by"] == "group"  # the default with a device column
    manifest = dataset.read_manifest(out)
    groups = manifest["split"]["groups"]
    assert manifest["split"]["method"] == "group"
    devices = {s: set(_parquet_column(out, s, "device_id")) for s in dataset.SPLITS}
    assert {s: sorted(d) for s, d in devices.items()} == groups
    assert sum(len(d) for d in devices.values()) == 8  # no device in two splits
    assert set().union(*devices.values()) == {f"dev-{i}" for i in range(8)}
    assert all(devices[s] for s in dataset.SPLITS)
    assert summary["groups_per_split"] == {s: len(groups[s]) for s in dataset.SPLITS}
    assert (
        summary["devices"] == 8 and sum(summary["rows_per_device"].values()) == summary["rows_good"]
    )
    # 300 s per device in 20 s windows; every window of the model's input is complete
    assert summary["examples"] == 8 * 15
    assert manifest["window"]["output_columns"] == manifest["feature_columns"]
    assert manifest["feature_columns"][:2] == ["temp_mean", "temp_std"]
    assert "window_start" in pq.read_table(out / "parquet" / "train").column_names
    profile = summary["feature_profile"]["temp"]["approx_quantiles"]
    assert profile["0.01"] <= profile["0.5"] <= profile["0.99"]


def test_time_split_puts_the_latest_readings_of_each_device_in_test(spark, tmp_path, export):
    out = tmp_path / "out"
    summary = run_etl(
        str(out), input_path=export["path"], split_by="time", window_seconds=0, spark=spark, **ROLES
    )
    assert summary["split_by"] == "time"
    table = {s: pq.read_table(out / "parquet" / s).to_pydict() for s in dataset.SPLITS}
    for s in dataset.SPLITS:
        assert set(table[s]) >= {"reading_id", "device_id", "timestamp", "label_index"}
    for device in {f"dev-{i}" for i in range(8)}:
        times = {
            s: [
                t
                for t, d in zip(table[s]["timestamp"], table[s]["device_id"], strict=True)
                if d == device
            ]
            for s in dataset.SPLITS
        }
        assert max(times["train"]) < min(times["validation"])
        assert max(times["validation"]) < min(times["test"])


def test_same_shards_whatever_the_machine_time_zone(spark, tmp_path, export):
    """Timestamps without an offset: the session zone (from the JVM's by default) must not
    matter. A 7 s window does not divide the 5 h between New York and UTC."""
    digests = []
    before = spark.conf.get("spark.sql.session.timeZone")
    for zone in ("UTC", "America/New_York"):
        spark.conf.set("spark.sql.session.timeZone", zone)
        out = tmp_path / zone.replace("/", "_")
        run_etl(str(out), input_path=export["path"], window_seconds=7, spark=spark, **ROLES)
        assert spark.conf.get("spark.sql.session.timeZone") == zone  # restored
        manifest = dataset.read_manifest(out)
        digests.append(
            [sh["sha256"] for s in dataset.SPLITS for sh in manifest["splits"][s]["shards"]]
        )
        digests.append(sorted(_parquet_column(out, "test", "window_start")))
    spark.conf.set("spark.sql.session.timeZone", before)
    assert digests[0] == digests[2] and digests[1] == digests[3]


def test_a_retried_step_completes(spark, tmp_path, export):
    out = tmp_path / "data"
    stale = tmp_path / ".data.staging"  # a killed attempt's staging directory
    (stale / "train").mkdir(parents=True)
    (stale / "train" / "part-00000.tfrecord").write_bytes(b"half")
    options = {"input_path": export["path"], "window_seconds": 0, **ROLES}
    # no declared classes: the generator's unknown labels are a class of their own here
    bad = export["bad_rows"] - export["bad_by_reason"]["unknown_label"]
    with pytest.raises(BadDataError, match="rows are bad"):
        run_etl(str(out), max_bad_fraction=0.001, spark=spark, **options)
    assert sorted(p.name for p in out.iterdir()) == [".kfp-edge-etl", "quarantine"]
    assert pq.read_table(out / "quarantine").num_rows == bad
    # the same run id again, with a looser threshold: the unfinished output is replaced
    summary = run_etl(str(out), max_bad_fraction=0.05, spark=spark, **options)
    assert summary["rows_bad"] == bad
    assert pq.read_table(out / "quarantine").num_rows == bad
    assert not stale.exists() and dataset.read_manifest(out)["split"]["method"] == "group"
    # and once more: the finished output is kept, its summary returned
    mtime = (out / "manifest.json").stat().st_mtime_ns
    assert run_etl(str(out), max_bad_fraction=0.05, spark=spark, **options) == summary
    assert (out / "manifest.json").stat().st_mtime_ns == mtime
    assert json.loads((out / "etl_summary.json").read_text())["options"]["split_by"] == "auto"


def test_rows_per_device_without_windows_are_the_written_rows(spark, tmp_path, export):
    out = tmp_path / "out"
    summary = run_etl(
        str(out), input_path=export["path"], window_seconds=0, split_by="row", spark=spark, **ROLES
    )  # the counts come from the split statistics here, not from a grouped count
    written = collections.Counter(
        d for s in dataset.SPLITS for d in _parquet_column(out, s, "device_id")
    )
    assert summary["rows_per_device"] == dict(written) and summary["devices"] == 8
    assert sum(written.values()) == summary["rows_good"]
