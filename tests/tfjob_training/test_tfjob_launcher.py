"""The TFJob launcher against a FAKE Kubernetes API server: no cluster exists on this machine.

The fake (tests/tfjob_training/fake_k8s.py) is an HTTP server on loopback; the launcher talks to
it through the real ``kubernetes`` client, so URLs, watch streams and error statuses are real.
"""

from __future__ import annotations

import io
import time

import pytest

from kfp_edge.tfjob_training.launcher import launch
from kfp_edge.tfjob_training.local_tfjob_engine import TFJobFailed
from kfp_edge.tfjob_training.tfjob_spec import build_tfjob, trainer_args

JOBS = "/apis/kubeflow.org/v1/namespaces/team-a/tfjobs"


def _manifest(name="train-run-1"):
    args = trainer_args("/workspace/runs/r/data", "/workspace/runs/r/training", name)
    return build_tfjob(name, args, namespace="team-a", image="img:1", workers=3)


def _run(fake_k8s, script, *, existing=None, chief_log="", **kwargs):
    cluster = fake_k8s.FakeCluster(script, chief_log=chief_log)
    out = io.StringIO()
    with fake_k8s.FakeApiServer(cluster) as server:
        if existing is not None:
            cluster.put(existing, run_script=False)
        try:
            status = launch(_manifest(), stream=out, api_client=server.api_client(), **kwargs)
            error = None
        except TFJobFailed as exc:
            status, error = exc.status, exc
    return cluster, status, error, out.getvalue()


SUCCESS = [
    (0.1, "Created", "TFJobCreated", "created"),
    (0.2, "Running", "TFJobRunning", "running"),
    (0.4, "Succeeded", "TFJobSucceeded", "TFJob team-a/train-run-1 successfully completed."),
]


def test_launcher_creates_watches_streams_log_and_deletes(fake_k8s):
    cluster, status, error, out = _run(fake_k8s, SUCCESS, chief_log="Epoch 1/3\nchief says hi\n")
    assert error is None
    assert status["result"] == "Succeeded" and status["adopted"] is False
    assert [c["type"] for c in status["conditions"]][-1] == "Succeeded"
    # created once, followed with a watch on this job only, deleted at the end
    assert cluster.count("POST", JOBS) == 1
    watches = [q for m, p, q in cluster.requests if m == "GET" and q.get("watch")]
    assert watches and all(q["fieldSelector"] == "metadata.name=train-run-1" for q in watches)
    assert cluster.count("DELETE", JOBS + "/train-run-1") == 1
    assert ("team-a", "train-run-1") not in cluster.jobs
    # the policy fields reached the API server under spec.runPolicy
    created = next(e[2] for e in cluster.events if e[1] == "ADDED")
    assert created["spec"]["runPolicy"]["backoffLimit"] == 3
    assert "backoffLimit" not in created["spec"]
    assert "chief says hi" in out
    assert "Running (TFJobRunning)" in out and "succeeded" in out


def test_launcher_fails_with_the_jobs_reason(fake_k8s):
    script = [
        (0.1, "Running", "TFJobRunning", "running"),
        (
            0.2,
            "Failed",
            "TFJobFailed",
            "TFJob team-a/train-run-1 has failed because 1 Worker replica(s) failed.",
        ),
    ]
    cluster, status, error, out = _run(fake_k8s, script)
    assert isinstance(error, TFJobFailed)
    assert error.reason == "TFJobFailed"
    assert "1 Worker replica(s) failed" in str(error)
    assert cluster.count("DELETE", JOBS + "/train-run-1") == 1


def test_launcher_adopts_an_existing_running_job(fake_k8s):
    existing = _manifest()
    existing["metadata"]["namespace"] = "team-a"
    existing["status"] = {
        "conditions": [
            {
                "type": "Running",
                "status": "True",
                "reason": "TFJobRunning",
                "message": "running",
                "lastTransitionTime": "t0",
            }
        ]
    }
    cluster = fake_k8s.FakeCluster([])
    with fake_k8s.FakeApiServer(cluster) as server:
        cluster.put(existing, run_script=False)
        key = ("team-a", "train-run-1")

        def finish_later():
            time.sleep(0.4)
            cluster.set_condition(key, "Succeeded", "TFJobSucceeded", "done")

        import threading

        threading.Thread(target=finish_later, daemon=True).start()
        out = io.StringIO()
        status = launch(_manifest(), stream=out, api_client=server.api_client(), stream_logs=False)
    assert status["adopted"] is True and status["result"] == "Succeeded"
    assert "adopting it" in out.getvalue()
    assert sum(1 for e in cluster.events if e[1] == "ADDED") == 1  # not duplicated


