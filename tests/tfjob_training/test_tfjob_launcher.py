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
    assert cluster.count("POST", JOBS) == 1  # read first, deleted, then created
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
    # a watch, not a poll: a handful of job requests in 1.5 s
    assert len([r for r in cluster.requests if "/tfjobs" in r[1]]) < 8


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


# --- what clusters do: dropped watches, throttling, restarts of the API server -----------------


def test_a_dropped_watch_or_failing_reads_never_delete_a_running_job(fake_k8s):
    """Each fault here escaped the old launcher's ``finally``, which deleted the Running job."""
    script = [
        (0.2, "Running", "TFJobRunning", "running"),
        (1.0, "Succeeded", "TFJobSucceeded", "done"),
    ]
    cluster = fake_k8s.FakeCluster(script)
    # the watch: a connection cut mid-stream (urllib3 ProtocolError), an ERROR event 500, an
    # ERROR 410 (re-list); reads: 503 and 429 before they answer
    cluster.inject("watch", ("drop",), ("error", 500), ("gone",), ("status", 503))
    cluster.inject("get", ("status", 503), ("status", 429))
    cluster.inject("pods", ("status", 502))
    out = io.StringIO()
    with fake_k8s.FakeApiServer(cluster) as server:
        status = launch(_manifest(), stream=out, api_client=server.api_client(), stream_logs=False)
    assert status["result"] == "Succeeded"
    assert cluster.faults == {"watch": [], "get": [], "pods": []}  # every fault was met
    deletes = [r for r in cluster.requests if r[0] == "DELETE"]
    assert len(deletes) == 1  # once, after Succeeded
    assert "watch connection lost (ProtocolError)" in out.getvalue()
    assert "retrying" in out.getvalue()


def test_a_silently_dead_watch_connection_times_out_and_is_reopened(fake_k8s, monkeypatch):
    import kfp_edge.tfjob_training.launcher as launcher

    monkeypatch.setattr(launcher, "_WATCH_WINDOW_SECONDS", 1)
    script = [(0.2, "Running", "TFJobRunning", "running"), (4.0, "Succeeded", "TFJobSucceeded", "")]
    cluster = fake_k8s.FakeCluster(script)
    cluster.inject("watch", ("hang",))  # sends nothing and never ends, like a cut without FIN
    out = io.StringIO()
    with fake_k8s.FakeApiServer(cluster) as server:
        status = launch(_manifest(), stream=out, api_client=server.api_client(), stream_logs=False)
    assert status["result"] == "Succeeded"
    assert "watch connection lost" in out.getvalue()
    assert cluster.count("DELETE") == 1


def test_an_api_outage_longer_than_the_retries_gives_up_without_deleting(fake_k8s):
    def outage(cluster, key):
        cluster.inject("watch", *[("status", 503)] * 50)
        cluster.inject("get", *[("status", 503)] * 50)

    cluster = fake_k8s.FakeCluster([(0.1, outage), (0.1, "Running", "TFJobRunning", "running")])
    with fake_k8s.FakeApiServer(cluster) as server:
        with pytest.raises(TFJobFailed) as err:
            launch(
                _manifest(),
                stream=io.StringIO(),
                api_client=server.api_client(),
                stream_logs=False,
                retry_seconds=0.5,
            )
    assert err.value.reason == "ApiUnavailable" and "kept failing" in str(err.value)
    assert cluster.count("DELETE") == 0 and ("team-a", "train-run-1") in cluster.jobs


# --- cancellation --------------------------------------------------------------------------------


def test_sigterm_deletes_the_job_before_the_launcher_exits(fake_k8s):
    import os
    import signal
    import threading

    cluster = fake_k8s.FakeCluster([(0.1, "Running", "TFJobRunning", "running")])
    with fake_k8s.FakeApiServer(cluster) as server:
        timer = threading.Timer(0.8, os.kill, (os.getpid(), signal.SIGTERM))
        timer.start()
        with pytest.raises(TFJobFailed) as err:
            launch(_manifest(), stream=io.StringIO(), api_client=server.api_client())
    assert err.value.reason == "Cancelled"
    assert cluster.jobs == {}
    body = next(b for m, _, b in cluster.bodies if m == "DELETE")
    assert body["propagationPolicy"] == "Background"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler was restored


