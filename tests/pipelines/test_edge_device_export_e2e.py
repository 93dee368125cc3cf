"""A user's own device/time/label CSV through the whole edge pipeline with windows and a
grouped split (kfp.local SubprocessRunner): a model is published, no device is in two splits."""

from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.slow


def test_device_export_runs_through_the_pipeline(tmp_path):
    from kfp_edge.app.run_local import run_local
    from kfp_edge.dataset import SPLITS, read_manifest
    from kfp_edge.spark_etl.datagen import generate_sensor_data

    export = generate_sensor_data(tmp_path / "export.csv", 4000, devices=8, seed=2)
    result = run_local(
        workspace=str(tmp_path / "ws"),
        run_id="e2e-devices",
        input_path=export["path"],
        label_column="fault",
        time_column="timestamp",
        device_column="device_id",
        id_column="reading_id",
        window_seconds=10.0,
        model="mlp",
        epochs=10,
        workers=1,
        variants=["float32", "dynamic_int8"],
        min_accuracy=0.0,
        max_accuracy_drop=1.0,
    )
    assert result["error"] is None and result["published"], result
    data = Path(result["run_dir"]) / "data"
    manifest = read_manifest(data)
    assert manifest["split"]["method"] == "group" and manifest["window"]["window_seconds"] == 10
    devices = [
        set(pq.read_table(data / "parquet" / s).column("device_id").to_pylist()) for s in SPLITS
    ]
    assert sum(len(d) for d in devices) == len(set().union(*devices)) == 8
    published = Path(result["model_dir"])
    assert (published / "dataset_manifest.json").is_file()  # the window definition ships
    assert "window" in (published / "dataset_manifest.json").read_text()
