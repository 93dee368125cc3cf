"""Per-step resources: resource profiles, their validation, and how a step spec reaches a task.

A resource profile maps each pipeline step to a *step spec*, plus a ``training`` section::

    etl:
      cpu_request: "2"          # Kubernetes CPU quantity: "2", "0.5" or "500m"
      cpu_limit: "4"
      memory_request: 4Gi       # an integer with an optional suffix: E, P, T, G, M, K, Ei ... Ki
      memory_limit: 6Gi
    training_worker:
      cpu_request: "4"
      memory_request: 8Gi
      gpu_count: 1              # a non-negative integer (what kfp's set_accelerator_limit takes)
      gpu_resource: nvidia.com/gpu   # the extended resource, i.e. the GPU type
                                     # (nvidia.com/gpu, amd.com/gpu, nvidia.com/mig-1g.10gb, ...)
      node_selector: {cloud.google.com/gke-accelerator: nvidia-tesla-t4}
      tolerations:
        - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}
    training:
      workers: 2                # TFJob replicas, chief included

Steps are :data:`STEPS`. A profile file needs to name only the steps it changes: every step it
leaves out keeps its spec from :data:`DEFAULT_PROFILE`, and a step it names is replaced whole
(so a profile can drop a default limit). Shipped profiles (``cpu-small``, ``gpu-single``,
``gpu-multi``) live in ``kfp_edge/profiles/``; :func:`load_profile` takes their name or the path
of a YAML file and validates it, naming the offending key in every error.

The kfp steps get their spec through :func:`apply_to_task`. The training replicas get theirs
through the TFJob (:func:`training_replica_resources`, turned into pod fields by
``kfp_edge.tfjob_training.tfjob_spec.build_tfjob``): a kfp task's resources size only the launcher
pod, never the training pods.
"""

from __future__ import annotations

import copy
import importlib.resources
import os
import re
from pathlib import Path

STEPS = (
    "run_context",
    "etl",
    "training_launcher",
    "training_chief",
    "training_worker",
    "compression",
    "forest_training",
    "forest_export",
    "evaluation",
    "gate",
    "publish",
)

#: Profiles shipped in kfp_edge/profiles/ (``<name>.yaml``).
SHIPPED_PROFILES = ("cpu-small", "gpu-single", "gpu-multi")

DEFAULT_PROFILE: dict = {
    "run_context": {"cpu_request": "100m", "memory_request": "128Mi", "memory_limit": "256Mi"},
    "etl": {"cpu_request": "2", "memory_request": "4Gi", "memory_limit": "6Gi"},
    "training_launcher": {"cpu_request": "500m", "memory_request": "1Gi", "memory_limit": "2Gi"},
    "training_chief": {"cpu_request": "1", "memory_request": "2Gi", "memory_limit": "4Gi"},
    "training_worker": {"cpu_request": "1", "memory_request": "2Gi", "memory_limit": "4Gi"},
    "compression": {"cpu_request": "2", "memory_request": "4Gi", "memory_limit": "6Gi"},
    "forest_training": {"cpu_request": "2", "memory_request": "3Gi", "memory_limit": "4Gi"},
    "forest_export": {"cpu_request": "500m", "memory_request": "1Gi", "memory_limit": "2Gi"},
    "evaluation": {"cpu_request": "1", "memory_request": "2Gi", "memory_limit": "4Gi"},
    "gate": {"cpu_request": "250m", "memory_request": "256Mi", "memory_limit": "512Mi"},
    "publish": {"cpu_request": "250m", "memory_request": "512Mi", "memory_limit": "1Gi"},
    "training": {"workers": 2},
}

STEP_FIELDS = (
    "cpu_request",
    "cpu_limit",
    "memory_request",
    "memory_limit",
    "gpu_count",
    "gpu_resource",
    "node_selector",
    "tolerations",
)
TRAINING_FIELDS = ("workers",)
TOLERATION_FIELDS = ("key", "operator", "value", "effect", "toleration_seconds")
TOLERATION_OPERATORS = ("Equal", "Exists")
TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"

