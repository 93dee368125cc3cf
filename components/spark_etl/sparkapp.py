"""Scale-out: the ETL as a SparkApplication of the Kubeflow Spark Operator (v1beta2).

The component's ``spark-operator`` engine builds a ``SparkApplication`` from its parameters
(:func:`build_spark_application`), creates it through the Kubernetes API and waits until the
operator reports it finished (:func:`submit_and_wait`). The driver runs
``kfp_edge/spark_etl/etl.py`` (:func:`kfp_edge.spark_etl.etl.main`) with the same options as the
local engine; driver and executors mount the workspace PVC at the same path as the kfp step, so
the shards land on the volume and the step reads the summary from there.

S3 credentials never appear in the manifest: with ``s3_secret`` the driver gets them from that
Kubernetes Secret (keys ``accesskey``/``secretkey``) through ``secretKeyRef``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

GROUP = "sparkoperator.k8s.io"
VERSION = "v1beta2"
PLURAL = "sparkapplications"
SPARK_VERSION = "4.3.0"  # the pyspark pinned in pyproject.toml
#: Where the kfp-edge Spark image has the package (pip install into /usr/local).
MAIN_APPLICATION_FILE = "local:///usr/local/lib/python3.11/site-packages/kfp_edge/spark_etl/etl.py"
WORKSPACE_VOLUME = "workspace"
FINAL_STATES = ("COMPLETED", "FAILED", "SUBMISSION_FAILED")


class SparkApplicationError(RuntimeError):
    """The SparkApplication failed, or did not finish in time."""


def application_name(run_id: str) -> str:
    """A valid Kubernetes name for the run's ETL application (lower case, at most 63 chars)."""
    cleaned = "".join(c if c.isalnum() or c == "-" else "-" for c in run_id.lower()).strip("-")
    return f"kfp-edge-etl-{cleaned}"[:63].rstrip("-")


def build_spark_application(
    *,
    name: str,
    namespace: str,
    image: str,
    output_dir: str,
    options: dict,
    workspace_pvc: str,
    workspace_mount: str = "/workspace",
    driver_cores: int = 1,
    driver_memory: str = "2g",
    executor_cores: int = 1,
    executor_memory: str = "2g",
    executor_instances: int = 2,
    service_account: str = "spark",
    main_application_file: str = MAIN_APPLICATION_FILE,
    s3_secret: str = "",
    s3_endpoint: str = "",
) -> dict:
    """Builds the SparkApplication manifest of one ETL run.

    Args:
        name: Application name.
        namespace: Its namespace.
        image: Image with PySpark and kfp-edge (the kfp-edge Spark image).
        output_dir: The ETL output directory on the workspace volume.
        options: Keyword arguments of :func:`kfp_edge.spark_etl.etl.run_etl` (JSON-able).
        workspace_pvc: Claim name of the workspace PVC.
        workspace_mount: Where the PVC is mounted (the same path as in the kfp step).
        driver_cores: Driver cores.
        driver_memory: Driver memory (Spark notation, e.g. ``2g``).
        executor_cores: Cores per executor.
        executor_memory: Memory per executor.
        executor_instances: Number of executors.
        service_account: Service account of the driver (it creates the executor pods).
        main_application_file: The ETL entry point inside the image.
        s3_secret: Secret with ``accesskey``/``secretkey`` for s3:// input; empty for none.
        s3_endpoint: S3 endpoint URL passed to the driver (not a secret).

    Returns:
        The manifest as a dict.
    """
    if executor_instances < 1 or executor_cores < 1 or driver_cores < 1:
        raise ValueError("driver_cores, executor_cores and executor_instances must be >= 1")
    labels = {"app.kubernetes.io/part-of": "kfp-edge", "app.kubernetes.io/component": "etl"}
    mounts = [{"name": WORKSPACE_VOLUME, "mountPath": workspace_mount}]
    driver = {
        "cores": driver_cores,
        "memory": driver_memory,
        "serviceAccount": service_account,
        "labels": dict(labels),
        "volumeMounts": [dict(m) for m in mounts],
    }
    if s3_secret:
        from kfp_edge.s3 import ENV_ENDPOINT, SECRET_KEY_TO_ENV

        env = [
            {"name": var, "valueFrom": {"secretKeyRef": {"name": s3_secret, "key": key}}}
            for key, var in sorted(SECRET_KEY_TO_ENV.items())
        ]
        if s3_endpoint:
            env.append({"name": ENV_ENDPOINT, "value": s3_endpoint})
        driver["env"] = env
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SparkApplication",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "type": "Python",
            "pythonVersion": "3",
            "mode": "cluster",
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            "mainApplicationFile": main_application_file,
            "arguments": [
                "--output-dir",
                output_dir,
                "--options",
                json.dumps(options, sort_keys=True),
            ],
            "sparkVersion": SPARK_VERSION,
            "sparkConf": {
                "spark.ui.showConsoleProgress": "false",
                "spark.sql.execution.arrow.pyspark.enabled": "true",
            },
            "restartPolicy": {"type": "Never"},
            "volumes": [
                {"name": WORKSPACE_VOLUME, "persistentVolumeClaim": {"claimName": workspace_pvc}}
            ],
            "driver": driver,
            "executor": {
                "cores": executor_cores,
                "instances": executor_instances,
                "memory": executor_memory,
                "labels": dict(labels),
                "volumeMounts": [dict(m) for m in mounts],
            },
        },
    }


