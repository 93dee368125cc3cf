"""The TFJob spec: golden manifests and a strict field check against the kubeflow-training SDK.

The golden manifests are built in ``kfp_edge.app.golden`` (``make golden`` regenerates them).
"""

from __future__ import annotations

import copy

import pytest
import yaml

from kfp_edge.app.golden import GOLDEN_DIR, manifests
from kfp_edge.app.golden import TFJOB_IMAGE as IMAGE
from kfp_edge.tfjob_training.tfjob_spec import (
    build_tfjob,
    check_against_sdk,
    job_name,
    trainer_args,
)

GOLDEN = GOLDEN_DIR / "manifests"


CASES = {
    "tfjob_cpu_2_workers": manifests.tfjob_cpu_2_workers,
    "tfjob_gpu_1_chief_3_workers": manifests.tfjob_gpu_1_chief_3_workers,
}


def _dump(manifest: dict) -> str:
    return yaml.safe_dump(manifest, sort_keys=True, default_flow_style=False)


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_field_exists_in_the_sdk_models(case):
    manifest = yaml.safe_load((GOLDEN / f"{case}.yaml").read_text())
    checked = check_against_sdk(manifest)
    assert checked > 60
    # and the SDK rebuilds the job into its models (KubeflowOrgV1TFJob, V1PodTemplateSpec, ...)
    # and serializes it back without losing or changing a field
    from kubeflow.training import models
    from kubeflow.training.api_client import ApiClient

    client = ApiClient()
    job = client._ApiClient__deserialize(manifest, "KubeflowOrgV1TFJob")
    assert isinstance(job, models.KubeflowOrgV1TFJob)
    assert isinstance(job.spec.run_policy, models.KubeflowOrgV1RunPolicy)
    assert job.spec.run_policy.backoff_limit == manifest["spec"]["runPolicy"]["backoffLimit"]
    assert client.sanitize_for_serialization(job) == manifest


@pytest.mark.parametrize("case", sorted(CASES))
def test_replica_pod_templates_are_valid_kubernetes_pods(case):
    """Each replica's pod template, as the operator turns it into a Pod, validates strictly
    against the Kubernetes API schema (kubernetes-validate)."""
    import kubernetes_validate

    manifest = yaml.safe_load((GOLDEN / f"{case}.yaml").read_text())
    version = kubernetes_validate.latest_version()
    for rtype, replica in manifest["spec"]["tfReplicaSpecs"].items():
        template = replica["template"]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{manifest['metadata']['name']}-{rtype.lower()}-0",
                **template["metadata"],
            },
            "spec": template["spec"],
        }
        kubernetes_validate.validate(pod, version, strict=True)
    broken = copy.deepcopy(pod)
    broken["spec"]["containers"][0]["volumeMount"] = broken["spec"]["containers"][0].pop(
        "volumeMounts"
    )
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)


