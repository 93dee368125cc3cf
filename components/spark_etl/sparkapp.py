"""Scale-out: the ETL as a SparkApplication of the Kubeflow Spark Operator (v1beta2).

The component's ``spark-operator`` engine builds a ``SparkApplication`` from its parameters
(:func:`build_spark_application`), creates it through the Kubernetes API and waits until the
operator reports it finished (:func:`submit_and_wait`). The driver runs
``kfp_edge/spark_etl/etl.py`` (:func:`kfp_edge.spark_etl.etl.main`) with the same options as the
local engine; driver and executors mount the workspace PVC at the same path as the kfp step, so
the shards land on the volume and the step reads the summary from there.

S3 credentials never appear in the manifest: with ``s3_secret`` the driver gets them from that
Kubernetes Secret (keys ``accesskey``/``secretkey``) through ``secretKeyRef``.

Checked against the Spark Operator v2.5.2 (its SparkApplication CRD schema is vendored in the
tests): the operator's *mutating webhook* is what adds the PVC volumes and the Secret env to the
driver and executor pods (install the chart with ``webhook.enable=true``, the default in v2);
the pods call the image's entrypoint with ``driver``/``executor`` (docker/spark/entrypoint.sh);
``timeToLiveSeconds`` lets the operator delete a finished application. A resubmission (409: the
same run's application exists) adopts a running or completed application and replaces a failed
one, as the TFJob launcher does; cancelling the step (SIGTERM) or a timeout deletes it.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import yaml

from kfp_edge import pod_spec
from kfp_edge.spark_etl.config import EtlConfig

GROUP = "sparkoperator.k8s.io"
VERSION = "v1beta2"
PLURAL = "sparkapplications"
SPARK_VERSION = "4.3.0"  # the pyspark pinned in pyproject.toml
#: Where docker/spark/Dockerfile installs kfp-edge (its virtual environment, Python 3.11).
IMAGE_SITE_PACKAGES = "/opt/venv/lib/python3.11/site-packages"
MAIN_APPLICATION_FILE = f"local://{IMAGE_SITE_PACKAGES}/kfp_edge/spark_etl/etl.py"
WORKSPACE_VOLUME = "workspace"
FAILED_STATES = ("FAILED", "SUBMISSION_FAILED")
FINAL_STATES = ("COMPLETED", *FAILED_STATES)


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
    service_account: str = EtlConfig.service_account,
    main_application_file: str = MAIN_APPLICATION_FILE,
    s3_secret: str = "",
    s3_endpoint: str = "",
    time_to_live_seconds: int | None = EtlConfig.time_to_live_seconds,
    pod_settings: dict | None = None,
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
        time_to_live_seconds: The operator deletes the application this long after it
            finished (None: never).
        pod_settings: The ``etl`` step spec's placement fields (:func:`kfp_edge.resources.
            spark_pod_settings`): node selector, tolerations, affinity, labels and image pull
            secrets of the driver and executor pods.

    Returns:
        The manifest as a dict.
    """
    if executor_instances < 1 or executor_cores < 1 or driver_cores < 1:
        raise ValueError("driver_cores, executor_cores and executor_instances must be >= 1")
    settings = pod_settings or {}
    labels = {"app.kubernetes.io/part-of": "kfp-edge", "app.kubernetes.io/component": "etl"}
    driver = {
        "cores": driver_cores,
        "memory": driver_memory,
        "serviceAccount": service_account,
        **_spark_pod(labels, workspace_mount, settings),
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
    spec_extra: dict = {}
    if settings.get("image_pull_secrets"):
        spec_extra["imagePullSecrets"] = list(settings["image_pull_secrets"])
    if time_to_live_seconds is not None:
        spec_extra["timeToLiveSeconds"] = int(time_to_live_seconds)
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
                **_spark_pod(labels, workspace_mount, settings),
            },
            **spec_extra,
        },
    }


def _spark_pod(labels: dict, workspace_mount: str, settings: dict) -> dict:
    """Fields shared by the driver and the executors (SparkPodSpec of v1beta2)."""
    placement = pod_spec.scheduling_fields(settings)
    placement.pop("imagePullSecrets", None)  # spec-level in a SparkApplication
    return {
        "labels": {**(settings.get("labels") or {}), **labels},
        "volumeMounts": [{"name": WORKSPACE_VOLUME, "mountPath": workspace_mount}],
        "podSecurityContext": pod_spec.pod_security_context(),
        "securityContext": pod_spec.container_security_context(),
        **placement,
    }


def to_yaml(manifest: dict) -> str:
    """Renders a manifest as YAML (stable key order, for golden files)."""
    return yaml.safe_dump(manifest, sort_keys=True, default_flow_style=False)


def _custom_objects_api(api=None):
    if api is not None:
        return api
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.CustomObjectsApi()


def _state(obj: dict) -> tuple[str, str]:
    state = ((obj.get("status") or {}).get("applicationState")) or {}
    return state.get("state", ""), state.get("errorMessage", "")


def delete_application(api, namespace: str, name: str, log=print) -> None:
    """Deletes a SparkApplication (and so its pods); a missing one is fine."""
    from kubernetes.client.exceptions import ApiException

    try:
        api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        log(f"deleted SparkApplication {namespace}/{name}")
    except ApiException as exc:
        if exc.status != 404:
            raise


