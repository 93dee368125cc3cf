"""The ETL on Iris: the data contract of kfp_edge.dataset, read back by TensorFlow, and the step."""

from __future__ import annotations

import json

import numpy as np

from kfp_edge import dataset


def test_iris_output_follows_the_data_contract(iris_etl):
    out, summary = iris_etl
    manifest = dataset.read_manifest(out)
    assert manifest["classes"] == ["setosa", "versicolor", "virginica"]
    assert manifest["feature_columns"] == [
        "sepal_length",
        "sepal_width",
        "petal_length",
        "petal_width",
    ]
    assert manifest["num_features"] == 4 and manifest["num_classes"] == 3
    # stratified and exact: 50 per class -> 30/10/10 per class
    assert summary["rows_per_split"] == {"train": 90, "validation": 30, "test": 30}
    assert summary["rows_in"] == summary["rows_good"] == 150 and summary["rows_bad"] == 0
    assert summary["approx_distinct"]["species"] == 3
    from sklearn.datasets import load_iris

    iris = load_iris()
    all_rows = set()
    for split in dataset.SPLITS:
        x, y = dataset.load_split(out, split)
        assert len(y) == manifest["splits"][split]["rows"]
        assert np.bincount(y, minlength=3).tolist() == [len(y) // 3] * 3
        all_rows |= {(tuple(np.round(r, 4)), int(c)) for r, c in zip(x, y, strict=True)}
    expected = {
        (tuple(np.round(r.astype(np.float32), 4)), int(c))
        for r, c in zip(iris.data, iris.target, strict=True)
    }
    assert all_rows == expected  # every row kept, none twice (Iris has one duplicate row)
    x_train, _ = dataset.load_split(out, "train")
    pre = dataset.read_preprocessing(out)
    np.testing.assert_allclose(pre["mean"], x_train.astype(np.float64).mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(pre["std"], x_train.astype(np.float64).std(axis=0), rtol=1e-5)
    schema = json.loads((out / "schema.json").read_text())
    assert schema["label_column"] == "species"


def test_tensorflow_reads_the_shards_exactly_as_the_parquet_splits(iris_etl):
    import hashlib

    from kfp_edge.tf_env import import_tf

    tf, _ = import_tf()
    out, _ = iris_etl
    manifest = dataset.read_manifest(out)
    spec = {
        "features": tf.io.FixedLenFeature([4], tf.float32),
        "label": tf.io.FixedLenFeature([], tf.int64),
    }
    for split in dataset.SPLITS:
        shards = manifest["splits"][split]["shards"]
        assert len(shards) == 2 and all(s["rows"] > 0 for s in shards)
        for shard in shards:
            digest = hashlib.sha256((out / shard["path"]).read_bytes()).hexdigest()
            assert digest == shard["sha256"]
        ds = tf.data.TFRecordDataset(dataset.shard_paths(out, split)).map(
            lambda r: tf.io.parse_single_example(r, spec)
        )
        rows = [(tuple(e["features"].numpy().tolist()), int(e["label"])) for e in ds]
        assert len(rows) == manifest["splits"][split]["rows"]
        x, y = dataset.load_split(out, split)
        assert sorted(rows) == sorted(zip(map(tuple, x.tolist()), y.tolist(), strict=True))


def test_same_seed_gives_the_same_bytes(spark, tmp_path, iris_etl):
    from kfp_edge.spark_etl.etl import run_etl

    out, _ = iris_etl
    again = tmp_path / "again"
    run_etl(str(again), dataset="iris", seed=42, spark=spark)
    shards = lambda d: {  # noqa: E731
        s: [(sh["path"], sh["sha256"]) for sh in dataset.read_manifest(d)["splits"][s]["shards"]]
        for s in dataset.SPLITS
    }
    assert shards(again) == shards(out)
    for split in dataset.SPLITS:
        for path, _ in shards(out)[split]:
            assert (again / path).read_bytes() == (out / path).read_bytes()


def test_output_directory_is_never_overwritten(iris_etl):
    import pytest

    from kfp_edge.spark_etl.etl import run_etl

    out, summary = iris_etl
    before = (out / "manifest.json").read_bytes()
    with pytest.raises(FileExistsError, match="not empty"):
        run_etl(str(out), dataset="iris", seed=7)
    assert (out / "manifest.json").read_bytes() == before
    # the same options again (a retried step with the same run id): its summary, untouched
    assert run_etl(str(out), dataset="iris", seed=42) == summary
    assert (out / "manifest.json").read_bytes() == before
    (out.parent / "other").mkdir()
    (out.parent / "other" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        run_etl(str(out.parent / "other"), dataset="iris")
    assert (out.parent / "other" / "notes.txt").read_text() == "mine"


def test_component_writes_report_and_metrics(spark, tmp_path, iris_etl):
    """Calls the kfp component's Python function as kfp.local would (same process)."""
    from kfp import dsl

    from kfp_edge.spark_etl.component import SparkEtlOp
    from kfp_edge.workspace import read_report, run_dir

    metrics = dsl.Metrics(name="metrics", uri=str(tmp_path / "metrics"))
    result = SparkEtlOp.python_func(
        workspace=str(tmp_path / "ws"), run_id="r1", metrics=metrics, dataset="iris", seed=3
    )
    data_dir = run_dir(tmp_path / "ws", "r1") / "data"
    assert result.data_dir == str(data_dir)
    assert dataset.read_manifest(data_dir)["splits"]["test"]["rows"] == 30
    report = read_report(run_dir(tmp_path / "ws", "r1"))
    assert report["etl"]["rows_good"] == 150
    assert metrics.metadata["rows_train"] == 90
    assert metrics.metadata["bad_duplicate_id"] == 0
    # another seed (3, not 42) puts other rows in the test split
    ours = dataset.read_manifest(data_dir)["splits"]["test"]["shards"]
    theirs = dataset.read_manifest(iris_etl[0])["splits"]["test"]["shards"]
    assert [s["sha256"] for s in ours] != [s["sha256"] for s in theirs]
