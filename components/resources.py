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

A step may also be written in the Kubernetes shape an operator pastes from a pod spec
(:data:`KUBERNETES_FIELDS`: ``resources.requests/limits``, ``nodeSelector``, ``tolerations`` with
``tolerationSeconds``, ``affinity``, ``labels``, ``priorityClassName``, ``imagePullSecrets``); it
is read into the short fields. An ``images`` section names the training (CPU, GPU), Spark images
and ``imagePullSecrets`` for every pod. Every error of a profile is reported at once.

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
    "images": {},
}

RESOURCE_FIELDS = (
    "cpu_request",
    "cpu_limit",
    "memory_request",
    "memory_limit",
    "gpu_count",
    "gpu_resource",
)
STEP_FIELDS = (
    *RESOURCE_FIELDS,
    "node_selector",
    "tolerations",
    "affinity",
    "labels",
    "priority_class_name",
    "image_pull_secrets",
)
#: The Kubernetes spelling of step fields an operator may paste (-> the short field it sets);
#: ``resources`` (``requests``/``limits`` of cpu, memory and one GPU resource) sets several.
KUBERNETES_FIELDS = {
    "resources": "resources",
    "nodeSelector": "node_selector",
    "priorityClassName": "priority_class_name",
    "imagePullSecrets": "image_pull_secrets",
}
AFFINITY_FIELDS = ("nodeAffinity", "podAffinity", "podAntiAffinity")
#: Steps that are kfp tasks (the others are TFJob replicas the launcher creates).
KFP_STEPS = tuple(s for s in STEPS if s not in ("training_chief", "training_worker"))
KFP_ONLY_MESSAGE = (
    "a kfp step's pod cannot take it on the supported KFP backends (use nodeSelector and "
    "tolerations); only training_chief and training_worker do"
)
SECTIONS = ("training", "images", "description")
IMAGE_FIELDS = ("tensorflow", "tensorflow_gpu", "spark", "imagePullSecrets")
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
# A DNS-1123 subdomain: Secret and PriorityClass names.
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
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


class _Errors:
    """Collects every error of a profile, so that all of them are reported at once."""

    def __init__(self, source: str):
        self.source = source
        self.messages: list[str] = []
        # short key -> the key as the profile wrote it (Kubernetes spelling), for messages
        self.aliases: dict[str, str] = {}

    def add(self, key: str, message: str) -> None:
        for short, written in self.aliases.items():
            if key == short or key.startswith((short + ".", short + "[")):
                key = written + key[len(short) :]
                break
        self.messages.append(
            f"{self.source}: {key}: {message}" if key else f"{self.source}: {message}"
        )

    def raise_if_any(self) -> None:
        if len(self.messages) == 1:
            raise ProfileError(self.messages[0])
        if self.messages:
            raise ProfileError(
                f"{len(self.messages)} errors in the profile:\n" + "\n".join(self.messages)
            )


def _quantity(errors: _Errors, key: str, value, pattern: re.Pattern, what: str) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        errors.add(key, f"expected a {what} quantity as a string, got {value!r}")
        return None
    text = str(value).strip()
    if text.startswith("-"):
        errors.add(key, f"quantity must not be negative, got {value!r}")
        return None
    if pattern.match(text) is None:
        example = '"2", "0.5" or "500m"' if what == "CPU" else '"512Mi", "4Gi" or "1G"'
        errors.add(key, f"{value!r} is not a {what} quantity kfp accepts (e.g. {example})")
        return None
    return text


