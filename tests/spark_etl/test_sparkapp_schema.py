"""The SparkApplication against the Spark Operator's own CRD schema (v2.5.2), field by field.

``data/sparkapplications.crd.v2.5.2.yaml.gz`` is kubeflow/spark-operator's
config/crd/bases/sparkoperator.k8s.io_sparkapplications.yaml at tag v2.5.2 (commit
43afb8bbd32463037d8fb6e414e252c69081882b, Apache-2.0), gzipped. The API server prunes fields a
structural schema does not declare *silently*, so besides the schema's types (jsonschema) every
field of the manifest must exist at its place.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import jsonschema
import pytest
import yaml

from kfp_edge import resources
from kfp_edge.app.golden import manifests
from kfp_edge.spark_etl.sparkapp import build_spark_application

CRD = Path(__file__).with_name("data") / "sparkapplications.crd.v2.5.2.yaml.gz"


@pytest.fixture(scope="module")
def schema() -> dict:
    crd = yaml.safe_load(gzip.decompress(CRD.read_bytes()))
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta2"]
    return version["schema"]["openAPIV3Schema"]


def undeclared_fields(value, schema: dict, path: str = "") -> list[str]:
    """Returns the paths of fields the structural schema would prune."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(value, list):
        items = schema.get("items", {})
        return [p for i, v in enumerate(value) for p in undeclared_fields(v, items, f"{path}[{i}]")]
    if not isinstance(value, dict):
        return []
    properties = schema.get("properties")
    extra = schema.get("additionalProperties")
    found = []
    for key, item in value.items():
        if properties is not None and key in properties:
            found += undeclared_fields(item, properties[key], f"{path}.{key}")
        elif isinstance(extra, dict):
            found += undeclared_fields(item, extra, f"{path}.{key}")
        elif properties is not None:  # an object with declared fields only
            found.append(f"{path}.{key}")
    return found


def _full_manifest() -> dict:
    profile = resources.validate_profile(
        {
            "etl": {
                "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
                "nodeSelector": {"pool": "spark"},
                "tolerations": [
                    {"key": "spot", "operator": "Exists", "effect": "NoExecute"},
                    {
                        "key": "d",
                        "operator": "Exists",
                        "effect": "NoExecute",
                        "tolerationSeconds": 9,
                    },
                ],
                "labels": {"kueue.x-k8s.io/queue-name": "etl"},
            },
            "images": {"imagePullSecrets": ["regcred"]},
        }
    )
    return build_spark_application(
        name="kfp-edge-etl-r1",
        namespace="team",
        image="registry.example.org/ml/kfp-edge-spark:0.1.0",
        output_dir="/workspace/runs/r1/data",
        options={"dataset": "iris"},
        workspace_pvc="kfp-edge-workspace",
        s3_secret="kfp-edge-minio",
        s3_endpoint="http://kfp-edge-minio:9000",
        pod_settings=resources.spark_pod_settings(profile),
    )


@pytest.mark.parametrize("build", [manifests.sparkapplication, _full_manifest])
def test_manifest_validates_against_the_operator_crd(schema, build):
    manifest = build()
    jsonschema.validate(manifest, schema)
    assert undeclared_fields(manifest["spec"], schema["properties"]["spec"], ".spec") == []


def test_an_undeclared_field_is_caught(schema):
    manifest = manifests.sparkapplication()
    manifest["spec"]["driver"]["priorityClass"] = "high"  # the field is priorityClassName
    manifest["spec"]["ttlSecondsAfterFinished"] = 5  # the TFJob's name for timeToLiveSeconds
    found = undeclared_fields(manifest["spec"], schema["properties"]["spec"], ".spec")
    assert sorted(found) == [".spec.driver.priorityClass", ".spec.ttlSecondsAfterFinished"]


def test_spark_pods_get_the_profile_placement_and_the_restricted_context():
    manifest = _full_manifest()
    spec = manifest["spec"]
    assert spec["imagePullSecrets"] == ["regcred"]
    assert spec["timeToLiveSeconds"] == 86400
    for role in ("driver", "executor"):
        pod = spec[role]
        assert pod["nodeSelector"] == {"pool": "spark"}
        assert pod["tolerations"][1]["tolerationSeconds"] == 9
        assert pod["labels"]["kueue.x-k8s.io/queue-name"] == "etl"
        assert pod["labels"]["app.kubernetes.io/part-of"] == "kfp-edge"
        assert pod["podSecurityContext"]["runAsNonRoot"] is True
        assert pod["podSecurityContext"]["fsGroup"] == 10001
        assert pod["podSecurityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert pod["securityContext"]["allowPrivilegeEscalation"] is False
    # The etl step's CPU and memory size the kfp step's pod; Spark sizes its own pods.
    assert "resources" not in spec["driver"] and spec["driver"]["cores"] == 1