# The forms kfp's PipelineTask.set_cpu_* and set_memory_* accept (kfp 2.x), so that a profile
# that validates here never fails later inside the compiler.
_CPU_RE = re.compile(r"^([0-9]*[.])?[0-9]+m?$")
_MEMORY_RE = re.compile(r"^[0-9]+(E|Ei|P|Pi|T|Ti|G|Gi|M|Mi|K|Ki)?$")
# An extended resource name: a DNS subdomain prefix, a slash, a name (e.g. nvidia.com/gpu).
_RESOURCE_NAME_RE = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_MEMORY_FACTORS = {
    "": 1,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}


class ProfileError(ValueError):
    """A resource profile that cannot be applied; the message names the file and the key."""


def cpu_millicores(quantity: str) -> float:
    """Returns a CPU quantity (``"2"``, ``"0.5"``, ``"500m"``) in millicores."""
    if quantity.endswith("m"):
        return float(quantity[:-1])
    return float(quantity) * 1000


def memory_bytes(quantity: str) -> int:
    """Returns a memory quantity (``"512Mi"``, ``"4G"``, ``"1024"``) in bytes."""
    match = _MEMORY_RE.match(quantity)
    if match is None:
        raise ValueError(f"invalid memory quantity {quantity!r}")
    suffix = match.group(1) or ""
    return int(quantity[: len(quantity) - len(suffix)]) * _MEMORY_FACTORS[suffix]


