"""Shared fixtures: a real local SparkSession and a tiny dataset in the ETL's output contract."""

from __future__ import annotations

import json
import os
import sys
import urllib.parse

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
        table = pa.table({**{c: x[:, k] for k, c in enumerate(feature_columns)}, "label_index": y})
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
    splits = {
        "train": (x[:90], y[:90]),
        "validation": (x[90:120], y[90:120]),
        "test": (x[120:], y[120:]),
    }
    columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    return write_dataset(
        tmp_path_factory.mktemp("iris") / "data", splits, columns, list(iris.target_names)
    )


@pytest.fixture(scope="session")
def iris_saved_model(iris_data_dir, tmp_path_factory):
    """A 4-16-3 MLP with the preprocessing folded in, trained on Iris, as a tf_keras SavedModel."""
    from kfp_edge.dataset import load_split
    from kfp_edge.tf_env import import_tf
    from kfp_edge.tfjob_training.models import build_model

    tf, keras = import_tf()
    tf.keras.utils.set_random_seed(1)
    x, y = load_split(iris_data_dir, "train")
    model = build_model("mlp", 4, 3, x.mean(0).tolist(), x.std(0).tolist(), width=16, depth=1)
    model.compile(keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, epochs=60, batch_size=16, verbose=0)
    path = tmp_path_factory.mktemp("saved_model") / "saved_model"
    model.save(str(path), save_format="tf", include_optimizer=False)
    x_test, y_test = load_split(iris_data_dir, "test")
    accuracy = float((model.predict(x_test, verbose=0).argmax(1) == y_test).mean())
    assert accuracy >= 0.9, f"the test model itself is too weak: {accuracy}"
    return path


class FakeKfpApi:
    """A fake Kubeflow Pipelines REST API (v2beta1) on 127.0.0.1: no KFP server exists here.

    It implements only what ``kfp.Client`` calls to create a run or a recurring run (healthz,
    list, get and create experiments, create runs and recurring runs), checks what a real
    server would refuse (a missing or wrong bearer token when one is required, a run without a
    pipeline spec, parameters the pipeline does not declare, a cron without 6 fields), and
    records every request. Anything else gets a 404.
    """

    def __init__(
        self, token: str | None = None, multi_user: bool = False, tag_name: str = "2.15.0"
    ):
        self.token = token
        self.multi_user = multi_user
        self.tag_name = tag_name  # the server's release, as its healthz reports it
        self.requests: list[dict] = []
        self.experiments: list[dict] = []
        self.runs: list[dict] = []
        self.recurring_runs: list[dict] = []
        self.run_states = ["PENDING"]
        self._server = None

    def start(self) -> str:
        import http.server
        import threading

        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _reply(self, status: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str):
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null") if length else None
                record = {
                    "method": method,
                    "path": url.path,
                    "query": query,
                    "body": body,
                    "authorization": self.headers.get("Authorization"),
                }
                api.requests.append(record)
                if api.token and record["authorization"] != f"Bearer {api.token}":
                    return self._reply(401, {"error": "unauthenticated", "code": 16})
                status, reply = api.route(method, url.path, query, body)
                return self._reply(status, reply)

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

    def route(self, method: str, path: str, query: dict, body):
        if method == "GET" and path == "/apis/v2beta1/healthz":
            # What the API server's handler writes (backend/src/apiserver/main.go).
            return 200, {
                "commit_sha": "0" * 40,
                "tag_name": self.tag_name,
                "multi_user": self.multi_user,
            }
        if method == "GET" and path == "/apis/v2beta1/experiments":
            wanted = json.loads(query.get("filter", '{"predicates": []}'))["predicates"]
            names = {p["stringValue"] for p in wanted if p["key"] == "display_name"}
            found = [
                e
                for e in self.experiments
                if (not names or e["display_name"] in names)
                and e.get("namespace") == query.get("namespace", e.get("namespace"))
            ]
            return 200, {"experiments": found, "total_size": len(found)}
        if method == "POST" and path == "/apis/v2beta1/experiments":
            if not body or not body.get("display_name"):
                return 400, {"error": "experiment needs a display_name"}
            experiment = {**body, "experiment_id": f"exp-{len(self.experiments) + 1}"}
            self.experiments.append(experiment)
            return 200, experiment
        if method == "GET" and path.startswith("/apis/v2beta1/experiments/"):
            found = [e for e in self.experiments if e["experiment_id"] == path.rsplit("/", 1)[1]]
            return (200, found[0]) if found else (404, {"error": "no such experiment"})
        if method == "POST" and path in ("/apis/v2beta1/runs", "/apis/v2beta1/recurringruns"):
            refused = self._refusal(body)
            if refused:
                return 400, {"error": refused}
            if body.get("experiment_id") not in {e["experiment_id"] for e in self.experiments}:
                return 404, {"error": f"experiment {body.get('experiment_id')} not found"}
        if method == "POST" and path == "/apis/v2beta1/recurringruns":
            trigger = (body.get("trigger") or {}).get("cron_schedule") or {}
            if len(str(trigger.get("cron", "")).split()) != 6:
                return 400, {"error": "cron schedule needs 6 fields"}
            job = {**body, "recurring_run_id": f"rr-{len(self.recurring_runs) + 1}"}
            self.recurring_runs.append(job)
            return 200, {
                "recurring_run_id": job["recurring_run_id"],
                "display_name": body.get("display_name"),
            }
        if method == "POST" and path == "/apis/v2beta1/runs":
            run = {
                "run_id": f"run-{len(self.runs) + 1:04d}",
                "display_name": body.get("display_name"),
                "experiment_id": body["experiment_id"],
                "state": "PENDING",
            }
            self.runs.append({**body, **run})
            return 200, run
        if method == "GET" and path.startswith("/apis/v2beta1/runs/"):
            found = [r for r in self.runs if r["run_id"] == path.rsplit("/", 1)[1]]
            if not found:
                return 404, {"error": "no such run"}
            # A run moves through run_states, one per look, and stays in the last one.
            state = self.run_states.pop(0) if len(self.run_states) > 1 else self.run_states[0]
            return 200, {**found[0], "state": state}
        return 404, {"error": f"{method} {path} is not part of this fake"}

    @staticmethod
    def _refusal(body) -> str | None:
        """Why a real server would refuse this run: no pipeline spec, undeclared parameters."""
        spec = (body or {}).get("pipeline_spec") or {}
        spec = spec.get("pipeline_spec", spec)  # with kfp-kubernetes settings: both, nested
        if not spec.get("pipelineInfo") or not spec.get("root"):
            return "run needs a pipeline_spec with pipelineInfo and root"
        declared = spec["root"].get("inputDefinitions", {}).get("parameters", {})
        given = (body.get("runtime_config") or {}).get("parameters") or {}
        unknown = sorted(set(given) - set(declared))
        return f"unknown parameters {unknown}" if unknown else None


