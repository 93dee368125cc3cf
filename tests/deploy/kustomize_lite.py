"""A small kustomize renderer: just the features manifests/ uses, for machines without kubectl.

Supported: ``resources`` (files and directories with their own kustomization), ``namespace``,
``labels`` (pairs, without selectors or templates), ``secretGenerator`` and
``configMapGenerator`` (``envs``, ``files``, ``literals``) with ``disableNameSuffixHash: true``,
and inline JSON 6902 ``patches`` with a kind/name target. Anything else raises, so a manifest
that outgrows this renderer fails loudly instead of rendering wrong. When kubectl is installed,
test_deploy_manifests.py checks that this renderer and ``kubectl kustomize`` agree.
"""

from __future__ import annotations

import base64
import copy
from pathlib import Path

import yaml

SUPPORTED_KEYS = {
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "labels",
    "patches",
    "secretGenerator",
    "configMapGenerator",
    "generatorOptions",
}
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
}


def _env_pairs(path: Path) -> dict:
    pairs = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise ValueError(f"{path}:{number}: expected KEY=VALUE")
        key, value = line.split("=", 1)
        pairs[key.strip()] = value
    return pairs


def _generate(root: Path, spec: dict, kind: str) -> dict:
    unknown = set(spec) - {"name", "type", "envs", "files", "literals", "options"}
    if unknown:
        raise ValueError(f"{root}: unsupported generator fields {sorted(unknown)}")
    data: dict = {}
    for env in spec.get("envs", []):
        data.update(_env_pairs(root / env))
    for literal in spec.get("literals", []):
        key, value = literal.split("=", 1)
        data[key] = value
    for entry in spec.get("files", []):
        key, _, rel = entry.partition("=") if "=" in entry else (Path(entry).name, "", entry)
        data[key] = (root / rel).read_text(encoding="utf-8")
    obj = {"apiVersion": "v1", "kind": kind, "metadata": {"name": spec["name"]}}
    if kind == "Secret":
        obj["type"] = spec.get("type", "Opaque")
        obj["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    else:
        obj["data"] = data
    return obj


def _pointer(path: str) -> list:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]


def _json_patch(obj: dict, ops: list) -> None:
    for op in ops:
        *parents, last = _pointer(op["path"])
        node = obj
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        kind = op["op"]
        if isinstance(node, list):
            index = len(node) if last == "-" else int(last)
            if kind == "add":
                node.insert(index, copy.deepcopy(op["value"]))
            elif kind == "replace":
                node[index] = copy.deepcopy(op["value"])
            elif kind == "remove":
                del node[index]
            else:
                raise ValueError(f"unsupported JSON patch op {kind!r}")
        else:
            if kind in ("add", "replace"):
                if kind == "replace" and last not in node:
                    raise KeyError(f"replace of missing path {op['path']}")
                node[last] = copy.deepcopy(op["value"])
            elif kind == "remove":
                del node[last]
            else:
                raise ValueError(f"unsupported JSON patch op {kind!r}")


def render(directory: str | Path) -> list[dict]:
    """Renders the kustomization in ``directory`` and returns its objects."""
    root = Path(directory)
    kustomization = yaml.safe_load((root / "kustomization.yaml").read_text(encoding="utf-8"))
    unknown = set(kustomization) - SUPPORTED_KEYS
    if unknown:
        raise ValueError(f"{root}: kustomize_lite does not support {sorted(unknown)}")
    objects: list[dict] = []
    for entry in kustomization.get("resources", []):
        path = root / entry
        if path.is_dir():
            objects.extend(render(path))
        else:
            objects.extend(d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d)
    options = kustomization.get("generatorOptions", {})
    generators = [("Secret", g) for g in kustomization.get("secretGenerator", [])]
    generators += [("ConfigMap", g) for g in kustomization.get("configMapGenerator", [])]
    if generators and not options.get("disableNameSuffixHash"):
        raise ValueError(f"{root}: kustomize_lite needs disableNameSuffixHash: true")
    objects.extend(_generate(root, spec, kind) for kind, spec in generators)
    for patch in kustomization.get("patches", []):
        target = patch["target"]
        matched = [
            o
            for o in objects
            if o["kind"] == target["kind"] and o["metadata"]["name"] == target["name"]
        ]
        if not matched:
            raise ValueError(f"{root}: patch target {target} matches nothing")
        for obj in matched:
            _json_patch(obj, yaml.safe_load(patch["patch"]))
    namespace = kustomization.get("namespace")
    if namespace:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = namespace
            if obj["kind"] in ("RoleBinding", "ClusterRoleBinding"):
                for subject in obj.get("subjects", []):
                    if subject.get("kind") == "ServiceAccount" and not subject.get("namespace"):
                        subject["namespace"] = namespace
    for label_set in kustomization.get("labels", []):
        if label_set.get("includeSelectors") or label_set.get("includeTemplates"):
            raise ValueError(f"{root}: kustomize_lite labels only touch metadata")
        for obj in objects:
            obj["metadata"].setdefault("labels", {}).update(label_set["pairs"])
    return objects
