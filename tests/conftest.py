"""Shared fixtures: a real local SparkSession and a tiny dataset in the ETL's output contract."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# Spark's Python workers must be this interpreter (it has pyarrow), not the system python3.
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


@pytest.fixture(scope="session")
def spark():
    """A real local SparkSession, shared by the whole test session."""
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("kfp-edge-tests")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "2g")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def write_dataset(data_dir, splits: dict, feature_columns, classes, shards_per_split=2):
    """Writes a dataset in the ETL output contract (see kfp_edge.dataset) with TF's own writer.

    Used by tests of the stages after the ETL, so they do not depend on Spark. ``splits`` maps a
    split name to ``(x float32 [n, F], y int64 [n])``.
    """
    import hashlib

    import pyarrow as pa
    import pyarrow.parquet as pq

    from kfp_edge.tf_env import import_tf

    tf, _ = import_tf()
    data_dir.mkdir(parents=True, exist_ok=True)
    x_train = splits["train"][0]
    preprocessing = {
        "type": "standardize",
        "feature_columns": list(feature_columns),
        "mean": x_train.mean(axis=0).astype(float).tolist(),
        "std": x_train.std(axis=0).astype(float).tolist(),
    }
    manifest = {
        "feature_columns": list(feature_columns),
        "label_column": "label",
        "classes": list(classes),
        "num_features": len(feature_columns),
        "num_classes": len(classes),
        "preprocessing": "preprocessing.json",
        "splits": {},
    }
    for split, (x, y) in splits.items():
        (data_dir / split).mkdir(exist_ok=True)
        shards = []
        for i, idx in enumerate(np.array_split(np.arange(len(y)), shards_per_split)):
            rel = f"{split}/part-{i:05d}.tfrecord"
            with tf.io.TFRecordWriter(str(data_dir / rel)) as w:
                for j in idx:
                    ex = tf.train.Example(
                        features=tf.train.Features(
                            feature={
                                "features": tf.train.Feature(
                                    float_list=tf.train.FloatList(value=x[j].tolist())
                                ),
                                "label": tf.train.Feature(
                                    int64_list=tf.train.Int64List(value=[int(y[j])])
                                ),
                            }
                        )
                    )
                    w.write(ex.SerializeToString())
            digest = hashlib.sha256((data_dir / rel).read_bytes()).hexdigest()
            shards.append({"path": rel, "rows": int(len(idx)), "sha256": digest})
        parquet_dir = data_dir / "parquet" / split
        parquet_dir.mkdir(parents=True, exist_ok=True)
        table = pa.table(
            {**{c: x[:, k] for k, c in enumerate(feature_columns)}, "label_index": y}
        )
        pq.write_table(table, parquet_dir / "part-00000.parquet")
        manifest["splits"][split] = {
            "rows": int(len(y)),
            "shards": shards,
            "parquet": f"parquet/{split}",
        }
    (data_dir / "preprocessing.json").write_text(json.dumps(preprocessing, indent=2))
    (data_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return data_dir


@pytest.fixture(scope="session")
def iris_data_dir(tmp_path_factory):
    """Iris (scikit-learn's copy) split 60/20/20 by a fixed seed, in the ETL output contract."""
    from sklearn.datasets import load_iris

    iris = load_iris()
    x = iris.data.astype(np.float32)
    y = iris.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order], y[order]
    splits = {"train": (x[:90], y[:90]), "validation": (x[90:120], y[90:120]), "test": (x[120:], y[120:])}
    columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    return write_dataset(
        tmp_path_factory.mktemp("iris") / "data", splits, columns, list(iris.target_names)
    )
