"""The TFJob spec (kubeflow.org/v1): built as a plain dict, checked against the SDK's models.

One spec, two engines: the local engine (:mod:`kfp_edge.tfjob_training.local_tfjob_engine`) runs
this very dict as local processes; the launcher (:mod:`kfp_edge.tfjob_training.launcher`) creates it
through the Kubernetes API. Policy fields live under ``spec.runPolicy`` (the removed kfp
launcher wrote them at ``spec`` level, misspelt, and the operator dropped them silently):
:func:`check_against_sdk` walks every field of a generated TFJob through the ``kubeflow-training``
SDK's OpenAPI models and the Kubernetes client's models, and fails on any field that does not
exist at its place.
"""

from __future__ import annotations

import re
from typing import Any

from kfp_edge import pod_spec
from kfp_edge.tfjob_training.config import TrainingConfig
from kfp_edge.workspace import CLUSTER_MOUNT_PATH

API_VERSION = "kubeflow.org/v1"
KIND = "TFJob"
GROUP, VERSION, PLURAL = "kubeflow.org", "v1", "tfjobs"
CONTAINER_NAME = "tensorflow"  # the operator finds the TF container by this name
DEFAULT_PORT = 2222  # the operator's default tfjob-port
DEFAULT_PVC = "kfp-edge-workspace"
TRAINER_MODULE = "kfp_edge.tfjob_training.replica_trainer"
RESTART_POLICIES = ("Always", "OnFailure", "Never", "ExitCode")
CLEAN_POD_POLICIES = ("All", "Running", "None")

# DNS-1035: the operator's webhook refuses names that start with a digit (they name Services)
_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def job_name(run_id: str, prefix: str = "kfp-edge-train") -> str:
    """Returns a deterministic TFJob name for a run (a retried step finds the same job).

    Args:
        run_id: The pipeline run id.
        prefix: Name prefix.

    Returns:
        A DNS-1123 label of at most 50 characters (the operator appends ``-worker-N``).
    """
    import hashlib

    slug = re.sub(r"[^a-z0-9-]+", "-", run_id.lower()).strip("-")
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:8]
    name = f"{prefix}-{slug}"[: 50 - 9].rstrip("-")
    return f"{name}-{digest}"


def trainer_args(
    data_dir: str,
    output_dir: str,
    job: str,
    model: str = TrainingConfig.model,
    epochs: int = TrainingConfig.epochs,
    batch_size: int = TrainingConfig.batch_size,
    learning_rate: float = TrainingConfig.learning_rate,
    width: int = TrainingConfig.width,
    depth: int = TrainingConfig.depth,
    seed: int = TrainingConfig.seed,
    steps_per_execution: int | None = None,
    report_metrics: bool = False,
    stop_file: str = "",
) -> list[str]:
    """Returns the trainer's arguments (the container ``args`` of every replica).

    ``steps_per_execution`` is passed only when set (the trainer's default otherwise);
    ``report_metrics`` and ``stop_file`` serve the hyperparameter search.
    """
    extra = (
        [] if steps_per_execution is None else ["--steps-per-execution", str(steps_per_execution)]
    )
    extra += ["--report-metrics"] if report_metrics else []
    extra += ["--stop-file", stop_file] if stop_file else []
    return [
        "--data-dir",
        str(data_dir),
        "--output-dir",
        str(output_dir),
        "--job-name",
        job,
        "--model",
        model,
        "--epochs",
        str(int(epochs)),
        "--batch-size",
        str(int(batch_size)),
        "--learning-rate",
        repr(float(learning_rate)),
        "--width",
        str(int(width)),
        "--depth",
        str(int(depth)),
        "--seed",
        str(int(seed)),
        *extra,
    ]