def to_yaml(manifest: dict) -> str:
    """Renders a manifest as YAML (stable key order, for golden files)."""
    return yaml.safe_dump(manifest, sort_keys=True, default_flow_style=False)


def submit_and_wait(
    manifest: dict,
    api=None,
    *,
    timeout_seconds: float = 3600,
    poll_seconds: float = 5.0,
    log=print,
) -> dict:
    """Creates the SparkApplication and waits for the operator to finish it.

    Args:
        manifest: From :func:`build_spark_application`.
        api: A ``kubernetes.client.CustomObjectsApi``; ``None`` loads the in-cluster
            configuration (or ``~/.kube/config`` outside a cluster).
        timeout_seconds: Give up after this long.
        poll_seconds: Interval between status reads.
        log: Where state changes are reported.

    Returns:
        The application's final ``status``.

    Raises:
        SparkApplicationError: If it failed (with the operator's error message) or timed out.
    """
    if api is None:
        from kubernetes import client, config

        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        api = client.CustomObjectsApi()
    name = manifest["metadata"]["name"]
    namespace = manifest["metadata"]["namespace"]
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest)
    log(f"created SparkApplication {namespace}/{name}")
    deadline = time.monotonic() + timeout_seconds
    last = None
    while True:
        obj = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        status = obj.get("status") or {}
        state = (status.get("applicationState") or {}).get("state", "")
        if state != last:
            log(f"SparkApplication {name}: {state or 'PENDING'}")
            last = state
        if state == "COMPLETED":
            return status
        if state in FINAL_STATES:
            message = (status.get("applicationState") or {}).get("errorMessage", "")
            raise SparkApplicationError(f"SparkApplication {namespace}/{name} {state}: {message}")
        if time.monotonic() >= deadline:
            raise SparkApplicationError(
                f"SparkApplication {namespace}/{name} not finished after {timeout_seconds} s "
                f"(state {state or 'PENDING'})"
            )
        time.sleep(poll_seconds)


def run_on_operator(
    output_dir: str,
    options: dict,
    *,
    run_id: str,
    image: str = "",
    namespace: str = "kubeflow",
    workspace_pvc: str = "kfp-edge-workspace",
    workspace_mount: str = "/workspace",
    api=None,
    timeout_seconds: float = 3600,
    poll_seconds: float = 5.0,
    s3_secret: str = "",
    **resources,
) -> dict:
    """Runs the ETL as a SparkApplication and returns its summary (read from the volume).

    Args:
        output_dir: The ETL output directory on the workspace volume.
        options: Keyword arguments of :func:`kfp_edge.spark_etl.etl.run_etl`.
        run_id: The pipeline run id (names the application).
        image: Spark image; empty for the kfp-edge Spark image.
        namespace: Namespace of the application.
        workspace_pvc: Claim name of the workspace PVC.
        workspace_mount: Mount path of the workspace in this step and in the Spark pods.
        api: ``CustomObjectsApi`` to use (``None``: from the cluster configuration).
        timeout_seconds: How long to wait.
        poll_seconds: Interval between status reads.
        s3_secret: Secret with the S3 credentials for s3:// input.
        **resources: ``driver_cores``, ``driver_memory``, ``executor_cores``,
            ``executor_memory``, ``executor_instances``.

    Returns:
        The ETL summary the driver wrote to ``<output_dir>/etl_summary.json``.
    """
    import os

    from kfp_edge.images import SPARK_IMAGE
    from kfp_edge.spark_etl.etl import SUMMARY_FILE

    manifest = build_spark_application(
        name=application_name(run_id),
        namespace=namespace,
        image=image or SPARK_IMAGE,
        output_dir=output_dir,
        options={k: v for k, v in options.items() if v is not None},
        workspace_pvc=workspace_pvc,
        workspace_mount=workspace_mount,
        s3_secret=s3_secret,
        s3_endpoint=os.environ.get("KFP_EDGE_S3_ENDPOINT", "") if s3_secret else "",
        **resources,
    )
    submit_and_wait(manifest, api, timeout_seconds=timeout_seconds, poll_seconds=poll_seconds)
    summary_path = Path(output_dir) / SUMMARY_FILE
    if not summary_path.exists():
        raise SparkApplicationError(
            f"SparkApplication {manifest['metadata']['name']} completed but {summary_path} is "
            "missing: is the workspace PVC mounted at the same path in the Spark pods?"
        )
    return json.loads(summary_path.read_text())