def test_the_old_launchers_mistakes_are_caught():
    """Policy fields at spec level, and the misspelt deadline, are not TFJob fields."""
    manifest = manifests.tfjob_cpu_2_workers()
    wrong_level = copy.deepcopy(manifest)
    wrong_level["spec"]["backoffLimit"] = 3
    with pytest.raises(ValueError, match=r"\.spec\.backoffLimit: no field"):
        check_against_sdk(wrong_level)
    misspelt = copy.deepcopy(manifest)
    misspelt["spec"]["runPolicy"]["activeDeadlineSecond"] = 60
    with pytest.raises(ValueError, match="activeDeadlineSecond"):
        check_against_sdk(misspelt)
    deep = copy.deepcopy(manifest)
    deep["spec"]["tfReplicaSpecs"]["Chief"]["template"]["spec"]["containers"][0]["gpu"] = 1
    with pytest.raises(ValueError, match=r"containers\[0\]\.gpu"):
        check_against_sdk(deep)
    wrong_type = copy.deepcopy(manifest)
    wrong_type["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] = "1"
    with pytest.raises(ValueError, match="expected int"):
        check_against_sdk(wrong_type)


def test_gpu_resources_reach_every_training_replica():
    manifest = manifests.tfjob_gpu_1_chief_3_workers()
    specs = manifest["spec"]["tfReplicaSpecs"]
    assert specs["Chief"]["replicas"] == 1 and specs["Worker"]["replicas"] == 3
    for rtype in ("Chief", "Worker"):
        replica = specs[rtype]
        assert replica["restartPolicy"] == "ExitCode"
        pod = replica["template"]["spec"]
        container = pod["containers"][0]
        assert container["name"] == "tensorflow"
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
        assert pod["volumes"] == [
            {"name": "workspace", "persistentVolumeClaim": {"claimName": "edge-ws"}}
        ]
        assert container["volumeMounts"] == [{"name": "workspace", "mountPath": "/workspace"}]
        assert container["command"] == ["python", "-m", "kfp_edge.tfjob_training.replica_trainer"]
    assert manifest["spec"]["runPolicy"] == {
        "backoffLimit": 5,
        "activeDeadlineSeconds": 7200,
        "cleanPodPolicy": "All",
        "ttlSecondsAfterFinished": 3600,
    }


def test_one_replica_is_a_chief_alone_and_bad_specs_are_refused():
    args = trainer_args("/d", "/o", "solo")
    solo = build_tfjob("solo", args, image=IMAGE, workers=1)
    assert list(solo["spec"]["tfReplicaSpecs"]) == ["Chief"]
    with pytest.raises(ValueError, match="workers must be >= 1"):
        build_tfjob("solo", args, image=IMAGE, workers=0)
    with pytest.raises(ValueError, match="DNS-1035"):
        build_tfjob("2026-run", args, image=IMAGE)  # the operator's webhook refuses a digit first
    with pytest.raises(ValueError, match="DNS-1035"):
        build_tfjob("Bad_Name", args, image=IMAGE)
    with pytest.raises(ValueError, match="restart_policy"):
        build_tfjob("solo", args, image=IMAGE, restart_policy="Sometimes")
    with pytest.raises(ValueError, match="unknown replica types"):
        build_tfjob("solo", args, image=IMAGE, replica_resources={"ps": {}})
    with pytest.raises(ValueError, match="toleration 0"):
        build_tfjob(
            "solo",
            args,
            image=IMAGE,
            replica_resources={"worker": {"tolerations": [{"value": "x"}]}},
        )


def test_an_evaluator_replica_is_in_the_job_and_its_cluster():
    from kfp_edge.tfjob_training.local_tfjob_engine import tf_configs

    args = trainer_args("/d", "/o", "with-eval")
    manifest = build_tfjob(
        "with-eval",
        args,
        image=IMAGE,
        workers=3,
        evaluator=True,
        replica_resources={"evaluator": {"cpu_request": "500m"}},
    )
    check_against_sdk(manifest)
    evaluator = manifest["spec"]["tfReplicaSpecs"]["Evaluator"]
    assert evaluator["replicas"] == 1
    assert evaluator["template"]["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "500m"}
    }
    configs = tf_configs(manifest, ports=[1, 2, 3, 4])
    assert set(configs[("Evaluator", 0)]["cluster"]) == {"chief", "worker", "evaluator"}
    assert configs[("Evaluator", 0)]["task"] == {"type": "evaluator", "index": 0}


def test_job_names_are_deterministic_dns_labels():
    a = job_name("My_Run.2026-11-23T10:00:00" + "x" * 80)
    assert a == job_name("My_Run.2026-11-23T10:00:00" + "x" * 80)
    assert len(a) <= 50 and a.islower()
    assert job_name("run-a") != job_name("run-b")


def test_gang_scheduling_asks_for_every_replica_at_once():
    args = trainer_args("/d", "/o", "gang")
    manifest = build_tfjob("gang", args, image=IMAGE, workers=4, gang_scheduling=True)
    check_against_sdk(manifest)
    assert manifest["spec"]["runPolicy"]["schedulingPolicy"] == {"minAvailable": 4}
    assert "schedulingPolicy" not in build_tfjob("solo", args, image=IMAGE)["spec"]["runPolicy"]