def test_launcher_replaces_a_failed_job_of_the_same_name(fake_k8s):
    existing = _manifest()
    existing["status"] = {
        "conditions": [
            {
                "type": "Failed",
                "status": "True",
                "reason": "TFJobFailed",
                "message": "old failure",
                "lastTransitionTime": "t0",
            }
        ]
    }
    cluster, status, error, out = _run(fake_k8s, SUCCESS, existing=existing, stream_logs=False)
    assert error is None and status["adopted"] is False
    assert cluster.count("POST", JOBS) == 2  # 409, then created after the delete
    assert cluster.count("DELETE", JOBS + "/train-run-1") == 2  # the old one, then ours


def test_launcher_enforces_its_own_attempt_limit(fake_k8s):
    script = [(0.1, "Running", "TFJobRunning", "running")]
    for _ in range(3):
        script += [
            (0.1, "Restarting", "TFJobRestarting", "worker exited with 137"),
            (0.1, "Running", "TFJobRunning", "running"),
        ]
    cluster, status, error, out = _run(fake_k8s, script, attempt_limit=1, stream_logs=False)
    assert isinstance(error, TFJobFailed) and error.reason == "AttemptLimitExceeded"
    assert status["restarts"] == 2
    assert cluster.count("DELETE", JOBS + "/train-run-1") == 1


def test_launcher_timeout_keeps_the_job_when_asked(fake_k8s):
    script = [(0.1, "Running", "TFJobRunning", "running")]
    start = time.monotonic()
    cluster, status, error, out = _run(
        fake_k8s, script, timeout_seconds=1.5, keep_job=True, stream_logs=False
    )
    assert isinstance(error, TFJobFailed) and error.reason == "LauncherTimeout"
    assert time.monotonic() - start < 10
    assert cluster.count("DELETE") == 0 and ("team-a", "train-run-1") in cluster.jobs
    # a watch, not a poll: a handful of requests in 1.5 s
    assert len(cluster.requests) < 10


@pytest.mark.slow
def test_kubernetes_engine_end_to_end_with_the_local_engine_as_operator(
    fake_k8s, iris_data_dir, tmp_path
):
    """run_training(engine="kubernetes") against the FAKE API server, whose stand-in for the
    Training Operator runs the submitted TFJob with the local engine (real replicas)."""
    import json

    from kfp_edge.tfjob_training.local_tfjob_engine import run_tfjob
    from kfp_edge.tfjob_training.training_step import run_training

    def operator(cluster, key, job):
        def on_event(event, details):
            if event in ("Created", "Running", "Restarting", "Succeeded", "Failed"):
                cluster.set_condition(key, event, details["reason"], details["message"])

        try:
            run_tfjob(job, tmp_path / "operator-logs", on_event=on_event, stream=io.StringIO())
        except TFJobFailed:
            pass

    cluster = fake_k8s.FakeCluster(operator=operator, chief_log="chief log via the API\n")
    workspace = tmp_path / "ws"
    out = io.StringIO()
    gpu = {"gpu_count": 1, "cpu_request": "1"}
    with fake_k8s.FakeApiServer(cluster) as server:
        report = run_training(
            str(workspace),
            "k8s-run",
            str(iris_data_dir),
            engine="kubernetes",
            epochs=5,
            workers=1,
            namespace="team-a",
            replica_resources={"chief": gpu},
            api_client=server.api_client(),
            stream=out,
        )
    created = next(e[2] for e in cluster.events if e[1] == "ADDED")
    chief = created["spec"]["tfReplicaSpecs"]["Chief"]["template"]["spec"]
    assert chief["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert chief["volumes"][0]["persistentVolumeClaim"]["claimName"] == "kfp-edge-workspace"
    assert report["engine"] == "kubernetes"
    assert report["tfjob"]["namespace"] == "team-a"
    assert report["tfjob"]["conditions"][-1] == "Succeeded"
    saved = workspace / "runs" / "k8s-run" / "training" / "saved_model"
    assert report["saved_model_dir"] == str(saved) and (saved / "saved_model.pb").exists()
    run_report = json.loads((workspace / "runs" / "k8s-run" / "report.json").read_text())
    assert run_report["training"]["engine"] == "kubernetes"
    assert cluster.jobs == {}  # deleted when done
    assert "chief log via the API" in out.getvalue()