def _quantity(source: str, key: str, value, pattern: re.Pattern, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ProfileError(
            f"{source}: {key}: expected a {what} quantity as a string, got {value!r}"
        )
    text = str(value).strip()
    if text.startswith("-"):
        raise ProfileError(f"{source}: {key}: quantity must not be negative, got {value!r}")
    if pattern.match(text) is None:
        example = '"2", "0.5" or "500m"' if what == "CPU" else '"512Mi", "4Gi" or "1G"'
        raise ProfileError(
            f"{source}: {key}: {value!r} is not a {what} quantity kfp accepts (e.g. {example})"
        )
    return text


def _tolerations(source: str, key: str, value) -> list[dict]:
    if not isinstance(value, list):
        raise ProfileError(f"{source}: {key}: expected a list of tolerations, got {value!r}")
    result = []
    for i, item in enumerate(value):
        where = f"{key}[{i}]"
        if not isinstance(item, dict):
            raise ProfileError(f"{source}: {where}: expected a mapping, got {item!r}")
        unknown = sorted(set(item) - set(TOLERATION_FIELDS))
        if unknown:
            raise ProfileError(
                f"{source}: {where}.{unknown[0]}: unknown toleration field; "
                f"expected some of {', '.join(TOLERATION_FIELDS)}"
            )
        operator = item.get("operator", "Equal")
        if operator not in TOLERATION_OPERATORS:
            raise ProfileError(
                f"{source}: {where}.operator: {operator!r} is not one of "
                f"{', '.join(TOLERATION_OPERATORS)}"
            )
        effect = item.get("effect")
        if effect is not None and effect not in TOLERATION_EFFECTS:
            raise ProfileError(
                f"{source}: {where}.effect: {effect!r} is not one of "
                f"{', '.join(TOLERATION_EFFECTS)}"
            )
        if operator == "Exists" and item.get("value") not in (None, ""):
            raise ProfileError(f"{source}: {where}.value: operator Exists takes no value")
        if operator == "Equal" and not item.get("key"):
            raise ProfileError(f"{source}: {where}.key: operator Equal needs a key")
        for field in ("key", "value"):
            if item.get(field) is not None and not isinstance(item[field], str):
                raise ProfileError(f"{source}: {where}.{field}: expected a string")
        seconds = item.get("toleration_seconds")
        if seconds is not None:
            if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
                raise ProfileError(
                    f"{source}: {where}.toleration_seconds: expected a non-negative integer"
                )
            if effect != "NoExecute":
                raise ProfileError(
                    f"{source}: {where}.toleration_seconds: only valid with effect NoExecute"
                )
        result.append({"operator": operator, **{k: v for k, v in item.items() if k != "operator"}})
    return result


def validate_step_spec(spec, step: str, source: str = "profile") -> dict:
    """Checks one step spec and returns it normalized (quantities as strings).

    Args:
        spec: The step spec (a mapping of the fields in :data:`STEP_FIELDS`).
        step: Step name, used in error messages.
        source: Where the spec comes from (a file name), used in error messages.

    Returns:
        A new dict with the same fields, quantities as strings and ``gpu_count`` as int.

    Raises:
        ProfileError: A field is unknown or a value is invalid; the message names the key.
    """
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        raise ProfileError(f"{source}: {step}: expected a mapping of resource fields, got {spec!r}")
    unknown = sorted(set(spec) - set(STEP_FIELDS))
    if unknown:
        raise ProfileError(
            f"{source}: {step}.{unknown[0]}: unknown field; expected some of "
            f"{', '.join(STEP_FIELDS)}"
        )
    out: dict = {}
    for field in ("cpu_request", "cpu_limit"):
        if spec.get(field) is not None:
            out[field] = _quantity(source, f"{step}.{field}", spec[field], _CPU_RE, "CPU")
    for field in ("memory_request", "memory_limit"):
        if spec.get(field) is not None:
            out[field] = _quantity(source, f"{step}.{field}", spec[field], _MEMORY_RE, "memory")
    if "cpu_request" in out and "cpu_limit" in out:
        if cpu_millicores(out["cpu_request"]) > cpu_millicores(out["cpu_limit"]):
            raise ProfileError(
                f"{source}: {step}.cpu_request: {out['cpu_request']} is above "
                f"cpu_limit {out['cpu_limit']}"
            )
    if "memory_request" in out and "memory_limit" in out:
        if memory_bytes(out["memory_request"]) > memory_bytes(out["memory_limit"]):
            raise ProfileError(
                f"{source}: {step}.memory_request: {out['memory_request']} is above "
                f"memory_limit {out['memory_limit']}"
            )
    if spec.get("gpu_count") is not None:
        count = spec["gpu_count"]
        if isinstance(count, str) and count.strip().isdigit():
            count = int(count)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ProfileError(
                f"{source}: {step}.gpu_count: {spec['gpu_count']!r} is not a GPU count kfp "
                "accepts (a non-negative integer)"
            )
        out["gpu_count"] = count
    if spec.get("gpu_resource") is not None:
        resource = spec["gpu_resource"]
        if not isinstance(resource, str) or _RESOURCE_NAME_RE.match(resource) is None:
            raise ProfileError(
                f"{source}: {step}.gpu_resource: {resource!r} is not an extended resource name "
                "such as nvidia.com/gpu"
            )
        if not out.get("gpu_count"):
            raise ProfileError(f"{source}: {step}.gpu_resource: set without a gpu_count above 0")
        out["gpu_resource"] = resource
    if spec.get("node_selector") is not None:
        selector = spec["node_selector"]
        if not isinstance(selector, dict):
            raise ProfileError(f"{source}: {step}.node_selector: expected a mapping of labels")
        for label, value in selector.items():
            if not isinstance(label, str) or not isinstance(value, str):
                raise ProfileError(
                    f"{source}: {step}.node_selector.{label}: labels and values must be strings "
                    f"(quote {value!r} in YAML)"
                )
        out["node_selector"] = dict(selector)
    if spec.get("tolerations") is not None:
        out["tolerations"] = _tolerations(source, f"{step}.tolerations", spec["tolerations"])
    return out


def validate_profile(profile, source: str = "profile") -> dict:
    """Checks a whole profile and returns it complete: left-out steps take the default spec.

    Args:
        profile: Mapping of step name to step spec, plus an optional ``training`` section.
        source: Where the profile comes from (a file name), used in error messages.

    Returns:
        A new, complete profile with every step of :data:`STEPS` and ``training``.

    Raises:
        ProfileError: An unknown step or field, or an invalid value; the message names the key.
    """
    if not isinstance(profile, dict):
        raise ProfileError(f"{source}: expected a mapping of steps, got {type(profile).__name__}")
    unknown = sorted(set(profile) - set(STEPS) - {"training", "description"})
    if unknown:
        raise ProfileError(
            f"{source}: {unknown[0]}: unknown step; expected some of {', '.join(STEPS)}, training"
        )
    result = copy.deepcopy(DEFAULT_PROFILE)
    for step in STEPS:
        if step in profile:
            result[step] = validate_step_spec(profile[step], step, source)
    training = profile.get("training")
    if training is not None:
        if not isinstance(training, dict):
            raise ProfileError(f"{source}: training: expected a mapping with workers")
        unknown = sorted(set(training) - set(TRAINING_FIELDS))
        if unknown:
            raise ProfileError(f"{source}: training.{unknown[0]}: unknown field; expected workers")
        if "workers" in training:
            workers = training["workers"]
            if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
                raise ProfileError(
                    f"{source}: training.workers: expected an integer of at least 1 "
                    f"(the chief counts), got {workers!r}"
                )
            result["training"] = {"workers": workers}
    if profile.get("description") is not None:
        result["description"] = str(profile["description"])
    return result


def profile_path(name: str) -> Path:
    """Returns the path of a shipped profile by name (``cpu-small``, ...)."""
    if name not in SHIPPED_PROFILES:
        raise ProfileError(
            f"unknown resource profile {name!r}: neither a file nor one of "
            f"{', '.join(SHIPPED_PROFILES)}"
        )
    return Path(str(importlib.resources.files("kfp_edge.profiles").joinpath(f"{name}.yaml")))


def load_profile(name_or_path: str | os.PathLike | None = None) -> dict:
    """Returns a validated, complete resource profile.

    Args:
        name_or_path: None for :data:`DEFAULT_PROFILE`, a shipped profile name
            (:data:`SHIPPED_PROFILES`), or the path of a profile YAML file.

    Returns:
        The profile: every step of :data:`STEPS` with its spec, and ``training.workers``.

    Raises:
        ProfileError: Unknown name, unreadable YAML, or an invalid profile (naming the key).
    """
    if name_or_path is None:
        return copy.deepcopy(DEFAULT_PROFILE)
    path = Path(name_or_path)
    if not path.is_file():
        path = profile_path(str(name_or_path))
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        raise ProfileError(f"{path}: the profile is empty")
    return validate_profile(data, source=str(path))


def apply_to_task(task, spec: dict):
    """Applies a step spec to a kfp pipeline task and returns the task.

    Args:
        task: A ``kfp.dsl.PipelineTask``.
        spec: A step spec (validated by :func:`validate_step_spec`).

    Returns:
        The same task.
    """
    if spec.get("cpu_request"):
        task.set_cpu_request(spec["cpu_request"])
    if spec.get("cpu_limit"):
        task.set_cpu_limit(spec["cpu_limit"])
    if spec.get("memory_request"):
        task.set_memory_request(spec["memory_request"])
    if spec.get("memory_limit"):
        task.set_memory_limit(spec["memory_limit"])
    if spec.get("gpu_count"):
        task.set_accelerator_type(spec.get("gpu_resource", DEFAULT_GPU_RESOURCE))
        task.set_accelerator_limit(int(spec["gpu_count"]))
    if spec.get("node_selector") or spec.get("tolerations"):
        from kfp import kubernetes

        for key, value in (spec.get("node_selector") or {}).items():
            kubernetes.add_node_selector(task, label_key=key, label_value=value)
        for toleration in spec.get("tolerations") or []:
            kubernetes.add_toleration(
                task,
                key=toleration.get("key"),
                operator=toleration.get("operator", "Equal"),
                value=toleration.get("value"),
                effect=toleration.get("effect"),
                toleration_seconds=toleration.get("toleration_seconds"),
            )
    return task


def training_replica_resources(profile: dict) -> dict:
    """Returns the ``{"chief": spec, "worker": spec}`` dict handed to the TFJob builder."""
    return {"chief": profile["training_chief"], "worker": profile["training_worker"]}
