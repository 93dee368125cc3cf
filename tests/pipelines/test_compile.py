"""The compiled pipelines: golden files, kfp's own loader, and the promises of the IR."""

import subprocess
import sys

import pytest
import yaml

from kfp_edge.pipelines.compile import compile_pipeline


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    path = compile_pipeline("edge", tmp_path_factory.mktemp("c") / "edge.yaml")
    docs = list(yaml.safe_load_all(path.read_text()))
    return path, docs[0], docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_kfp_loads_the_compiled_pipeline(compiled):
    from kfp.components import load_component_from_file

    path, _, _ = compiled
    component = load_component_from_file(str(path))
    assert component.name == "kfp-edge"
    assert {"workspace", "dataset", "input_path", "min_accuracy", "variants"} <= set(
        component.component_spec.inputs
    )


def test_every_step_mounts_the_workspace_and_does_not_cache(compiled):
    _, spec, executors = compiled
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {
        "runcontextop",
        "sparketlop",
        "tfjobtrainingop",
        "foresttrainingop",
        "forestexportop",
        "compressionop",
        "evaluationop",
        "gateop",
        "modelstoreop",
    }
    for name, task in tasks.items():
        assert task["cachingOptions"] == {}, f"{name} may be cached"  # enableCache: false
        executor = executors[task["componentRef"]["name"].replace("comp-", "exec-")]
        assert (
            executor["pvcMount"]
            == [
                {
                    "constant": "kfp-edge-workspace",
                    "mountPath": "/workspace",
                    "pvcNameParameter": {"runtimeValue": {"constant": "kfp-edge-workspace"}},
                }
            ]
            or executor["pvcMount"][0]["mountPath"] == "/workspace"
        )


def test_steps_have_cpu_and_memory_requests_and_our_images(compiled):
    from kfp_edge.images import SPARK_IMAGE, TENSORFLOW_IMAGE

    _, spec, _ = compiled
    for name, executor in spec["deploymentSpec"]["executors"].items():
        container = executor["container"]
        assert container["image"] in {SPARK_IMAGE, TENSORFLOW_IMAGE}, name
        if name == "exec-runcontextop":
            continue
        assert container["resources"]["resourceCpuRequest"], name
        assert container["resources"]["resourceMemoryRequest"], name
        # kfp must not pip-install itself at run time: our images carry it.
        assert "pip install" not in " ".join(container["command"]), name


def test_compiled_yaml_holds_no_credentials(compiled):
    import re

    path, spec, executors = compiled
    text = path.read_text()
    assert not re.search(r"AKIA[0-9A-Z]{16}|minioadmin|-----BEGIN [A-Z ]*PRIVATE KEY", text)
    for name, executor in spec["deploymentSpec"]["executors"].items():
        for env in executor["container"].get("env", []):
            assert not re.search(r"SECRET|PASSWORD|ACCESS_KEY|TOKEN", env["name"]), (name, env)
    # Credentials reach steps only as references to a Kubernetes Secret.
    for executor in executors.values():
        for ref in executor.get("secretAsEnv", []):
            assert set(ref) <= {"secretName", "secretNameParameter", "keyToEnv", "optional"}


def test_kfp_edge_compile_imports_neither_tensorflow_nor_pyspark(tmp_path):
    out = tmp_path / "p.yaml"
    code = (
        "import sys\nfrom kfp_edge.app.cli import main\n"
        f"assert main(['compile', '-o', {str(out)!r}]) == 0\n"
        "print(sorted(m for m in ('tensorflow', 'pyspark', 'tf_keras') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert out.exists() and "kfp-edge" in out.read_text()


def test_compile_rejects_unknown_pipeline(tmp_path):
    with pytest.raises(ValueError, match="unknown pipeline"):
        compile_pipeline("nope", tmp_path / "x.yaml")
    assert not list(tmp_path.iterdir())


def test_minio_credentials_come_from_the_manifests_secret(compiled):
    _, spec, executors = compiled
    for step in ("exec-modelstoreop", "exec-sparketlop"):
        refs = executors[step]["secretAsEnv"]
        assert refs[0]["secretName"] == "kfp-edge-minio"
        assert {k["secretKey"] for k in refs[0]["keyToEnv"]} == {"accesskey", "secretkey"}
    env = {
        e["name"]: e["value"]
        for e in spec["deploymentSpec"]["executors"]["exec-modelstoreop"]["container"]["env"]
    }
    assert env["KFP_EDGE_S3_ENDPOINT"] == "http://kfp-edge-minio:9000"
