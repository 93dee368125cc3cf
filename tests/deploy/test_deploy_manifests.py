"""The kustomize manifests: render every overlay, validate against Kubernetes schemas, RBAC."""

from __future__ import annotations

import base64
import shutil

import pytest
import yaml

from kfp_edge import resources

KUBERNETES_VERSIONS = ("1.32.0", "1.37.0")
# Custom resources are not in the Kubernetes schemas; none is shipped today, and any kind added
# here must be validated some other way (the TFJob against the kubeflow-training SDK models).
CRD_KINDS = {"TFJob", "SparkApplication"}
ALLOWED_RULES = (
    {
        ("kubeflow.org", "tfjobs", verb)
        for verb in ("create", "get", "list", "watch", "patch", "delete")
    }
    | {
        ("sparkoperator.k8s.io", "sparkapplications", verb)
        for verb in ("create", "get", "list", "watch", "delete")
    }
    | {("", "pods", "get"), ("", "pods", "list"), ("", "pods", "watch"), ("", "pods/log", "get")}
)


def _index(objects):
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def test_every_kustomization_renders_the_same_objects(rendered):
    expected = {
        ("PersistentVolumeClaim", "kfp-edge-workspace"),
        ("PersistentVolumeClaim", "kfp-edge-minio"),
        ("Deployment", "kfp-edge-minio"),
        ("Service", "kfp-edge-minio"),
        ("Secret", "kfp-edge-minio"),
        ("Secret", "kfp-edge-minio-root"),
        ("Secret", "kfp-edge-minio-device"),
        ("ConfigMap", "kfp-edge-minio-policies"),
        ("Job", "kfp-edge-minio-setup"),
        ("NetworkPolicy", "kfp-edge-minio"),
        ("ServiceAccount", "kfp-edge-runner"),
        ("Role", "kfp-edge-runner"),
        ("RoleBinding", "kfp-edge-runner"),
    }
    assert set(_index(rendered["base"])) == expected
    assert set(_index(rendered["overlays/local"])) == expected
    assert set(_index(rendered["overlays/production"])) == expected | {
        ("ConfigMap", "kfp-edge-resources")
    }
    for name in ("overlays/local", "overlays/production"):
        namespaces = {o["metadata"].get("namespace") for o in rendered[name]}
        assert len(namespaces) == 1 and None not in namespaces, name


def test_small_renderer_agrees_with_kubectl(manifests_copy, renderers):
    """Cross-check: on machines without kubectl the small renderer stands in for it."""
    if "kubectl" not in renderers:
        pytest.skip("kubectl not installed: nothing to compare the small renderer with")
    for name in ("base", "overlays/local", "overlays/production"):
        lite = _index(renderers["lite"](manifests_copy / name))
        real = _index(renderers["kubectl"](manifests_copy / name))
        assert lite == real, name


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", ["base", "overlays/local", "overlays/production"])
def test_objects_validate_against_kubernetes_schemas(rendered, name, version):
    import kubernetes_validate

    checked = 0
    for obj in rendered[name]:
        if obj["kind"] in CRD_KINDS:
            continue
        kubernetes_validate.validate(obj, version, strict=True)
        checked += 1
    assert checked == len(rendered[name])


def test_schema_validation_rejects_a_broken_object(rendered):
    import kubernetes_validate

    pvc = dict(_index(rendered["base"])[("PersistentVolumeClaim", "kfp-edge-workspace")])
    pvc["spec"] = {**pvc["spec"], "accesModes": ["ReadWriteMany"]}  # misspelled field
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pvc, KUBERNETES_VERSIONS[0], strict=True)


def test_role_grants_exactly_the_listed_rights(rendered):
    for name, objects in rendered.items():
        kinds = {o["kind"] for o in objects}
        assert not kinds & {"ClusterRole", "ClusterRoleBinding"}, name
        role = _index(objects)[("Role", "kfp-edge-runner")]
        granted = set()
        for rule in role["rules"]:
            assert set(rule) <= {"apiGroups", "resources", "verbs"}, rule  # no resourceNames
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        assert "*" not in (group, resource, verb), rule
                        granted.add((group, resource, verb))
        assert granted == ALLOWED_RULES, name
        binding = _index(objects)[("RoleBinding", "kfp-edge-runner")]
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "kfp-edge-runner",
        }
        assert all(s["kind"] == "ServiceAccount" for s in binding["subjects"])
        if name != "base":
            namespace = role["metadata"]["namespace"]
            assert {s["namespace"] for s in binding["subjects"]} == {namespace}