def create_or_adopt(api, manifest: dict, *, log=print, retry_seconds: float = 60.0) -> bool:
    """Creates the application; on 409 adopts the existing one unless it failed (then replaces).

    Returns:
        True when an existing application was adopted.
    """
    from kubernetes.client.exceptions import ApiException

    name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
    try:
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest)
        log(f"created SparkApplication {namespace}/{name}")
        return False
    except ApiException as exc:
        if exc.status != 409:
            raise
    existing = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    state, _ = _state(existing)
    if state not in FAILED_STATES:
        log(f"SparkApplication {namespace}/{name} exists ({state or 'PENDING'}); adopting it")
        return True
    log(f"SparkApplication {namespace}/{name} exists and {state}; replacing it")
    delete_application(api, namespace, name, log)
    deadline = time.monotonic() + retry_seconds
    while True:  # the deletion is asynchronous: 409 until the old object is gone
        try:
            api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest)
            log(f"created SparkApplication {namespace}/{name}")
            return False
        except ApiException as exc:
            if exc.status != 409 or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def wait_for(api, namespace: str, name: str, *, timeout_seconds, poll_seconds, log) -> dict:
    """Polls the application until the operator reports a final state; returns its status."""
    deadline = time.monotonic() + timeout_seconds
    last = None
    while True:
        obj = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        state, message = _state(obj)
        if state != last:
            log(f"SparkApplication {name}: {state or 'PENDING'}")
            last = state
        if state == "COMPLETED":
            return obj.get("status") or {}
        if state in FAILED_STATES:
            raise SparkApplicationError(f"SparkApplication {namespace}/{name} {state}: {message}")
        if time.monotonic() >= deadline:
            raise SparkApplicationTimeout(
                f"SparkApplication {namespace}/{name} not finished after {timeout_seconds} s "
                f"(state {state or 'PENDING'})"
            )
        time.sleep(poll_seconds)


class SparkApplicationTimeout(SparkApplicationError):
    """The SparkApplication did not finish in time (it is deleted)."""


class StepCancelled(BaseException):
    """The step got SIGTERM (the run was cancelled); a BaseException, like KeyboardInterrupt."""


@contextmanager
def _sigterm_raises():
    """Turns SIGTERM (kfp cancelling the run stops the step's pod) into :class:`StepCancelled`."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise StepCancelled(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def submit_and_wait(
    manifest: dict,
    api=None,
    *,
    timeout_seconds: float = 3600,
    poll_seconds: float = 5.0,
    log=print,
) -> dict:
    """Creates (or adopts) the SparkApplication and waits for the operator to finish it.

    1. create it, or on 409 adopt the existing one (replace it when it failed);
    2. poll its state until COMPLETED, FAILED or the timeout;
    3. on a timeout, a cancelled step (SIGTERM) or Ctrl-C, delete it so that no Spark pods
       outlive the step; a finished application stays until its ``timeToLiveSeconds``.

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
    api = _custom_objects_api(api)
    name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
    with _sigterm_raises():
        create_or_adopt(api, manifest, log=log)
        try:
            return wait_for(
                api,
                namespace,
                name,
                timeout_seconds=timeout_seconds,
                poll_seconds=poll_seconds,
                log=log,
            )
        except (SparkApplicationTimeout, StepCancelled, KeyboardInterrupt):
            delete_application(api, namespace, name, log)
            raise


def run_on_operator(
    output_dir: str,
    options: dict,
    *,
    run_id: str,
    image: str = "",
    namespace: str = "",
    workspace_pvc: str = "kfp-edge-workspace",
    workspace_mount: str = "/workspace",
    api=None,
    timeout_seconds: float = 3600,
    poll_seconds: float = 5.0,
    s3_secret: str = "",
    service_account: str = EtlConfig.service_account,
    pod_settings: dict | None = None,
    time_to_live_seconds: int | None = EtlConfig.time_to_live_seconds,
    **resources,
) -> dict:
    """Runs the ETL as a SparkApplication and returns its summary (read from the volume).

    Args:
        output_dir: The ETL output directory on the workspace volume.
        options: Keyword arguments of :func:`kfp_edge.spark_etl.etl.run_etl`.
        run_id: The pipeline run id (names the application).
        image: Spark image; empty for the kfp-edge Spark image.
        namespace: Namespace of the application; empty for this pod's own namespace.
        workspace_pvc: Claim name of the workspace PVC.
        workspace_mount: Mount path of the workspace in this step and in the Spark pods.
        api: ``CustomObjectsApi`` to use (``None``: from the cluster configuration).
        timeout_seconds: How long to wait.
        poll_seconds: Interval between status reads.
        s3_secret: Secret with the S3 credentials for s3:// input.
        service_account: Service account of the driver (it creates the executor pods).
        pod_settings: Placement fields of the Spark pods (see :func:`build_spark_application`).
        time_to_live_seconds: Lifetime of the finished application on the cluster.
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
        namespace=namespace or pod_namespace(),
        image=image or SPARK_IMAGE,
        output_dir=output_dir,
        options={k: v for k, v in options.items() if v is not None},
        workspace_pvc=workspace_pvc,
        workspace_mount=workspace_mount,
        service_account=service_account,
        s3_secret=s3_secret,
        s3_endpoint=os.environ.get("KFP_EDGE_S3_ENDPOINT", "") if s3_secret else "",
        time_to_live_seconds=time_to_live_seconds,
        pod_settings=pod_settings,
        **resources,
    )
    submit_and_wait(manifest, api, timeout_seconds=timeout_seconds, poll_seconds=poll_seconds)
    summary_path = Path(output_dir) / SUMMARY_FILE
    if not summary_path.exists():
        raise SparkApplicationError(
            f"SparkApplication {manifest['metadata']['name']} completed but {summary_path} is "
            "missing: is the workspace PVC mounted at the same path in the Spark pods (the "
            "operator's mutating webhook mounts it)?"
        )
    return json.loads(summary_path.read_text())


SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def pod_namespace() -> str:
    """Returns the namespace this pod runs in (the pipeline's own), ``kubeflow`` outside one."""
    path = SERVICE_ACCOUNT_NAMESPACE
    return path.read_text().strip() if path.exists() else "kubeflow"
