"""Compile-time cluster settings reach the pods created at run time (TFJob replicas, Spark pods).

The pipeline is compiled in a fresh interpreter with ``KFP_EDGE_IMAGE_REGISTRY`` set (images are
fixed when the components are defined), then the TFJob is built exactly as the launcher builds
it in the step, from the arguments the compiled YAML gives the training task.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from kfp_edge.tfjob_training.tfjob_spec import check_against_sdk
from kfp_edge.tfjob_training.training_step import build_job

REGISTRY = "registry.example.org/ml"


def _compile(tmp_path, profile: str) -> dict:
    out = tmp_path / f"edge.{profile}.yaml"
    code = (
        "from kfp_edge.pipelines.compile import compile_pipeline; "
        f"compile_pipeline('edge', {str(out)!r}, {profile!r})"
    )
    env = {**os.environ, "KFP_EDGE_IMAGE_REGISTRY": REGISTRY}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
    return next(d for d in yaml.safe_load_all(out.read_text()) if d)


def _argument(spec: dict, task: str, name: str):
    """The value a task receives: a constant, or the pipeline input's default."""
    value = spec["root"]["dag"]["tasks"][task]["inputs"]["parameters"][name]
    if "componentInputParameter" in value:
        root_inputs = spec["root"]["inputDefinitions"]["parameters"]
        return root_inputs[value["componentInputParameter"]]["defaultValue"]
    return value["runtimeValue"]["constant"]


@pytest.fixture(scope="module")
def gpu_multi(tmp_path_factory):
    return _compile(tmp_path_factory.mktemp("compiled"), "gpu-multi")


def test_registry_and_gpu_profile_reach_every_tfjob_replica(gpu_multi):
    image = _argument(gpu_multi, "tfjobtrainingop", "image")
    manifest = build_job(
        "/workspace/runs/r/data",
        "/workspace/runs/r/training",
        job="kfp-edge-train-r",
        image=image,
        workers=int(_argument(gpu_multi, "tfjobtrainingop", "workers")),
        replica_resources=_argument(gpu_multi, "tfjobtrainingop", "replica_resources"),
    )
    check_against_sdk(manifest)
    replicas = manifest["spec"]["tfReplicaSpecs"]
    assert replicas["Chief"]["replicas"] + replicas["Worker"]["replicas"] == 4
    for replica in replicas.values():
        (container,) = replica["template"]["spec"]["containers"]
        assert container["image"] == f"{REGISTRY}/kfp-edge-tensorflow:0.1.0-gpu"
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_registry_reaches_the_steps_and_the_spark_pods(gpu_multi):
    images = {e["container"]["image"] for e in gpu_multi["deploymentSpec"]["executors"].values()}
    assert images and all(i.startswith(f"{REGISTRY}/") for i in images)
    spark_image = _argument(gpu_multi, "sparketlop", "spark_image")
    assert spark_image == f"{REGISTRY}/kfp-edge-spark:0.1.0"


def test_cpu_profile_trains_on_the_cpu_image(tmp_path):
    spec = _compile(tmp_path, "cpu-small")
    assert _argument(spec, "tfjobtrainingop", "image").endswith("kfp-edge-tensorflow:0.1.0")


def test_the_spark_operator_settings_are_pipeline_parameters(gpu_multi):
    etl = gpu_multi["root"]["dag"]["tasks"]["sparketlop"]["inputs"]["parameters"]
    wired = {
        "engine": "etl_engine",
        "namespace": "spark_namespace",
        "service_account": "spark_service_account",
        "s3_secret": "spark_s3_secret",
        "spark_image": "spark_image",
    }
    for name, pipeline_input in wired.items():
        assert etl[name] == {"componentInputParameter": pipeline_input}, name
    defaults = gpu_multi["root"]["inputDefinitions"]["parameters"]
    assert defaults["spark_namespace"]["defaultValue"] == ""  # the pipeline's own namespace
    assert defaults["etl_engine"]["defaultValue"] == "local"