def test_the_job_is_owned_by_the_launcher_pod_for_garbage_collection(fake_k8s, tmp_path):
    from kfp_edge.tfjob_training.launcher import launcher_owner

    sa = tmp_path / "namespace"
    sa.write_text("team-a\n")
    env = {"KFP_POD_NAME": "run-1-training-launcher", "KFP_POD_UID": "1234-abcd"}
    owner = launcher_owner("team-a", env, str(sa))
    assert owner["kind"] == "Pod" and owner["uid"] == "1234-abcd"
    assert launcher_owner("other-ns", env, str(sa)) is None  # no cross-namespace owners
    assert launcher_owner("team-a", {}, str(sa)) is None
    manifest = _manifest()
    manifest["metadata"]["ownerReferences"] = [owner]
    cluster = fake_k8s.FakeCluster(SUCCESS)
    with fake_k8s.FakeApiServer(cluster) as server:
        launch(manifest, stream=io.StringIO(), api_client=server.api_client(), stream_logs=False)
    created = next(e[2] for e in cluster.events if e[1] == "ADDED")
    assert created["metadata"]["ownerReferences"] == [owner]  # not pruned by the API server
    assert cluster.pruned == []


def test_adopting_a_job_moves_its_owner_and_keeps_its_progress(fake_k8s):
    existing = _manifest()
    existing["metadata"]["ownerReferences"] = [{"kind": "Pod", "name": "old", "uid": "old"}]
    cluster = fake_k8s.FakeCluster([(0.3, "Succeeded", "TFJobSucceeded", "done")])
    manifest = _manifest()
    owner = {"apiVersion": "v1", "kind": "Pod", "name": "new", "uid": "new-uid"}
    manifest["metadata"]["ownerReferences"] = [owner]
    calls = []
    with fake_k8s.FakeApiServer(cluster) as server:
        cluster.put(existing)
        status = launch(
            manifest,
            stream=io.StringIO(),
            api_client=server.api_client(),
            stream_logs=False,
            before_create=lambda: calls.append("fresh start"),
        )
    assert status["adopted"] is True
    assert calls == []  # the training step's progress file is only reset for a new job
    patch = next(b for m, _, b in cluster.bodies if m == "PATCH")
    assert patch == {"metadata": {"ownerReferences": [owner]}}


# --- a failed job explains itself -----------------------------------------------------------------


def _oom_worker(cluster, key):
    cluster.terminate(key, "Worker", 1, 137, "OOMKilled", "epoch 3\nallocating 9 GiB\n")
    cluster.restart_container(key, "Worker", 0, 1, "Error", "Traceback\nValueError: bad\n")


FAILS = [
    (0.1, "Running", "TFJobRunning", "running"),
    (0.2, _oom_worker),
    (0.1, "Failed", "TFJobFailed", "TFJob team-a/train-run-1 has failed because 1 Worker..."),
]


def test_a_failed_job_names_replica_exit_code_reason_and_log_before_the_delete(fake_k8s):
    cluster, status, error, out = _run(fake_k8s, FAILS, stream_logs=False)
    assert error.reason == "TFJobFailed"
    text = str(error)
    assert "worker-1 (pod train-run-1-worker-1) exited with code 137, reason OOMKilled" in text
    assert "allocating 9 GiB" in text  # its log tail, read before the pods were deleted
    assert "worker-0" in text and "ValueError: bad" in text  # the previous container's log
    failed = {f["replica"]: f for f in status["failed_replicas"]}
    assert failed["worker-1"]["exit_code"] == 137 and failed["worker-0"]["previous"] is True
    logs = [i for i, r in enumerate(cluster.requests) if r[1].endswith("/log")]
    delete = next(i for i, r in enumerate(cluster.requests) if r[0] == "DELETE")
    assert logs and max(logs) < delete
    assert cluster.jobs == {}


def test_keep_failed_job_keeps_it_for_debugging(fake_k8s):
    cluster, status, error, out = _run(fake_k8s, FAILS, stream_logs=False, keep_failed_job=True)
    assert error.reason == "TFJobFailed" and cluster.count("DELETE") == 0
    assert "kept (keep_failed_job=True)" in out