def _toleration(errors: _Errors, where: str, item) -> dict | None:
    if not isinstance(item, dict):
        errors.add(where, f"expected a mapping, got {item!r}")
        return None
    item = dict(item)
    if "tolerationSeconds" in item:  # the Kubernetes spelling
        item["toleration_seconds"] = item.pop("tolerationSeconds")
    count = len(errors.messages)
    for field in sorted(set(item) - set(TOLERATION_FIELDS)):
        errors.add(
            f"{where}.{field}",
            f"unknown toleration field; expected some of {', '.join(TOLERATION_FIELDS)}",
        )
    operator = item.get("operator", "Equal")
    if operator not in TOLERATION_OPERATORS:
        errors.add(
            f"{where}.operator", f"{operator!r} is not one of {', '.join(TOLERATION_OPERATORS)}"
        )
    effect = item.get("effect")
    if effect is not None and effect not in TOLERATION_EFFECTS:
        errors.add(f"{where}.effect", f"{effect!r} is not one of {', '.join(TOLERATION_EFFECTS)}")
    if operator == "Exists" and item.get("value") not in (None, ""):
        errors.add(f"{where}.value", "operator Exists takes no value")
    if operator == "Equal" and not item.get("key"):
        errors.add(f"{where}.key", "operator Equal needs a key")
    for field in ("key", "value"):
        if item.get(field) is not None and not isinstance(item[field], str):
            errors.add(f"{where}.{field}", "expected a string")
    seconds = item.get("toleration_seconds")
    if seconds is not None:
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
            errors.add(f"{where}.toleration_seconds", "expected a non-negative integer")
        elif effect != "NoExecute":
            errors.add(f"{where}.toleration_seconds", "only valid with effect NoExecute")
    if len(errors.messages) > count:
        return None
    return {"operator": operator, **{k: v for k, v in item.items() if k != "operator"}}


def _string_map(errors: _Errors, key: str, value, what: str) -> dict | None:
    if not isinstance(value, dict):
        errors.add(key, f"expected a mapping of {what}")
        return None
    bad = [k for k, v in value.items() if not isinstance(k, str) or not isinstance(v, str)]
    for label in bad:
        errors.add(
            f"{key}.{label}",
            f"{what} and values must be strings (quote {value[label]!r} in YAML)",
        )
    return None if bad else dict(value)


def _from_kubernetes_resources(errors: _Errors, step: str, value, out: dict) -> None:
    """Reads ``resources: {requests: ..., limits: ...}`` into the short fields."""
    if not isinstance(value, dict):
        errors.add(f"{step}.resources", "expected a mapping with requests and/or limits")
        return
    for section in sorted(set(value) - {"requests", "limits"}):
        errors.add(f"{step}.resources.{section}", "unknown field; expected requests, limits")
    gpus: dict[str, object] = {}
    for section, suffix in (("requests", "request"), ("limits", "limit")):
        items = value.get(section) or {}
        if not isinstance(items, dict):
            errors.add(f"{step}.resources.{section}", "expected a mapping of resource quantities")
            continue
        for name, quantity in items.items():
            if name in ("cpu", "memory"):
                out[f"{name}_{suffix}"] = quantity
                errors.aliases[f"{step}.{name}_{suffix}"] = f"{step}.resources.{section}.{name}"
            elif isinstance(name, str) and _RESOURCE_NAME_RE.match(name):
                gpus.setdefault(name, quantity)
                if gpus[name] != quantity:
                    errors.add(
                        f"{step}.resources.{section}.{name}",
                        "an extended resource's request must equal its limit",
                    )
            else:
                errors.add(
                    f"{step}.resources.{section}.{name}",
                    "unsupported resource; expected cpu, memory or an extended resource "
                    "such as nvidia.com/gpu",
                )
    if len(gpus) > 1:
        errors.add(f"{step}.resources", f"at most one GPU resource, got {sorted(gpus)}")
    for name, count in gpus.items():
        out["gpu_resource"], out["gpu_count"] = name, count


def _short_form(errors: _Errors, step: str, spec: dict) -> dict:
    """Returns a step spec with its Kubernetes-shaped fields renamed to the short form."""
    out = {k: v for k, v in spec.items() if k not in KUBERNETES_FIELDS}
    for k8s_name, short in KUBERNETES_FIELDS.items():
        if k8s_name == "resources" or k8s_name not in spec:
            continue
        if short in spec:
            errors.add(f"{step}.{k8s_name}", f"given twice (also as {short}); keep one")
        else:
            out[short] = spec[k8s_name]
            errors.aliases[f"{step}.{short}"] = f"{step}.{k8s_name}"
    if "resources" in spec:
        short_resources = sorted(set(spec) & set(RESOURCE_FIELDS))
        if short_resources:
            errors.add(f"{step}.resources", f"given with {', '.join(short_resources)}; keep one")
        else:
            _from_kubernetes_resources(errors, step, spec["resources"], out)
    return out


