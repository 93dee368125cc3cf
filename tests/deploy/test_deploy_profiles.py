"""Resource profiles: shipped ones, errors naming the key, what reaches kfp and the TFJob."""

# No `from __future__ import annotations`: kfp reads the components' annotations as types.

import pytest
import yaml

from kfp_edge import resources
from kfp_edge.resources import ProfileError


@pytest.mark.parametrize("name", resources.SHIPPED_PROFILES)
def test_shipped_profiles_load_complete(name):
    profile = resources.load_profile(name)
    assert set(resources.STEPS) <= set(profile)
    assert profile["training"]["workers"] >= 1
    for step in resources.STEPS:
        spec = profile[step]
        assert resources.validate_step_spec(spec, step) == spec


def test_gpu_profiles_put_gpus_on_training_replicas_only():
    single = resources.load_profile("gpu-single")
    multi = resources.load_profile("gpu-multi")
    assert single["training_chief"]["gpu_count"] == 1 and single["training"]["workers"] == 1
    assert multi["training"]["workers"] == 4
    for profile in (single, multi):
        for step in resources.STEPS:
            if step not in ("training_chief", "training_worker"):
                assert not profile[step].get("gpu_count"), step
    assert not resources.load_profile("cpu-small")["training_worker"].get("gpu_count")


def test_profile_file_overrides_named_steps_and_keeps_defaults(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("etl: {cpu_request: 3, memory_request: 1Gi}\ntraining: {workers: 3}\n")
    profile = resources.load_profile(str(path))
    assert profile["etl"] == {"cpu_request": "3", "memory_request": "1Gi"}  # replaced whole
    assert profile["gate"] == resources.DEFAULT_PROFILE["gate"]
    assert profile["training"] == {"workers": 3}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("trainer: {cpu_request: '1'}", "trainer: unknown step"),
        ("etl: {cpu_reqest: '1'}", "etl.cpu_reqest: unknown field"),
        ("etl: {cpu_request: '-1'}", "etl.cpu_request: quantity must not be negative"),
        ("etl: {memory_limit: -512Mi}", "etl.memory_limit: quantity must not be negative"),
        ("etl: {cpu_limit: lots}", "etl.cpu_limit: 'lots' is not a CPU quantity"),
        ("etl: {memory_request: 1.5Gi}", "etl.memory_request: '1.5Gi' is not a memory quantity"),
        ("etl: {memory_request: true}", "etl.memory_request: expected a memory quantity"),
        ("etl: {cpu_request: '4', cpu_limit: '2'}", "etl.cpu_request: 4 is above cpu_limit 2"),
        ("gate: {memory_request: 2Gi, memory_limit: 1Gi}", "gate.memory_request: 2Gi is above"),
        ("training_worker: {gpu_count: -1}", "training_worker.gpu_count: -1 is not a GPU count"),
        ("training_worker: {gpu_count: 1.5}", "training_worker.gpu_count: 1.5 is not a GPU count"),
        ("training_chief: {gpu_count: two}", "training_chief.gpu_count: 'two' is not a GPU count"),
        (
            "training_chief: {gpu_count: 1, gpu_resource: 'NVIDIA T4'}",
            "training_chief.gpu_resource: 'NVIDIA T4' is not an extended resource name",
        ),
        ("evaluation: {gpu_resource: nvidia.com/gpu}", "evaluation.gpu_resource: set without"),
        ("etl: {node_selector: {pool: 1}}", "etl.node_selector.pool: labels and values"),
        (
            "etl: {tolerations: [{key: k, operator: Maybe}]}",
            "etl.tolerations[0].operator: 'Maybe' is not one of",
        ),
        (
            "etl: {tolerations: [{key: k, operator: Exists, value: v}]}",
            "etl.tolerations[0].value: operator Exists takes no value",
        ),
        (
            "etl: {tolerations: [{key: k, effect: NoSchedul}]}",
            "etl.tolerations[0].effect: 'NoSchedul' is not one of",
        ),
        ("etl: {tolerations: [{key: k, colour: red}]}", "etl.tolerations[0].colour: unknown"),
        ("training: {workers: 0}", "training.workers: expected an integer of at least 1"),
        ("training: {replicas: 2}", "training.replicas: unknown field"),
        ("- etl", "expected a mapping of steps"),
        ("", "the profile is empty"),
        ("etl: [unclosed", "not valid YAML"),
    ],
)
def test_bad_profile_errors_name_the_key(tmp_path, text, message):
    path = tmp_path / "bad-profile.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProfileError) as info:
        resources.load_profile(path)
    assert message in str(info.value)
    assert "bad-profile.yaml" in str(info.value)


