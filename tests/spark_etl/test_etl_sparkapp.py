"""The SparkApplication (sparkoperator.k8s.io/v1beta2): golden manifest, submit and wait.

The submit-and-wait tests use a fake Kubernetes API: there is no cluster on this machine. It is a
small HTTP server on loopback that the real ``kubernetes`` client talks to; it stores the
created SparkApplication and plays the operator's part by running the application's own
arguments through the ETL entry point (``etl.main``) in this process, on the test's local
SparkSession, before it reports COMPLETED.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from kfp_edge import dataset
from kfp_edge.app.golden import GOLDEN_DIR, manifests
from kfp_edge.spark_etl.sparkapp import (
    SparkApplicationError,
    application_name,
    build_spark_application,
    run_on_operator,
    submit_and_wait,
)

GOLDEN = GOLDEN_DIR / "manifests" / "sparkapplication.yaml"


def test_golden_manifest_keeps_secrets_out():
    manifest = yaml.safe_load(GOLDEN.read_text())
    assert manifest["metadata"]["name"] == "kfp-edge-etl-edge-2026-11-23-run"
    assert manifest["spec"]["executor"]["instances"] == 3
    env = manifest["spec"]["driver"]["env"]
    assert all("valueFrom" in e for e in env if e["name"].endswith(("ACCESS_KEY", "SECRET_KEY")))
    assert "secret" not in json.dumps(manifest["spec"]["arguments"]).lower()


def test_manifest_is_valid_for_kubernetes_names_and_resources():
    with pytest.raises(ValueError, match="executor_instances"):
        build_spark_application(
            name="x",
            namespace="n",
            image="i",
            output_dir="/o",
            options={},
            workspace_pvc="p",
            executor_instances=0,
        )
    assert len(application_name("r" * 200)) <= 63


class _FakeKubernetesApi(BaseHTTPRequestHandler):
    """Fake Kubernetes API (no cluster on this machine): stores SparkApplications."""

    apps: dict = {}
    deleted: list = []
    script: list = []  # states reported on successive GETs
    on_create = None

    def _send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        expected = "/apis/sparkoperator.k8s.io/v1beta2/namespaces/kubeflow/sparkapplications"
        if self.path != expected:
            return self._send(404, {"kind": "Status", "code": 404})
        name = body["metadata"]["name"]
        if name in self.apps:
            return self._send(409, {"kind": "Status", "code": 409, "reason": "AlreadyExists"})
        self.apps[name] = body
        if type(self).on_create:
            type(self).on_create(body)
        return self._send(201, body)

    def do_GET(self):  # noqa: N802
        name = self.path.rsplit("/", 1)[-1]
        if name not in self.apps:
            return self._send(404, {"kind": "Status", "code": 404})
        state = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        body = dict(self.apps[name])
        if state:
            body["status"] = {"applicationState": {"state": state, "errorMessage": "boom"}}
        return self._send(200, body)

    def do_DELETE(self):  # noqa: N802 - like the API server: 404 for a missing object
        name = self.path.rsplit("/", 1)[-1]
        if self.apps.pop(name, None) is None:
            return self._send(404, {"kind": "Status", "code": 404})
        type(self).deleted.append(name)
        return self._send(200, {"kind": "Status", "status": "Success"})

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_api():
    from kubernetes import client

    _FakeKubernetesApi.apps = {}
    _FakeKubernetesApi.deleted = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeKubernetesApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    config = client.Configuration()
    config.host = f"http://127.0.0.1:{server.server_address[1]}"
    yield client.CustomObjectsApi(client.ApiClient(config))
    server.shutdown()
    _FakeKubernetesApi.on_create = None


def test_run_on_operator_runs_the_manifest_arguments(spark, tmp_path, fake_api):
    from kfp_edge.spark_etl.etl import main

    def operator(app):  # what the driver pod would run: spark-submit <main file> <arguments>
        assert app["spec"]["mainApplicationFile"].endswith("kfp_edge/spark_etl/etl.py")
        main(app["spec"]["arguments"])

    _FakeKubernetesApi.on_create = staticmethod(operator)
    _FakeKubernetesApi.script = ["", "SUBMITTED", "RUNNING", "COMPLETED"]
    out = tmp_path / "runs" / "r7" / "data"
    summary = run_on_operator(
        str(out),
        {"dataset": "iris", "seed": 5, "window_seconds": None},
        run_id="r7",
        api=fake_api,
        poll_seconds=0.01,
        workspace_mount=str(tmp_path),
        executor_instances=2,
    )
    assert summary["rows_per_split"] == {"train": 90, "validation": 30, "test": 30}
    assert dataset.read_manifest(out)["seed"] == 5
    app = _FakeKubernetesApi.apps["kfp-edge-etl-r7"]
    assert app["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "kfp-edge-workspace"
    assert app["spec"]["driver"]["volumeMounts"][0]["mountPath"] == str(tmp_path)


def test_failed_application_raises_with_operator_message(fake_api):
    _FakeKubernetesApi.script = ["RUNNING", "FAILED"]
    manifest = manifests.sparkapplication()
    with pytest.raises(SparkApplicationError, match="FAILED: boom"):
        submit_and_wait(manifest, fake_api, poll_seconds=0.01, log=lambda m: None)


def test_wait_times_out(fake_api):
    _FakeKubernetesApi.script = ["RUNNING"]
    with pytest.raises(SparkApplicationError, match="not finished after 0.05 s"):
        submit_and_wait(
            manifests.sparkapplication(),
            fake_api,
            timeout_seconds=0.05,
            poll_seconds=0.01,
            log=lambda m: None,
        )


def test_timeout_deletes_the_application(fake_api):
    _FakeKubernetesApi.script = ["RUNNING"]
    manifest = manifests.sparkapplication()
    with pytest.raises(SparkApplicationError, match="not finished"):
        submit_and_wait(manifest, fake_api, timeout_seconds=0.05, poll_seconds=0.01, log=print)
    assert _FakeKubernetesApi.deleted == [manifest["metadata"]["name"]]


def test_resubmission_adopts_a_running_application(fake_api):
    manifest = manifests.sparkapplication()
    name = manifest["metadata"]["name"]
    _FakeKubernetesApi.apps[name] = {**manifest, "metadata": {**manifest["metadata"], "uid": "1"}}
    _FakeKubernetesApi.script = ["RUNNING", "COMPLETED"]
    logs = []
    submit_and_wait(manifest, fake_api, poll_seconds=0.01, log=logs.append)
    assert _FakeKubernetesApi.apps[name]["metadata"]["uid"] == "1"  # the same object
    assert any("adopting it" in line for line in logs)
    assert _FakeKubernetesApi.deleted == []


def test_resubmission_replaces_a_failed_application(fake_api):
    manifest = manifests.sparkapplication()
    name = manifest["metadata"]["name"]
    _FakeKubernetesApi.apps[name] = {**manifest, "metadata": {**manifest["metadata"], "uid": "1"}}
    _FakeKubernetesApi.script = ["FAILED", "COMPLETED"]  # the old one failed, the new one works
    submit_and_wait(manifest, fake_api, poll_seconds=0.01, log=lambda m: None)
    assert _FakeKubernetesApi.deleted == [name]
    assert "uid" not in _FakeKubernetesApi.apps[name]["metadata"]  # created anew


def test_cancelled_step_deletes_the_application(fake_api):
    """kfp cancels a run by stopping the step's pod (SIGTERM): the Spark pods must go too."""
    import os
    import signal

    from kfp_edge.spark_etl.sparkapp import StepCancelled

    _FakeKubernetesApi.script = ["RUNNING"]
    manifest = manifests.sparkapplication()
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    with pytest.raises(StepCancelled):
        submit_and_wait(manifest, fake_api, timeout_seconds=30, poll_seconds=0.01, log=print)
    assert _FakeKubernetesApi.deleted == [manifest["metadata"]["name"]]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is restored


def test_main_application_file_is_where_the_spark_image_installs_kfp_edge():
    """docker/spark/Dockerfile's venv, Python and entrypoint match what the manifest expects."""
    from kfp_edge.app.golden import ROOT
    from kfp_edge.spark_etl import sparkapp

    dockerfile = (ROOT / "docker" / "spark" / "Dockerfile").read_text()
    venv = sparkapp.IMAGE_SITE_PACKAGES.split("/lib/")[0]
    python = sparkapp.IMAGE_SITE_PACKAGES.split("/lib/")[1].split("/")[0]
    assert f"python -m venv {venv}" in dockerfile
    assert f"PYTHON_BASE=python:{python.removeprefix('python')}." in dockerfile
    assert f"SPARK_HOME={sparkapp.IMAGE_SITE_PACKAGES}/pyspark" in dockerfile
    assert 'ENTRYPOINT ["/opt/kfp-edge/entrypoint.sh"]' in dockerfile
    main_file = sparkapp.MAIN_APPLICATION_FILE.removeprefix("local://")
    relative = main_file.removeprefix(sparkapp.IMAGE_SITE_PACKAGES + "/kfp_edge/")
    assert (ROOT / "components" / relative).is_file()  # the package maps kfp_edge to components/