def _affinity(errors: _Errors, key: str, value) -> dict | None:
    if not isinstance(value, dict):
        errors.add(key, "expected a Kubernetes affinity mapping (nodeAffinity, podAffinity, ...)")
        return None
    unknown = sorted(set(value) - set(AFFINITY_FIELDS))
    for field in unknown:
        errors.add(
            f"{key}.{field}", f"unknown field; expected some of {', '.join(AFFINITY_FIELDS)}"
        )
    return None if unknown else dict(value)


def _pull_secrets(errors: _Errors, key: str, value) -> list[str] | None:
    """Accepts ``[name, ...]`` or the pod spec's ``[{name: ...}, ...]``."""
    if not isinstance(value, list):
        errors.add(key, "expected a list of Secret names")
        return None
    names = []
    for i, item in enumerate(value):
        name = item.get("name") if isinstance(item, dict) else item
        if not isinstance(name, str) or not _NAME_RE.match(name):
            errors.add(f"{key}[{i}]", f"{item!r} is not a Secret name")
        else:
            names.append(name)
    return names if len(names) == len(value) else None


def _gpu(errors: _Errors, step: str, spec: dict, out: dict) -> None:
    if spec.get("gpu_count") is not None:
        count = spec["gpu_count"]
        if isinstance(count, str) and count.strip().isdigit():
            count = int(count)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            errors.add(
                f"{step}.gpu_count",
                f"{spec['gpu_count']!r} is not a GPU count kfp accepts (a non-negative integer)",
            )
        else:
            out["gpu_count"] = count
    if spec.get("gpu_resource") is not None:
        resource = spec["gpu_resource"]
        if not isinstance(resource, str) or _RESOURCE_NAME_RE.match(resource) is None:
            errors.add(
                f"{step}.gpu_resource",
                f"{resource!r} is not an extended resource name such as nvidia.com/gpu",
            )
        elif "gpu_count" in spec and "gpu_count" not in out:
            pass  # the bad gpu_count is reported already
        elif not out.get("gpu_count"):
            errors.add(f"{step}.gpu_resource", "set without a gpu_count above 0")
        else:
            out["gpu_resource"] = resource


def _quantities(errors: _Errors, step: str, spec: dict, out: dict) -> None:
    for field in ("cpu_request", "cpu_limit"):
        if spec.get(field) is not None:
            value = _quantity(errors, f"{step}.{field}", spec[field], _CPU_RE, "CPU")
            if value is not None:
                out[field] = value
    for field in ("memory_request", "memory_limit"):
        if spec.get(field) is not None:
            value = _quantity(errors, f"{step}.{field}", spec[field], _MEMORY_RE, "memory")
            if value is not None:
                out[field] = value
    if "cpu_request" in out and "cpu_limit" in out:
        if cpu_millicores(out["cpu_request"]) > cpu_millicores(out["cpu_limit"]):
            errors.add(
                f"{step}.cpu_request", f"{out['cpu_request']} is above cpu_limit {out['cpu_limit']}"
            )
    if "memory_request" in out and "memory_limit" in out:
        if memory_bytes(out["memory_request"]) > memory_bytes(out["memory_limit"]):
            errors.add(
                f"{step}.memory_request",
                f"{out['memory_request']} is above memory_limit {out['memory_limit']}",
            )