def _replica(
    replicas: int,
    restart_policy: str,
    image: str,
    args: list[str],
    resources: dict,
    pvc_name: str,
    mount_path: str,
    labels: dict,
    env: dict,
) -> dict:
    container = {
        "name": CONTAINER_NAME,
        "image": image,
        "command": ["python", "-m", TRAINER_MODULE],
        "args": list(args),
        "env": [{"name": k, "value": str(v)} for k, v in sorted(env.items())],
        "ports": [{"name": "tfjob-port", "containerPort": DEFAULT_PORT}],
        "volumeMounts": [{"name": "workspace", "mountPath": mount_path}],
        "securityContext": pod_spec.container_security_context(),
    }
    res = pod_spec.container_resources(resources)
    if res:
        container["resources"] = res
    spec: dict[str, Any] = {
        "containers": [container],
        "volumes": [{"name": "workspace", "persistentVolumeClaim": {"claimName": pvc_name}}],
        "securityContext": pod_spec.pod_security_context(),
        **pod_spec.scheduling_fields(resources),
    }
    return {
        "replicas": int(replicas),
        "restartPolicy": restart_policy,
        "template": {
            "metadata": {
                "labels": {**(resources.get("labels") or {}), **labels},
                "annotations": {"sidecar.istio.io/inject": "false"},
            },
            "spec": spec,
        },
    }


def build_tfjob(
    name: str,
    trainer_arguments: list[str],
    *,
    namespace: str = "kubeflow",
    image: str,
    workers: int = TrainingConfig.workers,
    replica_resources: dict | None = None,
    pvc_name: str = DEFAULT_PVC,
    mount_path: str = CLUSTER_MOUNT_PATH,
    restart_policy: str = "ExitCode",
    backoff_limit: int = 3,
    active_deadline_seconds: int | None = 3600,
    clean_pod_policy: str = "Running",
    ttl_seconds_after_finished: int | None = 86400,
    labels: dict | None = None,
    env: dict | None = None,
    evaluator: bool = False,
    gang_scheduling: bool = False,
) -> dict:
    """Builds a TFJob manifest: one Chief and ``workers - 1`` Workers running the trainer.

    Args:
        name: TFJob name (DNS-1123 label, at most 50 characters).
        trainer_arguments: Container args of every replica (see :func:`trainer_args`).
        namespace: Namespace of the job.
        image: Container image of every replica.
        workers: Training replicas in total, the chief included (>= 1).
        replica_resources: ``{"chief": spec, "worker": spec}`` with the step-spec keys of
            :mod:`kfp_edge.resources` (cpu/memory requests and limits, gpu_count, gpu_resource,
            node_selector, tolerations, affinity, labels, priority_class_name,
            image_pull_secrets). Every replica runs under the restricted security context of
            :mod:`kfp_edge.pod_spec` (non-root, RuntimeDefault seccomp, no capabilities).
        pvc_name: Workspace PVC mounted in every replica.
        mount_path: Where the workspace is mounted.
        restart_policy: Replica restart policy; ``ExitCode`` retries exit codes >= 128 only.
        backoff_limit: ``spec.runPolicy.backoffLimit``: restarts before the job fails.
        active_deadline_seconds: ``spec.runPolicy.activeDeadlineSeconds`` (None: no deadline).
        clean_pod_policy: ``spec.runPolicy.cleanPodPolicy`` (All, Running or None).
        ttl_seconds_after_finished: ``spec.runPolicy.ttlSecondsAfterFinished`` (None: keep).
        labels: Extra labels of the job and its pods.
        env: Extra environment variables of every replica (never secrets: they would be
            visible in the manifest).
        evaluator: Add an Evaluator replica that scores the chief's checkpoints as they come
            (resources from ``replica_resources["evaluator"]``).
        gang_scheduling: Set ``spec.runPolicy.schedulingPolicy.minAvailable`` to every
            replica, so a gang scheduler (Volcano, scheduler-plugins) starts all or none.

    Returns:
        The TFJob as a dict, ready for the Kubernetes API or the local engine.

    Raises:
        ValueError: On an invalid name, replica count, policy or resource spec.
    """
    if not _NAME.match(name) or len(name) > 50:
        raise ValueError(
            f"TFJob name {name!r} must be a DNS-1035 label (a lower-case letter first) of at "
            "most 50 characters"
        )
    if int(workers) < 1:
        raise ValueError(f"workers must be >= 1 (the chief included), got {workers}")
    if restart_policy not in RESTART_POLICIES:
        raise ValueError(f"restart_policy {restart_policy!r} not in {RESTART_POLICIES}")
    if clean_pod_policy not in CLEAN_POD_POLICIES:
        raise ValueError(f"clean_pod_policy {clean_pod_policy!r} not in {CLEAN_POD_POLICIES}")
    if int(backoff_limit) < 0:
        raise ValueError(f"backoff_limit must be >= 0, got {backoff_limit}")
    if not image:
        raise ValueError("image must not be empty")
    replica_resources = replica_resources or {}
    unknown = set(replica_resources) - {"chief", "worker", "evaluator"}
    if unknown:
        raise ValueError(
            f"replica_resources has unknown replica types {sorted(unknown)}; "
            "use 'chief', 'worker' and 'evaluator'"
        )
    all_labels = {
        "app.kubernetes.io/name": "kfp-edge",
        "app.kubernetes.io/component": "training",
        **(labels or {}),
    }
    full_env = {
        "TF_USE_LEGACY_KERAS": "1",
        "PYTHONUNBUFFERED": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **(env or {}),
    }
    common = dict(
        image=image,
        args=trainer_arguments,
        pvc_name=pvc_name,
        mount_path=mount_path,
        labels=all_labels,
        env=full_env,
        restart_policy=restart_policy,
    )
    specs = {"Chief": _replica(1, resources=replica_resources.get("chief") or {}, **common)}
    if int(workers) > 1:
        specs["Worker"] = _replica(
            int(workers) - 1, resources=replica_resources.get("worker") or {}, **common
        )
    if evaluator:
        specs["Evaluator"] = _replica(
            1, resources=replica_resources.get("evaluator") or {}, **common
        )
    run_policy: dict[str, Any] = {
        "backoffLimit": int(backoff_limit),
        "cleanPodPolicy": clean_pod_policy,
    }
    if active_deadline_seconds is not None:
        run_policy["activeDeadlineSeconds"] = int(active_deadline_seconds)
    if ttl_seconds_after_finished is not None:
        run_policy["ttlSecondsAfterFinished"] = int(ttl_seconds_after_finished)
    if gang_scheduling:
        run_policy["schedulingPolicy"] = {
            "minAvailable": sum(s["replicas"] for s in specs.values())
        }
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace, "labels": all_labels},
        "spec": {"runPolicy": run_policy, "tfReplicaSpecs": specs},
    }


