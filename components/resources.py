"""Per-step resources: the default profile and how a step spec reaches a kfp task.

A step spec is a dict with any of ``cpu_request``, ``cpu_limit``, ``memory_request``,
``memory_limit`` (Kubernetes quantities as strings), ``gpu_count`` (int), ``gpu_resource``
(default ``nvidia.com/gpu``), ``node_selector`` (dict) and ``tolerations`` (list of dicts with
``key``, ``operator``, ``value``, ``effect``). Training replicas get their spec through the TFJob,
not through the launcher task: a kfp task's resources size only the launcher pod.
"""

from __future__ import annotations

import copy

STEPS = (
    "etl",
    "training_launcher",
    "training_chief",
    "training_worker",
    "compression",
    "evaluation",
    "gate",
    "publish",
)

DEFAULT_PROFILE: dict = {
    "etl": {"cpu_request": "2", "memory_request": "4Gi", "memory_limit": "6Gi"},
    "training_launcher": {"cpu_request": "500m", "memory_request": "1Gi", "memory_limit": "2Gi"},
    "training_chief": {"cpu_request": "1", "memory_request": "2Gi", "memory_limit": "4Gi"},
    "training_worker": {"cpu_request": "1", "memory_request": "2Gi", "memory_limit": "4Gi"},
    "compression": {"cpu_request": "2", "memory_request": "4Gi", "memory_limit": "6Gi"},
    "evaluation": {"cpu_request": "1", "memory_request": "2Gi", "memory_limit": "4Gi"},
    "gate": {"cpu_request": "250m", "memory_request": "256Mi", "memory_limit": "512Mi"},
    "publish": {"cpu_request": "250m", "memory_request": "512Mi", "memory_limit": "1Gi"},
    "training": {"workers": 2},
}


def load_profile(name_or_path: str | None = None) -> dict:
    """Returns a resource profile: the default one when ``name_or_path`` is None."""
    if name_or_path is None:
        return copy.deepcopy(DEFAULT_PROFILE)
    raise ValueError(f"unknown resource profile {name_or_path!r}; only the default is built in")


def apply_to_task(task, spec: dict):
    """Applies a step spec to a kfp pipeline task and returns the task."""
    if spec.get("cpu_request"):
        task.set_cpu_request(spec["cpu_request"])
    if spec.get("cpu_limit"):
        task.set_cpu_limit(spec["cpu_limit"])
    if spec.get("memory_request"):
        task.set_memory_request(spec["memory_request"])
    if spec.get("memory_limit"):
        task.set_memory_limit(spec["memory_limit"])
    if spec.get("gpu_count"):
        task.set_accelerator_type(spec.get("gpu_resource", "nvidia.com/gpu"))
        task.set_accelerator_limit(int(spec["gpu_count"]))
    for key, value in (spec.get("node_selector") or {}).items():
        from kfp import kubernetes

        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    for toleration in spec.get("tolerations") or []:
        from kfp import kubernetes

        kubernetes.add_toleration(
            task,
            key=toleration.get("key"),
            operator=toleration.get("operator", "Equal"),
            value=toleration.get("value"),
            effect=toleration.get("effect"),
        )
    return task


def training_replica_resources(profile: dict) -> dict:
    """Returns the ``{"chief": spec, "worker": spec}`` dict handed to the TFJob builder."""
    return {"chief": profile["training_chief"], "worker": profile["training_worker"]}