def test_an_evicted_or_preempted_pod_is_named(fake_k8s):
    from kfp_edge.tfjob_training.job_outcome import describe_failures, replica_failures

    pods = [
        {
            "metadata": {"name": "j-chief-0", "labels": fake_k8s._labels("j", "Chief", 0)},
            "status": {
                "phase": "Failed",
                "reason": "Evicted",
                "message": "The node was low on resource: memory.",
                "conditions": [
                    {
                        "type": "DisruptionTarget",
                        "status": "True",
                        "reason": "TerminationByKubelet",
                        "message": "evicted",
                    }
                ],
            },
        },
        {
            "metadata": {"name": "j-worker-0", "labels": fake_k8s._labels("j", "Worker", 0)},
            "status": {
                "phase": "Running",
                "conditions": [
                    {
                        "type": "DisruptionTarget",
                        "status": "True",
                        "reason": "PreemptionByScheduler",
                        "message": "preempted by a higher priority pod",
                    }
                ],
            },
        },
        {"metadata": {"name": "j-worker-1", "labels": {}}, "status": {"phase": "Running"}},
    ]
    text = describe_failures(replica_failures(pods))
    assert "chief-0 (pod j-chief-0), reason Evicted: The node was low on resource" in text
    assert "worker-0 (pod j-worker-0); disrupted (PreemptionByScheduler" in text
    assert "j-worker-1" not in text


# --- fail fast and clearly ------------------------------------------------------------------------


def test_no_training_operator_says_so(fake_k8s):
    cluster = fake_k8s.FakeCluster([], operator_installed=False)
    with fake_k8s.FakeApiServer(cluster) as server:
        with pytest.raises(TFJobFailed) as err:
            launch(_manifest(), stream=io.StringIO(), api_client=server.api_client())
    assert err.value.reason == "OperatorNotInstalled"
    assert "the Kubeflow Training Operator is not installed" in str(err.value)


def test_a_pod_pending_too_long_fails_with_the_schedulers_message(fake_k8s):
    message = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."

    def unschedulable(cluster, key):
        cluster.pend(key, "Worker", 1, message)

    script = [(0.0, unschedulable), (0.1, "Created", "TFJobCreated", "created")]
    started = time.monotonic()
    cluster, status, error, out = _run(
        fake_k8s, script, stream_logs=False, pending_timeout_seconds=1
    )
    assert error.reason == "PodPending"
    assert "train-run-1-worker-1 (worker-1) has been Pending for more than 1s" in str(error)
    assert message in str(error)
    assert time.monotonic() - started < 10  # not the launcher's whole timeout
    assert cluster.count("DELETE") == 1


def test_the_chiefs_last_log_lines_arrive_when_succeeded_comes_mid_stream(fake_k8s):
    lines = "".join(f"epoch {i}\n" for i in range(8)) + "trainer: done\n"
    script = [(0.1, "Running", "TFJobRunning", "r"), (0.3, "Succeeded", "TFJobSucceeded", "")]
    cluster = fake_k8s.FakeCluster(script, chief_log=lines, log_line_delay=0.15)
    out = io.StringIO()
    with fake_k8s.FakeApiServer(cluster) as server:
        launch(_manifest(), stream=out, api_client=server.api_client())
    assert "trainer: done" in out.getvalue()


def test_a_failed_job_being_deleted_slowly_is_waited_for_then_replaced(fake_k8s):
    existing = _manifest()
    existing["status"] = {
        "conditions": [{"type": "Failed", "status": "True", "reason": "X", "message": "old"}]
    }
    cluster = fake_k8s.FakeCluster(SUCCESS, delete_linger_seconds=1.0)
    with fake_k8s.FakeApiServer(cluster) as server:
        cluster.put(existing, run_script=False)
        status = launch(
            _manifest(), stream=io.StringIO(), api_client=server.api_client(), stream_logs=False
        )
    assert status["adopted"] is False and status["result"] == "Succeeded"
    assert cluster.count("POST") == 1  # after the old job had gone, not into a 409


