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


class FakeKfpScheduleApi:
    """The few KFP v2beta1 endpoints ``kfp.Client`` uses to create a recurring run (healthz,
    experiments, recurringruns), refusing what a real server refuses (no pipeline spec, no
    trigger, parameters the pipeline does not declare). Fake KFP API: no KFP server on this
    machine."""

    def __init__(self):
        self.experiments: list[dict] = []
        self.recurring_runs: list[dict] = []
        self.requests: list[tuple[str, str]] = []

    def route(self, method: str, path: str, query: dict, body):
        self.requests.append((method, path))
        if method == "GET" and path == "/apis/v2beta1/healthz":
            return 200, {"multi_user": False}
        if method == "GET" and path == "/apis/v2beta1/experiments":
            wanted = json.loads(query.get("filter", '{"predicates": []}'))["predicates"]
            names = {p.get("stringValue") or p.get("string_value") for p in wanted}
            found = [e for e in self.experiments if not names or e["display_name"] in names]
            return 200, {"experiments": found, "total_size": len(found)}
        if method == "GET" and path.startswith("/apis/v2beta1/experiments/"):
            found = [e for e in self.experiments if e["experiment_id"] == path.rsplit("/", 1)[1]]
            return (200, found[0]) if found else (404, {"error": "no such experiment"})
        if method == "POST" and path == "/apis/v2beta1/experiments":
            experiment = {**body, "experiment_id": f"exp-{len(self.experiments) + 1}"}
            self.experiments.append(experiment)
            return 200, experiment
        if method == "POST" and path == "/apis/v2beta1/recurringruns":
            spec = (body or {}).get("pipeline_spec") or {}
            # With a platform spec (the PVC mounts), kfp.Client sends both, nested.
            spec = spec.get("pipeline_spec", spec)
            if not spec.get("pipelineInfo") or not spec.get("root"):
                return 400, {"error": "recurring run needs a pipeline_spec"}
            trigger = (body.get("trigger") or {}).get("cron_schedule") or {}
            if len(str(trigger.get("cron", "")).split()) != 6:
                return 400, {"error": "cron schedule needs 6 fields"}
            declared = spec["root"].get("inputDefinitions", {}).get("parameters", {})
            given = (body.get("runtime_config") or {}).get("parameters") or {}
            unknown = sorted(set(given) - set(declared))
            if unknown:
                return 400, {"error": f"unknown parameters {unknown}"}
            job = {**body, "recurring_run_id": f"rr-{len(self.recurring_runs) + 1}"}
            self.recurring_runs.append(job)
            return 200, {
                "recurring_run_id": job["recurring_run_id"],
                "display_name": body.get("display_name"),
            }
        return 404, {"error": f"{method} {path} is not part of this fake"}

    def start(self) -> str:
        import http.server
        import threading
        import urllib.parse

        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _handle(self, method: str):
                url = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                status, reply = api.route(
                    method, url.path, dict(urllib.parse.parse_qsl(url.query)), body
                )
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802
                self._handle("GET")

            def do_POST(self):  # noqa: N802
                self._handle("POST")

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self):
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def fake_kfp_schedule():
    """A started :class:`FakeKfpScheduleApi`; ``.url`` is its address."""
    api = FakeKfpScheduleApi()
    api.url = api.start()
    yield api
    api.stop()