# --- the strict check against the SDK's OpenAPI models --------------------------------------

_PRIMITIVES = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object}


def _model_class(type_name: str):
    from kubeflow.training import models as kf_models
    from kubernetes.client import models as k8s_models

    cls = getattr(kf_models, type_name, None) or getattr(k8s_models, type_name, None)
    if cls is None:
        raise LookupError(f"type {type_name!r} is in neither kubeflow.training nor kubernetes")
    return cls


def check_against_sdk(value: Any, type_name: str = "KubeflowOrgV1TFJob", path: str = "") -> int:
    """Checks every field of a manifest against the SDK's OpenAPI models, recursively.

    Args:
        value: The manifest (or a part of it), as plain dicts and lists.
        type_name: OpenAPI type of ``value`` in the SDK (``KubeflowOrgV1TFJob`` at the root).
        path: Where ``value`` is, for error messages.

    Returns:
        The number of fields checked.

    Raises:
        ValueError: Naming the first field that does not exist at its place, or has the wrong
            type.
    """
    where = path or "<root>"
    if type_name.startswith("list["):
        if not isinstance(value, list):
            raise ValueError(f"{where}: expected a list ({type_name}), got {type(value).__name__}")
        inner = type_name[5:-1]
        return sum(check_against_sdk(v, inner, f"{path}[{i}]") for i, v in enumerate(value))
    if type_name.startswith("dict("):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a map ({type_name}), got {type(value).__name__}")
        inner = type_name[type_name.index(",") + 1 : -1].strip()
        return sum(check_against_sdk(v, inner, f"{path}.{k}") for k, v in value.items())
    if type_name in _PRIMITIVES:
        expected = _PRIMITIVES[type_name]
        if type_name == "int" and isinstance(value, bool) or not isinstance(value, expected):
            raise ValueError(f"{where}: expected {type_name}, got {type(value).__name__} {value!r}")
        return 1
    cls = _model_class(type_name)
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected an object ({type_name}), got {type(value).__name__}")
    by_json_name = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    count = 0
    for key, item in value.items():
        if key not in by_json_name:
            raise ValueError(
                f"{path}.{key}: no field {key!r} in {type_name} (known: {sorted(by_json_name)})"
            )
        count += 1 + check_against_sdk(item, cls.openapi_types[by_json_name[key]], f"{path}.{key}")
    return count
