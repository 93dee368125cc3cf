"""Opt-in end to end on a real cluster: submit the edge pipeline, wait, pull the published model.

Run with ``make e2e`` against kind or minikube with KFP, the Training Operator and the Spark
Operator installed as docs/deploy.md says ("End-to-end test"). It needs:

- ``KUBECONFIG``: the cluster (the test reads the TFJob and SparkApplication it leaves);
- ``KF_PIPELINES_ENDPOINT``: the KFP API, e.g. ``http://localhost:8080`` from
  ``kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80``;
- ``KFP_EDGE_S3_ENDPOINT``, ``KFP_EDGE_S3_ACCESS_KEY``, ``KFP_EDGE_S3_SECRET_KEY``: the
  kfp-edge MinIO seen from here (``kubectl port-forward svc/kfp-edge-minio 9000``), to pull
  the published version and check it like a device does;
- optionally ``KFP_EDGE_E2E_NAMESPACE`` (default ``kubeflow``), ``KFP_EDGE_E2E_BUCKET``
  (default ``kfp-edge-e2e``, created if missing) and ``KFP_EDGE_E2E_ETL_ENGINE``
  (``spark-operator`` by default; ``local`` without the Spark Operator).

Without ``KFP_EDGE_E2E=1`` (what ``make e2e`` sets) or without a cluster configured, every test
here is skipped with a line saying what is missing; ``make test`` never reaches a cluster.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

REQUIRED = (
    "KUBECONFIG",
    "KF_PIPELINES_ENDPOINT",
    "KFP_EDGE_S3_ENDPOINT",
    "KFP_EDGE_S3_ACCESS_KEY",
    "KFP_EDGE_S3_SECRET_KEY",
)


def _missing() -> str:
    if os.environ.get("KFP_EDGE_E2E") != "1":
        return "end-to-end test against a cluster: run it with `make e2e` (KFP_EDGE_E2E=1)"
    missing = [name for name in REQUIRED if not os.environ.get(name)]
    if missing:
        return f"no cluster configured for the end-to-end test: set {', '.join(missing)}"
    if not Path(os.environ["KUBECONFIG"].split(os.pathsep)[0]).is_file():
        return f"KUBECONFIG={os.environ['KUBECONFIG']} is not a file"
    return ""


pytestmark = pytest.mark.skipif(bool(_missing()), reason=_missing() or "configured")


@pytest.fixture(scope="module")
def bucket():
    from kfp_edge.s3 import client_from_env

    name = os.environ.get("KFP_EDGE_E2E_BUCKET", "kfp-edge-e2e")
    client = client_from_env()
    if not client.bucket_exists(name):
        client.make_bucket(name)
    return name


def test_edge_pipeline_publishes_a_verified_model(tmp_path, bucket):
    import numpy as np

    from kfp_edge.app.submit import make_client, submit
    from kfp_edge.litert import TFLiteModel
    from kfp_edge.model_store.pull import pull

    namespace = os.environ.get("KFP_EDGE_E2E_NAMESPACE", "kubeflow")
    model_name = f"e2e-{uuid.uuid4().hex[:8]}"
    result = submit(
        host=os.environ["KF_PIPELINES_ENDPOINT"],
        experiment="kfp-edge-e2e",
        resources="cpu-small",
        arguments={
            "epochs": 30,
            "model_name": model_name,
            "training_engine": "kubernetes",
            "etl_engine": os.environ.get("KFP_EDGE_E2E_ETL_ENGINE", "spark-operator"),
            "s3_bucket": bucket,
        },
    )
    client = make_client(os.environ["KF_PIPELINES_ENDPOINT"])
    run = client.wait_for_run_completion(result["run_id"], timeout=3600)
    assert run.state == "SUCCEEDED", f"run {result['url']} ended {run.state}"

    installed = pull(model_name, tmp_path / "device", s3_uri=f"s3://{bucket}/models")
    assert installed["version"] == 1
    tflite = next(Path(installed["path"]).glob("*.tflite"))
    probabilities = TFLiteModel(tflite).predict(np.array([[5.1, 3.5, 1.4, 0.2]], np.float32))
    assert probabilities.shape == (1, 3) and abs(float(probabilities.sum()) - 1) < 1e-3
    _assert_cluster_objects(namespace, result["run_id"])


def _assert_cluster_objects(namespace: str, run_id: str) -> None:
    """The TFJob launcher deleted its job; the SparkApplication stays COMPLETED until its TTL."""
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    from kfp_edge.spark_etl.sparkapp import application_name
    from kfp_edge.tfjob_training.tfjob_spec import job_name

    config.load_kube_config()
    api = client.CustomObjectsApi()
    with pytest.raises(ApiException) as gone:
        api.get_namespaced_custom_object(
            "kubeflow.org", "v1", namespace, "tfjobs", job_name(run_id)
        )
    assert gone.value.status == 404
    if os.environ.get("KFP_EDGE_E2E_ETL_ENGINE", "spark-operator") == "spark-operator":
        app = api.get_namespaced_custom_object(
            "sparkoperator.k8s.io",
            "v1beta2",
            namespace,
            "sparkapplications",
            application_name(run_id),
        )
        assert app["status"]["applicationState"]["state"] == "COMPLETED"
