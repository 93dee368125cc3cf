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


def test_a_wrong_token_is_refused_in_one_line(fake_kfp, package, monkeypatch, capsys):
    fake_kfp.token = "the-right-one"
    monkeypatch.setenv(submit.TOKEN_ENV, "a-wrong-one")
    with pytest.raises(submit.ConnectionProblem, match=r"refused the credentials \(HTTP 401\)"):
        submit.submit(host=fake_kfp.url, namespace="team-a", package=package)
    assert fake_kfp.runs == []
    assert cli.main(["submit", "--host", fake_kfp.url, "--package", str(package)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a-wrong-one" not in err


@pytest.mark.parametrize(
    "host, message",
    [
        ("http://127.0.0.1:9", "cannot connect to http://127.0.0.1:9: "),
        ("http://kfp.invalid:8080", "cannot resolve the host of http://kfp.invalid:8080"),
        ("ht!tp://kfp 8080", "malformed KFP API address 'ht!tp://kfp 8080'"),
        ("http://kfp:port", "malformed KFP API address 'http://kfp:port'"),
        (None, "no KFP API address: give --host URL or set KF_PIPELINES_ENDPOINT"),
    ],
)
def test_unreachable_hosts_exit_2_with_one_line(package, host, message, capsys, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    argv = ["submit", "--package", str(package)] + (["--host", host] if host else [])
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kfp-edge submit: error: {message}")
    assert err.count("\n") == 1, err


def test_tls_failure_is_one_line(package, capsys, tmp_path):
    """A plain-HTTP server spoken to over https: the TLS handshake fails, as with a bad cert."""
    import http.server
    import threading

    class Quiet(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"https://127.0.0.1:{server.server_address[1]}"
        assert cli.main(["submit", "--host", url, "--package", str(package)]) == 2
    finally:
        server.shutdown()
        server.server_close()
    err = capsys.readouterr().err
    assert (
        err.startswith(f"kfp-edge submit: error: TLS failed with {url}: ") and err.count("\n") == 1
    )


@pytest.mark.parametrize("final, status", [("SUCCEEDED", 0), ("FAILED", 1)])
def test_wait_follows_the_run_and_exits_by_its_outcome(fake_kfp, package, capsys, final, status):
    fake_kfp.run_states = ["PENDING", "RUNNING", "RUNNING", final]
    argv = ["submit", "--host", fake_kfp.url, "--package", str(package), "--wait"]
    assert cli.main(argv + ["--poll-seconds", "0.01"]) == status
    out = capsys.readouterr().out.splitlines()
    assert out[-3:] == ["run run-0001: PENDING", "run run-0001: RUNNING", f"run run-0001: {final}"]


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
            "--param",
            "epochs=7",
            "--param",
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
    code = cli.main(
        ["submit", "--host", fake_kfp.url, "--package", str(package), "--param", "epoch=3"]
    )
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
    code = cli.main(
        ["submit", "--host", fake_kfp.url, "--resources", "gpu-multi", "--param", "epochs=5"]
    )
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