def _placement(errors: _Errors, step: str, spec: dict, out: dict) -> None:
    if spec.get("node_selector") is not None:
        selector = _string_map(errors, f"{step}.node_selector", spec["node_selector"], "labels")
        if selector is not None:
            out["node_selector"] = selector
    if spec.get("tolerations") is not None:
        if not isinstance(spec["tolerations"], list):
            errors.add(
                f"{step}.tolerations",
                f"expected a list of tolerations, got {spec['tolerations']!r}",
            )
        else:
            items = [
                _toleration(errors, f"{step}.tolerations[{i}]", t)
                for i, t in enumerate(spec["tolerations"])
            ]
            if all(t is not None for t in items):
                out["tolerations"] = items
    if spec.get("labels") is not None:
        labels = _string_map(errors, f"{step}.labels", spec["labels"], "labels")
        if labels is not None:
            out["labels"] = labels
    if spec.get("affinity") is not None:
        affinity = _affinity(errors, f"{step}.affinity", spec["affinity"])
        if affinity is not None:
            out["affinity"] = affinity
    if spec.get("priority_class_name") is not None:
        name = spec["priority_class_name"]
        if not isinstance(name, str) or not _NAME_RE.match(name):
            errors.add(f"{step}.priority_class_name", f"{name!r} is not a PriorityClass name")
        else:
            out["priority_class_name"] = name
    if spec.get("image_pull_secrets") is not None:
        names = _pull_secrets(errors, f"{step}.image_pull_secrets", spec["image_pull_secrets"])
        if names is not None:
            out["image_pull_secrets"] = names
    if step in KFP_STEPS:
        # Refused rather than dropped: kfp-kubernetes 2.17 has no setter for a priority class
        # or pod affinity, and the KFP 2.5 driver ignores node affinity (applied from 2.14).
        for field in ("priority_class_name", "affinity"):
            if spec.get(field) is not None:
                errors.add(f"{step}.{field}", KFP_ONLY_MESSAGE)


def _step_spec(errors: _Errors, spec, step: str) -> dict:
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        errors.add(step, f"expected a mapping of resource fields, got {spec!r}")
        return {}
    spec = _short_form(errors, step, spec)
    for field in sorted(set(spec) - set(STEP_FIELDS)):
        errors.add(
            f"{step}.{field}",
            f"unknown field; expected some of {', '.join(STEP_FIELDS)} or the Kubernetes "
            f"fields {', '.join(KUBERNETES_FIELDS)}",
        )
    out: dict = {}
    _quantities(errors, step, spec, out)
    _gpu(errors, step, spec, out)
    _placement(errors, step, spec, out)
    return out


def validate_step_spec(spec, step: str, source: str = "profile") -> dict:
    """Checks one step spec and returns it normalized (quantities as strings).

    Args:
        spec: The step spec: the short fields of :data:`STEP_FIELDS` or the Kubernetes ones of
            :data:`KUBERNETES_FIELDS` (``resources.requests/limits``, ``nodeSelector``, ...).
        step: Step name, used in error messages.
        source: Where the spec comes from (a file name), used in error messages.

    Returns:
        A new dict of short fields, quantities as strings and ``gpu_count`` as int.

    Raises:
        ProfileError: Unknown fields or invalid values; the message names every bad key.
    """
    errors = _Errors(source)
    out = _step_spec(errors, spec, step)
    errors.raise_if_any()
    return out


def _training(errors: _Errors, training) -> dict | None:
    if not isinstance(training, dict):
        errors.add("training", "expected a mapping with workers")
        return None
    for field in sorted(set(training) - set(TRAINING_FIELDS)):
        errors.add(f"training.{field}", "unknown field; expected workers")
    workers = training.get("workers")
    if workers is None:
        return None
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        errors.add(
            "training.workers",
            f"expected an integer of at least 1 (the chief counts), got {workers!r}",
        )
        return None
    return {"workers": workers}


def _images(errors: _Errors, images) -> dict:
    if not isinstance(images, dict):
        errors.add("images", f"expected a mapping of {', '.join(IMAGE_FIELDS)}")
        return {}
    out: dict = {}
    for field in sorted(set(images) - set(IMAGE_FIELDS)):
        errors.add(f"images.{field}", f"unknown field; expected some of {', '.join(IMAGE_FIELDS)}")
    for field in ("tensorflow", "tensorflow_gpu", "spark"):
        value = images.get(field)
        if value is not None:
            if not isinstance(value, str) or not value or any(c.isspace() for c in value):
                errors.add(f"images.{field}", f"{value!r} is not an image reference")
            else:
                out[field] = value
    if images.get("imagePullSecrets") is not None:
        names = _pull_secrets(errors, "images.imagePullSecrets", images["imagePullSecrets"])
        if names is not None:
            out["image_pull_secrets"] = names
    return out