def test_unknown_profile_name_lists_the_shipped_ones():
    with pytest.raises(ProfileError, match="gpu-huge.*cpu-small, gpu-single, gpu-multi"):
        resources.load_profile("gpu-huge")


def test_what_the_profile_validator_accepts_kfp_accepts_too(tmp_path):
    """Every quantity form the validator lets through is taken by kfp's own task setters."""
    from kfp import compiler, dsl

    @dsl.component(base_image="python:3.11-slim")
    def noop() -> int:
        return 1

    @dsl.pipeline(name="quantities")
    def quantities():
        for cpu, memory in (("2", "4Gi"), ("0.5", "512Mi"), ("250m", "1G"), (1, "1024")):
            spec = resources.validate_step_spec(
                {"cpu_request": cpu, "memory_request": memory, "gpu_count": "2"}, "etl"
            )
            resources.apply_to_task(noop(), spec)

    out = tmp_path / "quantities.yaml"
    compiler.Compiler().compile(quantities, str(out))
    assert out.read_text().count("resourceCpuRequest") == 4


def _compile(tmp_path, spec: dict) -> tuple[dict, dict]:
    from kfp import compiler, dsl

    @dsl.component(base_image="python:3.11-slim")
    def step() -> int:
        return 1

    @dsl.pipeline(name="profile-check")
    def pipeline():
        resources.apply_to_task(step(), spec)

    out = tmp_path / "pipeline.yaml"
    compiler.Compiler().compile(pipeline, str(out))
    docs = list(yaml.safe_load_all(out.read_text()))
    container = docs[0]["deploymentSpec"]["executors"]["exec-step"]["container"]
    platform = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-step"]
    return container["resources"], platform


