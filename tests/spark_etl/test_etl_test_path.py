"""A held-out test table (``test_path``): it alone is the test split, cleaned like the input.

The retraining pipeline passes the drift monitor's recent labelled rows this way, so the gate
compares champion and challenger on recent data that no model trained on.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kfp_edge import dataset
from kfp_edge.spark_etl.datagen import generate_sensor_data
from kfp_edge.spark_etl.etl import BadDataError, run_etl

ROLE_KEYS = ("label_column", "id_column", "time_column", "device_column")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """An export of 8 devices, and later readings of 4 of them (ids of their own, 2 bad rows)."""
    root = tmp_path_factory.mktemp("held-out")
    export = generate_sensor_data(root / "export.csv", 2400, devices=8, seed=5, bad_fraction=0.0)
    recent = root / "recent"
    recent.mkdir()
    generate_sensor_data(root / "later.csv", 400, devices=4, seed=6, bad_fraction=0.0)
    lines = (root / "later.csv").read_text().splitlines()
    rows = [lines[0]] + [line.replace("r", "late-r", 1) for line in lines[1:]]
    rows[5] = rows[5].rsplit(",", 1)[0]  # a field short
    fields = rows[9].split(",")
    rows[9] = ",".join([fields[0], "", *fields[2:]])  # no time
    (recent / "part-0.csv").write_text("\n".join(rows) + "\n")
    return export, recent


def _etl(spark, out, files, **options):
    """The ETL of the export with the later readings as ``test_path``; the summary."""
    export, recent = files
    roles = {k: export["schema"][k] for k in ROLE_KEYS}
    return run_etl(
        str(out), input_path=export["path"], test_path=str(recent), spark=spark, **roles, **options
    )


def _ids(out, split):
    return pq.read_table(out / "parquet" / split).column("reading_id").to_pylist()


@pytest.mark.parametrize("split_by", ["row", "group", "time"])
def test_the_held_out_rows_are_the_whole_test_split(spark, tmp_path, files, split_by):
    out = tmp_path / "out"
    summary = _etl(spark, out, files, split_by=split_by, window_seconds=0)
    ids = {s: _ids(out, s) for s in dataset.SPLITS}
    assert all(i.startswith("late-") for i in ids["test"])
    assert len(ids["test"]) == 398  # 400 later readings, 2 quarantined
    assert not any(i.startswith("late-") for i in ids["train"] + ids["validation"])
    assert len(ids["train"]) + len(ids["validation"]) == 2400  # the input: train and validation
    if split_by == "row":  # exact per class: 0.2 / (0.6 + 0.2) of the input
        assert len(ids["validation"]) == pytest.approx(2400 * 0.25, abs=4)
    else:  # whole devices, or the part of each device's time range before the cut
        assert 0 < len(ids["validation"]) < len(ids["train"])
    assert summary["rows_per_split"]["test"] == 398
    assert summary["bad_by_reason"]["wrong_field_count"] == 1
    assert summary["bad_by_reason"]["missing_value"] == 1
    quarantine = pq.read_table(out / "quarantine").to_pydict()
    assert all("recent/part-0.csv" in source for source in quarantine["source_file"])
    manifest = dataset.read_manifest(out)
    assert manifest["split"]["test_path"] == str(files[1])
    assert manifest["splits"]["test"]["rows"] == 398


def test_windows_of_the_held_out_rows_stay_apart(spark, tmp_path, files):
    summary = _etl(spark, tmp_path / "out", files, window_seconds=20)
    # 4 devices x 100 s of later readings in 20 s windows; the input's 8 x 300 s
    assert summary["rows_per_split"]["test"] == 4 * 5
    assert summary["rows_per_split"]["train"] + summary["rows_per_split"]["validation"] == 8 * 15


def test_a_held_out_table_in_another_format_is_refused(spark, tmp_path, files):
    other = tmp_path / "recent.parquet"
    pq.write_table(pa.table({"fault": ["normal"]}), other)
    out = tmp_path / "out"
    with pytest.raises(BadDataError, match="test_path is parquet, the input is csv"):
        _etl(spark, out, (files[0], other))
    assert not out.exists() or not any(out.iterdir())