def validate_profile(profile, source: str = "profile") -> dict:
    """Checks a whole profile and returns it complete: left-out steps take the default spec.

    Args:
        profile: Mapping of step name to step spec, plus optional ``training`` and ``images``
            sections.
        source: Where the profile comes from (a file name), used in error messages.

    Returns:
        A new, complete profile with every step of :data:`STEPS`, ``training`` and ``images``;
        ``images.imagePullSecrets`` is added to every step's ``image_pull_secrets``.

    Raises:
        ProfileError: Every unknown step or field and invalid value, each naming its key.
    """
    if not isinstance(profile, dict):
        raise ProfileError(f"{source}: expected a mapping of steps, got {type(profile).__name__}")
    errors = _Errors(source)
    for step in sorted(set(profile) - set(STEPS) - set(SECTIONS)):
        errors.add(
            step, f"unknown step; expected some of {', '.join(STEPS)}, {', '.join(SECTIONS)}"
        )
    result = copy.deepcopy(DEFAULT_PROFILE)
    for step in STEPS:
        if step in profile:
            result[step] = _step_spec(errors, profile[step], step)
    if profile.get("training") is not None:
        result["training"] = _training(errors, profile["training"]) or result["training"]
    result["images"] = _images(errors, profile.get("images") or {})
    for step in STEPS:
        shared = result["images"].get("image_pull_secrets") or []
        own = result[step].get("image_pull_secrets") or []
        if shared:
            result[step]["image_pull_secrets"] = list(dict.fromkeys([*own, *shared]))
    if profile.get("description") is not None:
        result["description"] = str(profile["description"])
    errors.raise_if_any()
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
    for key, value in (spec.get("labels") or {}).items():
        kubernetes.add_pod_label(task, label_key=key, label_value=value)
    if spec.get("image_pull_secrets"):
        kubernetes.set_image_pull_secrets(task, list(spec["image_pull_secrets"]))
    return task


def training_replica_resources(profile: dict) -> dict:
    """Returns the ``{"chief": spec, "worker": spec}`` dict handed to the TFJob builder."""
    return {"chief": profile["training_chief"], "worker": profile["training_worker"]}


def uses_gpu(profile: dict) -> bool:
    """Tells whether a profile gives the training replicas GPUs (they then need the GPU image)."""
    return any(profile[step].get("gpu_count") for step in ("training_chief", "training_worker"))


def training_image(profile: dict) -> str:
    """Returns the image of the TFJob replicas: the GPU flavour when the profile asks for GPUs.

    ``images.tensorflow`` / ``images.tensorflow_gpu`` of the profile override the defaults of
    :mod:`kfp_edge.images` (registry from ``KFP_EDGE_IMAGE_REGISTRY``).
    """
    from kfp_edge import images

    gpu = uses_gpu(profile)
    override = (profile.get("images") or {}).get("tensorflow_gpu" if gpu else "tensorflow")
    return override or images.training_image(gpu=gpu)


def spark_image(profile: dict) -> str:
    """Returns the SparkApplication's image: ``images.spark`` of the profile, or the default."""
    from kfp_edge import images

    return (profile.get("images") or {}).get("spark") or images.image("spark")


def spark_pod_settings(profile: dict) -> dict:
    """Returns the ``etl`` step's placement fields for the Spark driver and executor pods.

    Spark sizes its pods itself (driver and executor cores and memory), so only the fields that
    place a pod travel: node selector, tolerations, labels and image pull secrets.
    """
    spec = profile["etl"]
    keys = ("node_selector", "tolerations", "labels", "image_pull_secrets")
    return {k: spec[k] for k in keys if spec.get(k)}