def test_gpu_profile_reaches_the_compiled_kfp_task(tmp_path):
    spec = resources.load_profile("gpu-multi")["training_worker"]
    container_resources, platform = _compile(tmp_path, spec)
    accelerator = container_resources["accelerator"]
    assert accelerator["resourceCount"] == "1"
    assert accelerator["resourceType"] == "nvidia.com/gpu"
    assert container_resources["resourceCpuRequest"] == "4"
    assert container_resources["resourceMemoryLimit"] == "24Gi"
    assert platform["nodeSelector"] == {"labels": {"nvidia.com/gpu.present": "true"}}
    assert platform["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]


@pytest.mark.parametrize("name", resources.SHIPPED_PROFILES)
def test_profile_reaches_the_tfjob_replicas(name):
    """Each shipped profile through the TFJob builder: SDK models and Kubernetes pod schema."""
    import kubernetes_validate

    from kfp_edge.tfjob_training.tfjob_spec import build_tfjob, check_against_sdk

    profile = resources.load_profile(name)
    job = build_tfjob(
        "kfp-edge-train-profile",
        ["--epochs", "1"],
        image="ghcr.io/kfp-edge/kfp-edge-tensorflow:0.1.0",
        workers=profile["training"]["workers"],
        replica_resources=resources.training_replica_resources(profile),
    )
    check_against_sdk(job)
    replicas = job["spec"]["tfReplicaSpecs"]
    assert sum(r["replicas"] for r in replicas.values()) == profile["training"]["workers"]
    for replica_type, replica in replicas.items():
        step = "training_chief" if replica_type == "Chief" else "training_worker"
        spec = profile[step]
        template = replica["template"]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, **template}
        pod["metadata"] = {"name": f"{name}-{replica_type.lower()}"}
        kubernetes_validate.validate(pod, "1.37.0", strict=True)
        container = template["spec"]["containers"][0]
        assert container["resources"]["requests"]["memory"] == spec["memory_request"]
        if spec.get("gpu_count"):
            assert container["resources"]["limits"]["nvidia.com/gpu"] == str(spec["gpu_count"])
            assert template["spec"]["nodeSelector"] == spec["node_selector"]
            assert template["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"
        else:
            assert "nvidia.com/gpu" not in container["resources"].get("limits", {})


@pytest.mark.parametrize("name", resources.SHIPPED_PROFILES)
def test_compile_edge_pipeline_with_each_profile(tmp_path, name):
    from kfp_edge.pipelines.compile import compile_pipeline

    path = compile_pipeline("edge", tmp_path / f"{name}.yaml", resources=name)
    docs = list(yaml.safe_load_all(path.read_text()))
    profile = resources.load_profile(name)
    text = path.read_text()
    assert profile["etl"]["memory_request"] in text
    platform = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    launcher = [e for n, e in platform.items() if "tfjob" in n or "training" in n]
    assert launcher, sorted(platform)
    # GPUs go to the TFJob replicas (a component input), never to the launcher pod.
    executors = docs[0]["deploymentSpec"]["executors"]
    for executor in executors.values():
        assert "accelerator" not in executor["container"].get("resources", {})
    (training,) = [
        t
        for t in docs[0]["root"]["dag"]["tasks"].values()
        if "replica_resources" in t.get("inputs", {}).get("parameters", {})
    ]
    constant = training["inputs"]["parameters"]["replica_resources"]["runtimeValue"]["constant"]
    for role, step in (("chief", "training_chief"), ("worker", "training_worker")):
        expected = dict(profile[step])
        if "gpu_count" in expected:  # a protobuf Struct carries every number as a double
            assert constant[role].pop("gpu_count") == float(expected.pop("gpu_count"))
        assert constant[role] == expected, role


def test_compile_cli_reports_a_bad_profile_by_key(tmp_path, capsys):
    from kfp_edge.app import cli

    profile = tmp_path / "ops.yaml"
    profile.write_text("training_worker: {gpu_count: 2.5}\n")
    output = tmp_path / "never.yaml"
    assert cli.main(["compile", "--resources", str(profile), "-o", str(output)]) == 2
    err = capsys.readouterr().err
    assert "ops.yaml: training_worker.gpu_count: 2.5 is not a GPU count kfp accepts" in err
    assert not output.exists()


KUBERNETES_SHAPED = """
images:
  imagePullSecrets: [regcred]
training_launcher:
  resources: {requests: {cpu: 250m, memory: 512Mi}, limits: {memory: 1Gi}}
  nodeSelector: {pool: cpu}
  labels: {kueue.x-k8s.io/queue-name: team-a}
  tolerations:
    - {key: spot, operator: Exists, effect: NoExecute, tolerationSeconds: 120}
training_worker:
  resources:
    requests: {cpu: "4", memory: 16Gi}
    limits: {memory: 24Gi, nvidia.com/gpu: 1}
  priorityClassName: training-high
  labels: {kueue.x-k8s.io/queue-name: team-a}
  affinity:
    nodeAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 50
          preference:
            matchExpressions: [{key: zone, operator: In, values: [a]}]
    podAntiAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 10
          podAffinityTerm:
            topologyKey: kubernetes.io/hostname
            labelSelector: {matchLabels: {app.kubernetes.io/component: training}}
  tolerations:
    - {key: nvidia.com/gpu, operator: Exists, effect: NoExecute, tolerationSeconds: 300}
"""


def test_kubernetes_shape_reads_like_the_short_form(tmp_path):
    path = tmp_path / "k8s.yaml"
    path.write_text(KUBERNETES_SHAPED)
    profile = resources.load_profile(path)
    worker = profile["training_worker"]
    assert worker["cpu_request"] == "4" and worker["memory_limit"] == "24Gi"
    assert (worker["gpu_count"], worker["gpu_resource"]) == (1, "nvidia.com/gpu")
    assert worker["priority_class_name"] == "training-high"
    assert worker["tolerations"][0]["toleration_seconds"] == 300
    short = resources.validate_step_spec(
        {"cpu_request": "250m", "memory_request": "512Mi", "memory_limit": "1Gi"}, "x"
    )
    launcher = profile["training_launcher"]
    assert {k: launcher[k] for k in short} == short
    assert all(profile[s]["image_pull_secrets"] == ["regcred"] for s in resources.STEPS)


def test_every_field_reaches_the_tfjob_replicas(tmp_path):
    """The builder used to read ``tolerationSeconds`` only and drop ``toleration_seconds``."""
    import kubernetes_validate

    from kfp_edge.tfjob_training.tfjob_spec import build_tfjob, check_against_sdk

    path = tmp_path / "k8s.yaml"
    path.write_text(KUBERNETES_SHAPED)
    profile = resources.load_profile(path)
    job = build_tfjob(
        "kfp-edge-train-k8s",
        [],
        image="i",
        workers=2,
        replica_resources=resources.training_replica_resources(profile),
    )
    check_against_sdk(job)
    template = job["spec"]["tfReplicaSpecs"]["Worker"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": template["spec"]}
    kubernetes_validate.validate(pod, "1.37.0", strict=True)
    spec = template["spec"]
    assert spec["tolerations"][0]["tolerationSeconds"] == 300
    assert spec["priorityClassName"] == "training-high"
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["affinity"]["podAntiAffinity"] and spec["affinity"]["nodeAffinity"]
    assert template["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert spec["securityContext"]["runAsNonRoot"] and spec["securityContext"]["fsGroup"]
    container = spec["containers"][0]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_every_field_reaches_the_launcher_pod(tmp_path):
    path = tmp_path / "k8s.yaml"
    path.write_text(KUBERNETES_SHAPED)
    spec = resources.load_profile(path)["training_launcher"]
    container_resources, platform = _compile(tmp_path, spec)
    assert container_resources["resourceCpuRequest"] == "250m"
    assert platform["podMetadata"]["labels"] == {"kueue.x-k8s.io/queue-name": "team-a"}
    assert [s["secretName"] for s in platform["imagePullSecret"]] == ["regcred"]
    assert platform["nodeSelector"] == {"labels": {"pool": "cpu"}}
    assert platform["tolerations"][0]["tolerationSeconds"] == "120"  # int64 in proto JSON


def test_all_errors_of_a_profile_are_reported_at_once(tmp_path):
    path = tmp_path / "ops.yaml"
    path.write_text(
        "etl: {cpu_request: lots, nodeSelector: {pool: 1}}\n"
        "compression: {resources: {requests: {memory: 1.5Gi}}}\n"
        "gate: {priorityClassName: high, resources: {limits: {ephemeral-storage: 1Gi}}}\n"
        "trainer: {}\n"
        "training: {workers: 0}\n"
    )
    with pytest.raises(ProfileError) as info:
        resources.load_profile(path)
    lines = str(info.value).splitlines()
    assert lines[0] == "7 errors in the profile:"
    keys = [line.split(": ")[1] for line in lines[1:]]
    assert keys == [
        "trainer",
        "etl.cpu_request",
        "etl.nodeSelector.pool",  # as the profile spells it
        "compression.resources.requests.memory",
        "gate.resources.limits.ephemeral-storage",
        "gate.priorityClassName",
        "training.workers",
    ]
    assert all(line.startswith(f"{path}: ") for line in lines[1:])


def test_kfp_steps_refuse_what_kfp_cannot_give_their_pod(tmp_path):
    # The KFP 2.5 driver ignores node affinity (kubeflow/pipelines 2.5.0 driver.go has no
    # GetNodeAffinity; 2.14.0 k8s.go has): refused, not silently dropped.
    with pytest.raises(ProfileError, match="training_launcher.affinity: a kfp step's pod cannot"):
        resources.validate_profile({"training_launcher": {"affinity": {"nodeAffinity": {}}}})
    with pytest.raises(ProfileError, match="given twice"):
        resources.validate_profile({"etl": {"nodeSelector": {}, "node_selector": {}}})
