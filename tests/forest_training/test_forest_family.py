"""The random-forest family: Spark MLlib fits, the compiled TFLite model agrees with Spark.

Real libraries throughout: a local SparkSession fits the forests, TensorFlow compiles them and
the LiteRT interpreter runs the compiled model.
"""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kfp_edge.dataset import load_split
from kfp_edge.forest_training.candidates import export_forest_candidates, fit_forests
from kfp_edge.forest_training.forest import parse_config, predict_proba
from kfp_edge.forest_training.tflite_forest import float32_floor
from kfp_edge.variants import read_variants


def write_parquet_dataset(data_dir, x, y, classes, columns):
    """The ETL's Parquet splits and manifest (no TFRecords: the forest family reads Parquet)."""
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    cut = [int(len(y) * 0.6), int(len(y) * 0.8)]
    parts = dict(zip(("train", "validation", "test"), np.split(order, cut), strict=True))
    manifest = {
        "feature_columns": columns,
        "label_column": "label",
        "classes": classes,
        "num_features": len(columns),
        "num_classes": len(classes),
        "splits": {},
    }
    for split, rows in parts.items():
        (data_dir / "parquet" / split).mkdir(parents=True)
        table = {c: x[rows, k].astype(np.float64) for k, c in enumerate(columns)}
        table["label_index"] = y[rows]
        pq.write_table(pa.table(table), data_dir / "parquet" / split / "part-0.parquet")
        manifest["splits"][split] = {"rows": len(rows), "shards": [], "parquet": f"parquet/{split}"}
    (data_dir / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def iris_dir(tmp_path_factory):
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    directory = tmp_path_factory.mktemp("iris")
    write_parquet_dataset(
        directory,
        x,
        y,
        ["setosa", "versicolor", "virginica"],
        ["sepal_length", "sepal_width", "petal_length", "petal_width"],
    )
    return directory


@pytest.fixture(scope="module")
def fitted(spark, iris_dir, tmp_path_factory):
    forests = tmp_path_factory.mktemp("forests")
    summaries = fit_forests(iris_dir, forests, ["8x3", "20x6"], seed=7, spark=spark)
    return forests, summaries


def test_configurations_are_parsed_and_bad_ones_named():
    spec = parse_config("30x6")
    assert (spec.num_trees, spec.max_depth, spec.name) == (30, 6, "random_forest_30x6")
    for bad in ("30", "0x3", "10x17", "x6", "ten x 6"):
        with pytest.raises(ValueError, match=f"forest configuration '{bad}'"):
            parse_config(bad)


def test_no_configuration_fits_nothing_and_starts_no_spark(tmp_path):
    assert fit_forests(tmp_path / "data", tmp_path / "forests", []) == []
    assert not (tmp_path / "forests").exists()


def test_numpy_traversal_reproduces_mllib_exactly(fitted, iris_dir):
    from kfp_edge.forest_training.candidates import load_forest

    forests, summaries = fitted
    x, _ = load_split(iris_dir, "test")
    for summary in summaries:
        arrays, spark_proba = load_forest(forests, summary["name"])
        assert arrays.feature.shape[0] == summary["num_trees"]
        assert arrays.depth <= summary["max_depth"]
        assert np.abs(predict_proba(arrays, x) - spark_proba).max() < 1e-12
        assert spark_proba.sum(axis=1) == pytest.approx(np.ones(len(x)))


def test_compiled_forests_are_variants_that_agree_with_spark(fitted, iris_dir, tmp_path):
    from kfp_edge.litert import TFLiteModel, op_check

    forests, summaries = fitted
    entries = export_forest_candidates(forests, iris_dir, tmp_path)
    assert [e["name"] for e in entries] == sorted(s["name"] for s in summaries)
    assert [e["name"] for e in read_variants(tmp_path)] == [e["name"] for e in entries]
    x, y = load_split(iris_dir, "test")
    for entry in entries:
        assert entry["family"] == "random_forest"
        assert entry["params"]["max_abs_diff_vs_spark"] <= 1e-5
        assert op_check(entry["path"])["ops_ok"]
        proba = TFLiteModel(entry["path"]).predict(x)
        assert (proba.argmax(axis=1) == y).mean() >= 0.9


def test_a_forest_that_disagrees_with_spark_is_refused(fitted, iris_dir, tmp_path):
    forests, summaries = fitted
    name = summaries[0]["name"]
    with np.load(forests / f"{name}.npz") as saved:
        data = {k: saved[k] for k in saved.files}
    data["spark_test_proba"] = data["spark_test_proba"][:, ::-1]  # not what MLlib said
    damaged = tmp_path / "forests"
    damaged.mkdir()
    np.savez(damaged / f"{name}.npz", **data)
    (damaged / f"{name}.json").write_text((forests / f"{name}.json").read_text())
    with pytest.raises(ValueError, match="compiled forest differs from MLlib"):
        export_forest_candidates(damaged, iris_dir, tmp_path / "variants")


def test_thresholds_round_down_so_float32_inputs_take_mllibs_branches():
    rng = np.random.default_rng(3)
    thresholds = rng.normal(size=20_000) * 10.0
    values = (thresholds + rng.normal(size=20_000) * 1e-6).astype(np.float32)
    floor = float32_floor(thresholds)
    assert np.array_equal(values.astype(np.float64) <= thresholds, values <= floor)
    assert np.all(floor.astype(np.float64) <= thresholds)
    assert float32_floor(np.array([np.inf]))[0] == np.inf