def test_the_fake_prunes_fields_the_crd_does_not_know():
    """The fake behaves like the CRD's structural pruning (what dropped the old launcher's
    misplaced policy fields without an error)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("fk", Path(__file__).parent / "fake_k8s.py")
    fk = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fk)
    manifest = _manifest()
    manifest["spec"]["backoffLimit"] = 3
    manifest["spec"]["tfReplicaSpecs"]["Chief"]["template"]["spec"]["containers"][0]["gpu"] = 1
    pruned, dropped = fk.prune(manifest)
    assert sorted(dropped) == [
        ".spec.backoffLimit",
        ".spec.tfReplicaSpecs.Chief.template.spec.containers[0].gpu",
    ]
    assert "backoffLimit" not in pruned["spec"] and pruned["spec"]["runPolicy"]["backoffLimit"] == 3


def test_job_outcome_is_a_pure_function_of_the_job():
    from kfp_edge.tfjob_training.job_outcome import job_outcome, pending_too_long

    def job(*types):
        return {"status": {"conditions": [{"type": t, "status": "True"} for t in types]}}

    limits = dict(attempt_limit=2, timed_out=False, timeout_seconds=60)
    assert job_outcome(job("Created", "Running"), 0, **limits) is None
    assert job_outcome(job("Running", "Succeeded"), 0, **limits).succeeded
    assert job_outcome(job("Failed"), 0, **limits).reason == "Failed"
    assert job_outcome(job("Running"), 3, **limits).reason == "AttemptLimitExceeded"
    assert job_outcome(job("Running"), 0, **{**limits, "timed_out": True}).reason == (
        "LauncherTimeout"
    )
    pod = {"metadata": {"name": "p", "uid": "u1"}, "status": {"phase": "Pending"}}
    seen: dict = {}
    assert pending_too_long([pod], seen, 100.0, 30) is None and seen == {"u1": 100.0}
    assert pending_too_long([pod], seen, 131.0, 30).reason == "PodPending"
    recreated = {"metadata": {"name": "p", "uid": "u2"}, "status": {"phase": "Pending"}}
    assert pending_too_long([recreated], seen, 140.0, 30) is None  # a new pod: a new clock
    assert seen == {"u2": 140.0}


def test_a_recreated_chief_pod_has_its_log_streamed_too(fake_k8s):
    def recreate(cluster, key):
        cluster.add_pod(key, "Chief", 0)  # the operator recreated the pod: a new uid
        cluster.logs[f"{key[1]}-chief-0"]["current"] = "second pod says hi\n"

    script = [
        (0.1, "Running", "TFJobRunning", "r"),
        (1.5, recreate),
        (1.5, "Succeeded", "TFJobSucceeded", ""),
    ]
    cluster = fake_k8s.FakeCluster(script, chief_log="first pod says hi\n")
    out = io.StringIO()
    with fake_k8s.FakeApiServer(cluster) as server:
        launch(_manifest(), stream=out, api_client=server.api_client())
    assert "first pod says hi" in out.getvalue() and "second pod says hi" in out.getvalue()


def test_a_failed_cluster_job_is_in_the_run_report(fake_k8s, tmp_path):
    import json

    from kfp_edge.tfjob_training.training_step import run_training

    def fail(cluster, key):
        cluster.terminate(key, "Chief", 0, 3, "Error", "trainer: error (BAD_DATA, exit 3)\n")
        cluster.set_condition(key, "Failed", "TFJobFailed", "1 Chief replica(s) failed.")

    cluster = fake_k8s.FakeCluster([(0.2, fail)])
    with fake_k8s.FakeApiServer(cluster) as server:
        with pytest.raises(TFJobFailed, match="chief-0 .* exited with code 3"):
            run_training(
                str(tmp_path),
                "failed-run",
                "/data",
                engine="kubernetes",
                workers=1,
                namespace="team-a",
                api_client=server.api_client(),
                stream=io.StringIO(),
            )
    report = json.loads((tmp_path / "runs" / "failed-run" / "report.json").read_text())
    failed = report["training"]["failed"]
    assert failed["reason"] == "TFJobFailed"
    assert failed["failed_replicas"][0]["exit_code"] == 3
    assert "BAD_DATA" in failed["failed_replicas"][0]["log_tail"]