def test_minio_runs_under_a_restricted_security_context(rendered):
    for name, objects in rendered.items():
        deployment = _index(objects)[("Deployment", "kfp-edge-minio")]
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            ctx = container["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False, name
            assert ctx["readOnlyRootFilesystem"] is True, name
            assert ctx["capabilities"] == {"drop": ["ALL"]}, name
            assert "@" in container["image"] or ":latest" not in container["image"]
            assert ":" in container["image"]
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            volumes = {v["name"]: v for v in pod["volumes"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], "scratch must be an emptyDir"


def test_minio_credentials_come_from_the_generated_secret(rendered):
    from kfp_edge.s3 import SECRET_KEY_TO_ENV

    for objects in rendered.values():
        index = _index(objects)
        secret = index[("Secret", "kfp-edge-minio")]
        # The keys pipeline steps map to env vars (kfp-kubernetes use_secret_as_env).
        assert set(secret["data"]) == set(SECRET_KEY_TO_ENV)
        decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        assert decoded == {"accesskey": "render-test-user", "secretkey": "render-test-password"}
        container = index[("Deployment", "kfp-edge-minio")]["spec"]["template"]["spec"][
            "containers"
        ][0]
        refs = {
            e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e
        }
        # MinIO's root user is its own Secret: the pipeline's keys are the publisher's only.
        assert refs["MINIO_ROOT_USER"] == {"name": "kfp-edge-minio-root", "key": "rootuser"}
        assert refs["MINIO_ROOT_PASSWORD"] == {"name": "kfp-edge-minio-root", "key": "rootpassword"}
        assert all("value" not in e or "secret" not in e["name"].lower() for e in container["env"])


def test_render_fails_without_the_credentials_file(manifests_copy, tmp_path, renderers):
    copy = tmp_path / "manifests"
    shutil.copytree(manifests_copy, copy)
    (copy / "base" / "minio-credentials.env").unlink()
    for render in renderers.values():
        with pytest.raises(Exception):  # noqa: B017 - kubectl and the small renderer differ
            render(copy / "overlays" / "local")


def test_workspace_volume_matches_the_pipeline_and_overlays(rendered):
    from kfp_edge.pipelines.edge_pipeline import WORKSPACE_PVC

    base = _index(rendered["base"])[("PersistentVolumeClaim", WORKSPACE_PVC)]
    assert base["spec"]["accessModes"] == ["ReadWriteMany"]
    local = _index(rendered["overlays/local"])[("PersistentVolumeClaim", WORKSPACE_PVC)]
    prod = _index(rendered["overlays/production"])[("PersistentVolumeClaim", WORKSPACE_PVC)]
    assert local["spec"]["accessModes"] == ["ReadWriteOnce"]  # one-node kind/minikube
    assert prod["spec"]["accessModes"] == ["ReadWriteMany"]
    assert prod["spec"]["storageClassName"]
    size = {
        n: resources.memory_bytes(p["spec"]["resources"]["requests"]["storage"])
        for n, p in (("base", base), ("local", local), ("prod", prod))
    }
    assert size["local"] < size["base"] < size["prod"]


def test_production_overlay_ships_a_valid_gpu_resource_profile(rendered, tmp_path):
    config_map = _index(rendered["overlays/production"])[("ConfigMap", "kfp-edge-resources")]
    path = tmp_path / "profile.yaml"
    path.write_text(config_map["data"]["profile.yaml"], encoding="utf-8")
    profile = resources.load_profile(path)
    for step in ("training_chief", "training_worker"):
        assert profile[step]["gpu_count"] >= 1
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in profile[
            step
        ]["tolerations"]
    assert yaml.safe_load(config_map["data"]["profile.yaml"])["training"]["workers"] > 1


def test_pipeline_reaches_minio_through_the_rendered_secret_and_service(rendered):
    from urllib.parse import urlsplit

    from kfp_edge.pipelines import edge_pipeline

    endpoint = urlsplit(edge_pipeline.MINIO_ENDPOINT)
    for name, objects in rendered.items():
        index = _index(objects)
        assert ("Secret", edge_pipeline.MINIO_SECRET) in index, name
        service = index[("Service", endpoint.hostname)]
        assert endpoint.port in {p["port"] for p in service["spec"]["ports"]}, name
