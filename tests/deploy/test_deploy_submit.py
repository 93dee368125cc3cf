"""`kfp-edge submit` against a fake KFP API: no Kubeflow Pipelines server exists on this machine.

The fake (conftest.FakeKfpApi) is a real HTTP server on 127.0.0.1 speaking the v2beta1 REST
endpoints kfp.Client uses; the client, its auth and the compiled pipeline are all real.
"""

# No `from __future__ import annotations`: kfp reads the components' annotations as types.

import pytest
from kfp import compiler, dsl

from kfp_edge.app import cli, submit


@dsl.component(base_image="python:3.11-slim")
def _echo(epochs: int, min_accuracy: float, dataset: str, variants: list) -> str:
    return f"{dataset}:{epochs}:{min_accuracy}:{variants}"


@dsl.pipeline(name="submit-check")
def _pipeline(
    epochs: int = 10,
    min_accuracy: float = 0.9,
    dataset: str = "iris",
    variants: list = ["float32"],  # noqa: B006 - a kfp default, never mutated
):
    _echo(epochs=epochs, min_accuracy=min_accuracy, dataset=dataset, variants=variants)


@pytest.fixture
def package(tmp_path):
    path = tmp_path / "submit_check.yaml"
    compiler.Compiler().compile(_pipeline, str(path))
    return path


pytestmark = pytest.mark.usefixtures("isolated_kfp_context")


def test_submit_creates_a_typed_run_with_the_token(fake_kfp, package, monkeypatch):
    fake_kfp.token = "token-for-the-fake-api"
    monkeypatch.setenv(submit.TOKEN_ENV, fake_kfp.token)
    result = submit.submit(
        host=fake_kfp.url,
        experiment="edge-tests",
        package=package,
        arguments={"epochs": 3, "min_accuracy": 1, "variants": ["float32", "full_int8"]},
        run_name="first",
    )
    assert result["run_id"] == "run-0001"
    assert result["url"] == f"{fake_kfp.url}/#/runs/details/run-0001"
    (run,) = fake_kfp.runs
    assert run["display_name"] == "first"
    assert run["runtime_config"]["parameters"] == {
        "epochs": 3,
        "min_accuracy": 1.0,
        "variants": ["float32", "full_int8"],
    }
    assert run["pipeline_spec"]["pipelineInfo"]["name"] == "submit-check"
    assert [e["display_name"] for e in fake_kfp.experiments] == ["edge-tests"]
    assert all(r["authorization"] == f"Bearer {fake_kfp.token}" for r in fake_kfp.requests)

    submit.submit(host=fake_kfp.url, experiment="edge-tests", package=package)
    assert len(fake_kfp.experiments) == 1  # found by name, not created twice
    assert [r["experiment_id"] for r in fake_kfp.runs] == ["exp-1", "exp-1"]


def test_a_wrong_token_is_refused(fake_kfp, package, monkeypatch):
    import kfp_server_api

    fake_kfp.token = "the-right-one"
    monkeypatch.setenv(submit.TOKEN_ENV, "a-wrong-one")
    with pytest.raises(kfp_server_api.ApiException) as info:
        submit.submit(host=fake_kfp.url, namespace="team-a", package=package)
    assert info.value.status == 401
    assert fake_kfp.runs == []


def test_in_cluster_service_account_token_volume(fake_kfp, package, tmp_path, monkeypatch):
    token_file = tmp_path / "token"
    token_file.write_text("projected-sa-token")
    monkeypatch.setenv(submit.SA_TOKEN_PATH_ENV, str(token_file))
    fake_kfp.token = "projected-sa-token"
    result = submit.submit(host=fake_kfp.url, namespace="team-a", package=package)
    assert result["run_id"] == "run-0001"
    assert fake_kfp.experiments[0]["namespace"] == "team-a"
    listing = [r for r in fake_kfp.requests if r["path"].endswith("/experiments")][0]
    assert listing["query"]["namespace"] == "team-a"


def test_cli_prints_the_run_url_and_never_the_token(fake_kfp, package, monkeypatch, capsys):
    fake_kfp.token = "cli-secret-token-value"
    monkeypatch.setenv(submit.TOKEN_ENV, fake_kfp.token)
    code = cli.main(
        [
            "submit",
            "--host",
            fake_kfp.url,
            "--experiment",
            "from-cli",
            "--package",
            str(package),
            "--ui-host",
            "https://kubeflow.example.org/pipeline",
            "epochs=7",
            "dataset=sensor",
        ]
    )
    out = capsys.readouterr()
    assert code == 0
    assert out.out.strip().splitlines()[-1] == (
        "https://kubeflow.example.org/pipeline/#/runs/details/run-0001"
    )
    assert fake_kfp.token not in out.out + out.err
    assert fake_kfp.runs[0]["runtime_config"]["parameters"] == {"epochs": 7, "dataset": "sensor"}


def test_bad_parameters_are_refused_before_any_run(fake_kfp, package, capsys):
    code = cli.main(["submit", "--host", fake_kfp.url, "--package", str(package), "epoch=3"])
    assert code == 2
    assert "unknown pipeline parameter 'epoch'" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"min_accuracy='high': expected number double"):
        submit.submit(host=fake_kfp.url, package=package, arguments={"min_accuracy": "high"})
    with pytest.raises(ValueError, match=r"epochs=True: expected number integer"):
        submit.submit(host=fake_kfp.url, package=package, arguments={"epochs": True})
    with pytest.raises(ValueError, match="not both"):
        submit.submit(host=fake_kfp.url, package=package, resources="cpu-small")
    assert fake_kfp.runs == [] and fake_kfp.requests == []


def test_submit_compiles_the_edge_pipeline_with_a_profile(fake_kfp, capsys):
    code = cli.main(["submit", "--host", fake_kfp.url, "--resources", "gpu-multi", "epochs=5"])
    assert code == 0, capsys.readouterr().err
    (run,) = fake_kfp.runs
    assert run["runtime_config"]["parameters"] == {"epochs": 5}
    # kfp.Client sends the kfp-kubernetes settings beside the pipeline spec.
    pipeline_spec = run["pipeline_spec"]["pipeline_spec"]
    platform = run["pipeline_spec"]["platform_spec"]["platforms"]["kubernetes"]
    assert pipeline_spec["pipelineInfo"]["name"] == "kfp-edge"
    executors = pipeline_spec["deploymentSpec"]["executors"]
    assert any(
        e["container"].get("resources", {}).get("resourceCpuRequest") == "8"  # gpu-multi etl
        for e in executors.values()
    )
    k8s = platform["deploymentSpec"]["executors"]
    secrets = {s["secretName"] for e in k8s.values() for s in e.get("secretAsEnv", [])}
    assert secrets == {"kfp-edge-minio"}  # the Secret that manifests/base generates
    pvcs = {p["constant"] for e in k8s.values() for p in e.get("pvcMount", [])}
    assert pvcs == {"kfp-edge-workspace"}
