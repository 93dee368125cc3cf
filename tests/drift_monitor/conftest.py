"""Fixtures of the drift monitor tests: a published Iris model and streams with known drift."""

from __future__ import annotations

import json

import numpy as np
import pytest

IRIS_COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def make_stream(rows: int, drift_at: int | None, seed: int, shift: float = 1.5):
    """Iris-like rows drawn around the Iris class means, with a shift after ``drift_at``.

    Returns a DataFrame with the four Iris feature columns and a ``label`` column of class
    names. From ``drift_at`` on, petal_length moves by ``shift`` training standard deviations
    and the labels of versicolor and virginica swap, so the model's error rate rises too.
    """
    import pandas as pd
    from sklearn.datasets import load_iris

    iris = load_iris()
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=rows)
    means = np.stack([iris.data[iris.target == k].mean(axis=0) for k in range(3)])
    stds = np.stack([iris.data[iris.target == k].std(axis=0) for k in range(3)])
    x = means[y] + rng.normal(size=(rows, 4)) * stds[y]
    labels = y.copy()
    if drift_at is not None:
        x[drift_at:, 2] += shift * iris.data[:, 2].std()
        post = labels[drift_at:]
        labels[drift_at:] = np.where(post == 1, 2, np.where(post == 2, 1, post))
    frame = pd.DataFrame(x.astype(np.float32), columns=IRIS_COLUMNS)
    frame["label"] = np.asarray(iris.target_names)[labels]
    return frame


@pytest.fixture(scope="session")
def published_iris(tmp_path_factory, iris_data_dir):
    """A workspace with model ``iris`` version 1: a tiny tf_keras MLP trained on Iris (with the
    standardization folded in, as the training stage does), converted to .tflite and published in
    the real model store, next to an ETL run directory the version's lineage points to."""
    import shutil

    from kfp_edge.dataset import load_split, read_manifest, read_preprocessing
    from kfp_edge.model_store.store import ModelStore
    from kfp_edge.tf_env import import_tf
    from kfp_edge.workspace import run_dir

    tf, keras = import_tf()
    workspace = tmp_path_factory.mktemp("drift-ws")
    data_dir = run_dir(workspace, "train-1") / "data"
    shutil.copytree(iris_data_dir, data_dir)
    pre = read_preprocessing(data_dir)
    x, y = load_split(data_dir, "train")
    tf.random.set_seed(0)
    model = keras.Sequential(
        [
            keras.layers.Input(shape=(4,)),
            keras.layers.Normalization(mean=pre["mean"], variance=[s * s for s in pre["std"]]),
            keras.layers.Dense(10, activation="sigmoid"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile(keras.optimizers.Adam(0.04), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, epochs=60, batch_size=16, verbose=0)
    tflite = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    model_file = workspace / "model.tflite"
    model_file.write_bytes(tflite)
    manifest = read_manifest(data_dir)
    ModelStore(workspace / "models").publish(
        "iris",
        {
            "model.tflite": str(model_file),
            "preprocessing.json": str(data_dir / "preprocessing.json"),
            "dataset_manifest.json": str(data_dir / "manifest.json"),
        },
        {"variant": "float32", "lineage": {"run_id": "train-1"}},
    )
    model_file.unlink()
    assert json.loads((data_dir / "manifest.json").read_text()) == manifest
    return workspace


@pytest.fixture()
def workspace(tmp_path, published_iris):
    """A fresh copy of the published workspace (monitor state starts empty in every test)."""
    import shutil

    target = tmp_path / "ws"
    shutil.copytree(published_iris, target)
    return target


@pytest.fixture(scope="session")
def make_drift_stream():
    """The stream generator :func:`make_stream` (test modules cannot import conftest)."""
    return make_stream
