"""Pod fields of the pods kfp-edge creates at run time (TFJob replicas, Spark driver and executors).

One place turns a validated step spec (:mod:`kfp_edge.resources`) into Kubernetes pod fields, and
holds the restricted security context every such pod runs under, so that the TFJob builder and
the SparkApplication builder cannot drift apart:

- :func:`container_resources`: ``requests``/``limits`` (GPUs as an extended-resource limit);
- :func:`scheduling_fields`: ``nodeSelector``, ``tolerations``, ``affinity``,
  ``priorityClassName`` and ``imagePullSecrets`` in the pod spec's own spelling;
- :func:`pod_security_context` and :func:`container_security_context`: the Pod Security
  Standard "restricted" profile (non-root as the images' user 10001, RuntimeDefault seccomp,
  all capabilities dropped, no privilege escalation) with ``fsGroup`` so the workspace PVC is
  writable by that user.
"""

from __future__ import annotations

#: The non-root user (and group) of the kfp-edge images (docker/*/Dockerfile: useradd 10001).
IMAGE_USER = 10001
DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"


def container_resources(spec: dict) -> dict:
    """Returns a container's ``resources`` (``requests``/``limits``) from a step spec."""
    requests, limits = {}, {}
    for field, target, key in (
        ("cpu_request", requests, "cpu"),
        ("memory_request", requests, "memory"),
        ("cpu_limit", limits, "cpu"),
        ("memory_limit", limits, "memory"),
    ):
        if spec.get(field):
            target[key] = str(spec[field])
    gpus = int(spec.get("gpu_count") or 0)
    if gpus < 0:
        raise ValueError(f"gpu_count must be >= 0, got {gpus}")
    if gpus:
        # Extended resources: the limit is what the scheduler counts (request defaults to it).
        limits[spec.get("gpu_resource") or DEFAULT_GPU_RESOURCE] = str(gpus)
    return {k: v for k, v in (("requests", requests), ("limits", limits)) if v}


def tolerations(spec: dict) -> list[dict]:
    """Returns the Kubernetes tolerations of a step spec (``toleration_seconds`` renamed)."""
    out = []
    for i, t in enumerate(spec.get("tolerations") or []):
        if not isinstance(t, dict) or not (t.get("key") or t.get("operator") == "Exists"):
            raise ValueError(f"toleration {i} needs a 'key' (or operator Exists): {t!r}")
        seconds = t.get("toleration_seconds", t.get("tolerationSeconds"))
        item = {
            "key": t.get("key"),
            "operator": t.get("operator", "Equal"),
            "value": t.get("value"),
            "effect": t.get("effect"),
            "tolerationSeconds": None if seconds is None else int(seconds),
        }
        out.append({k: v for k, v in item.items() if v is not None})
    return out


def scheduling_fields(spec: dict) -> dict:
    """Returns the pod-spec fields of a step spec that place the pod (empty ones left out).

    Args:
        spec: A validated step spec.

    Returns:
        Some of ``nodeSelector``, ``tolerations``, ``affinity``, ``priorityClassName`` and
        ``imagePullSecrets`` (as ``[{"name": ...}]``).
    """
    out: dict = {}
    if spec.get("node_selector"):
        out["nodeSelector"] = {str(k): str(v) for k, v in spec["node_selector"].items()}
    if spec.get("tolerations"):
        out["tolerations"] = tolerations(spec)
    if spec.get("affinity"):
        out["affinity"] = spec["affinity"]
    if spec.get("priority_class_name"):
        out["priorityClassName"] = spec["priority_class_name"]
    if spec.get("image_pull_secrets"):
        out["imagePullSecrets"] = [{"name": n} for n in spec["image_pull_secrets"]]
    return out


def pod_security_context() -> dict:
    """Returns the restricted pod ``securityContext`` (fsGroup makes the PVC writable)."""
    return {
        "runAsNonRoot": True,
        "runAsUser": IMAGE_USER,
        "runAsGroup": IMAGE_USER,
        "fsGroup": IMAGE_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict:
    """Returns the restricted container ``securityContext``."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