@pytest.fixture
def fake_kfp():
    """A started :class:`FakeKfpApi`; ``fake_kfp.url`` is its address."""
    api = FakeKfpApi()
    api.url = api.start()
    yield api
    api.stop()


# -- S3: one server for every S3 test (model store, pull, ETL input) ------------------------------
# KFP_EDGE_TEST_S3_ENDPOINT / _ACCESS_KEY / _SECRET_KEY (/ _REGION) point the tests at a running
# S3 server (.ci/run does so with Ceph RGW, tests/ceph_rgw.sh); unset, moto's server is started
# on 127.0.0.1. Each test gets its own bucket, emptied and deleted afterwards.
TEST_S3_ENV = "KFP_EDGE_TEST_S3_"


@pytest.fixture(scope="session")
def s3_server():
    """``(endpoint, access key, secret key, region)`` of the S3 server the tests use."""
    if os.environ.get(TEST_S3_ENV + "ENDPOINT"):
        yield (
            os.environ[TEST_S3_ENV + "ENDPOINT"],
            os.environ[TEST_S3_ENV + "ACCESS_KEY"],
            os.environ[TEST_S3_ENV + "SECRET_KEY"],
            os.environ.get(TEST_S3_ENV + "REGION", "us-east-1"),
        )
        return
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}", "kfp-edge-test-access", "kfp-edge-test-secret", "us-east-1"
    server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """Sets the KFP_EDGE_S3_* variables for the test server and returns them."""
    endpoint, access, secret, region = s3_server
    env = {
        "KFP_EDGE_S3_ENDPOINT": endpoint,
        "KFP_EDGE_S3_ACCESS_KEY": access,
        "KFP_EDGE_S3_SECRET_KEY": secret,
        "KFP_EDGE_S3_REGION": region,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def bucket(s3_env):
    """A fresh bucket on the test server; returns ``(client, bucket_name)``; deleted after."""
    import uuid

    from kfp_edge.s3 import client_from_env

    client = client_from_env()
    name = f"kfp-edge-test-{uuid.uuid4().hex[:12]}"
    client.make_bucket(name)
    yield client, name
    for obj in client.list_objects(name, recursive=True):
        client.remove_object(name, obj.object_name)
    client.remove_bucket(name)


@pytest.fixture(scope="session")
def edge_cli_run(tmp_path_factory):
    """One real ``kfp-edge run`` on Iris through the console script, its output piped.

    Shared by the end-to-end checks of the pipeline and of what the command prints, so the
    suite trains the edge pipeline once. Returns the completed process, the run directory and
    the run's summary in the shape of ``run_local``'s result.
    """
    import os
    import subprocess
    import sys
    from pathlib import Path

    from kfp_edge.workspace import read_report

    workspace = tmp_path_factory.mktemp("edge-cli-ws")
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TERM")}
    command = [str(Path(sys.executable).with_name("kfp-edge")), "run", "--dataset", "iris"]
    command += ["--workspace", str(workspace), "--run-id", "e2e-iris", "--workers", "2"]
    # the second model family joins the candidates, and a search of two trials in parallel
    # takes the place of the single training job
    command += ["--param", "forest_configs=[10x4]", "--param", "search_algorithm=grid"]
    command += [
        "--param",
        "search_space={learning_rate: {type: categorical, values: [0.04, 0.02]}}",
    ]
    command += ["--param", "search_max_trials=2", "--param", "search_parallel_trials=2"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1200)
    run_dir = workspace / "runs" / "e2e-iris"
    report = read_report(run_dir)
    publish = report.get("publish") or {}
    result = {
        "run_id": "e2e-iris",
        "run_dir": str(run_dir),
        "report": report,
        "published": bool(publish) and done.returncode == 0,
        "model_dir": publish.get("model_dir"),
        "error": None if done.returncode == 0 else done.stdout[-2000:] + done.stderr[-2000:],
    }
    return done, run_dir, result
