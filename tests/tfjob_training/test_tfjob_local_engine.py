"""The local TFJob engine: real replicas (processes), real TF_CONFIG, the operator's policies.

The engine's policy tests run tiny Python replicas (no TensorFlow) so that they are fast; the
training tests in test_tfjob_local_training.py run the real trainer.
"""

from __future__ import annotations

import io
import json
import time

import pytest

from kfp_edge.tfjob_training.local_tfjob_engine import (
    TFJobFailed,
    cpu_shares,
    run_tfjob,
    tf_configs,
)
from kfp_edge.tfjob_training.replica_trainer import usable_cpus
from kfp_edge.tfjob_training.tfjob_spec import build_tfjob


def _job(tmp_path, code: str, workers: int = 2, **kwargs) -> dict:
    """A TFJob whose replicas run ``code`` (with TASK = the TF_CONFIG task and OUT a dir)."""
    manifest = build_tfjob("policy-test", ["--unused"], image="img:1", workers=workers, **kwargs)
    prelude = (
        "import json, os, sys, time; "
        'solo = \'{"task": {"type": "chief", "index": 0}}\'; '
        "cfg = json.loads(os.environ.get('TF_CONFIG', solo)); "
        "task = cfg['task']; key = f\"{task['type']}-{task['index']}\"; "
        f"out = {str(tmp_path)!r}; "
    )
    for spec in manifest["spec"]["tfReplicaSpecs"].values():
        container = spec["template"]["spec"]["containers"][0]
        container["command"] = ["python", "-c", prelude + code]
        container["args"] = []
    return manifest


def _run(manifest, tmp_path, **kwargs):
    return run_tfjob(
        manifest,
        tmp_path / "logs",
        stream=io.StringIO(),
        grace_seconds=1.0,
        poll_seconds=0.05,
        **kwargs,
    )


def test_each_replica_gets_the_operators_tf_config(tmp_path):
    code = (
        "open(os.path.join(out, key + '.json'), 'w').write(os.environ['TF_CONFIG']); "
        "open(os.path.join(out, key + '.env'), 'w').write(os.environ['TF_USE_LEGACY_KERAS'])"
    )
    manifest = _job(tmp_path, code, workers=3)
    status = _run(manifest, tmp_path)
    assert [c["type"] for c in status["conditions"]] == ["Created", "Running", "Succeeded"]
    configs = {
        k: json.loads((tmp_path / f"{k}.json").read_text())
        for k in ("chief-0", "worker-0", "worker-1")
    }
    cluster = configs["chief-0"]["cluster"]
    assert set(cluster) == {"chief", "worker"}
    assert len(cluster["chief"]) == 1 and len(cluster["worker"]) == 2
    addresses = cluster["chief"] + cluster["worker"]
    assert all(a.startswith("127.0.0.1:") for a in addresses) and len(set(addresses)) == 3
    for key, cfg in configs.items():
        rtype, index = key.split("-")
        assert cfg["cluster"] == cluster
        assert cfg["task"] == {"type": rtype, "index": int(index)}
        assert cfg["environment"] == "cloud"
        assert (tmp_path / f"{key}.env").read_text() == "1"  # the container's env reached it


def test_tf_config_lists_the_evaluator_as_the_operator_does():
    """v1.9's genClusterSpec puts every replica type in the cluster, the evaluator too."""
    manifest = build_tfjob("evaljob", [], image="img:1", workers=2, evaluator=True)
    configs = tf_configs(manifest, ports=[1, 2, 3])
    assert configs[("Evaluator", 0)]["cluster"] == {
        "chief": ["127.0.0.1:1"],
        "worker": ["127.0.0.1:2"],
        "evaluator": ["127.0.0.1:3"],
    }
    assert configs[("Chief", 0)]["cluster"] == configs[("Evaluator", 0)]["cluster"]
    assert configs[("Evaluator", 0)]["task"] == {"type": "evaluator", "index": 0}


def test_a_single_replica_gets_no_tf_config(tmp_path):
    """The operator sets no TF_CONFIG unless the job is distributed (isDistributed)."""
    code = "open(os.path.join(out, 'tf_config'), 'w').write(os.environ.get('TF_CONFIG', 'unset'))"
    _run(_job(tmp_path, code, workers=1), tmp_path)
    assert (tmp_path / "tf_config").read_text() == "unset"


def test_a_retryable_exit_restarts_only_the_failed_replica(tmp_path):
    """The operator recreates only the failed pod; the healthy chief keeps running."""
    code = (
        "open(os.path.join(out, key + '.starts'), 'a').write('x'); "
        "sys.exit(138) if task['type'] == 'worker' else time.sleep(30)"
    )
    manifest = _job(tmp_path, code, workers=2, backoff_limit=2)
    events = []
    with pytest.raises(TFJobFailed) as err:
        _run(manifest, tmp_path, on_event=lambda e, d: events.append(e))
    # ExitCode: backoffLimit does not apply; the engine's own attempt limit (here = 2) does
    assert err.value.reason == "AttemptLimitExceeded"
    assert err.value.status["restarts"] == 2
    assert (tmp_path / "chief-0.starts").read_text() == "x"  # never restarted
    assert (tmp_path / "worker-0.starts").read_text() == "xxx"
    assert events.count("Restarting") == 2 and events.count("ReplicaRestarted") == 2
    assert events[-1] == "Failed"
    runs = err.value.status["attempts"]
    assert [(a["attempt"], a["exit_code"]) for a in runs if a["replica"] == "worker-0"] == [
        (0, 138),
        (1, 138),
        (2, 138),
    ]
    # the chief was stopped by SIGTERM (143) once, when the job failed
    assert [a["exit_code"] for a in runs if a["replica"] == "chief-0"] == [128 + 15]


def test_retryable_exits_are_not_bounded_by_backoff_limit_under_exit_code(tmp_path):
    code = (
        "open(os.path.join(out, key), 'a').write('x'); "
        "sys.exit(0 if len(open(os.path.join(out, key)).read()) > 2 else 137)"
    )
    manifest = _job(tmp_path, code, workers=1, backoff_limit=0)
    status = _run(manifest, tmp_path, attempt_limit=5)
    assert status["conditions"][-1]["type"] == "Succeeded" and status["restarts"] == 2
    on_failure = _job(tmp_path / "f", code, workers=1, backoff_limit=1, restart_policy="OnFailure")
    (tmp_path / "f").mkdir()
    with pytest.raises(TFJobFailed) as err:
        _run(on_failure, tmp_path, attempt_limit=5)
    assert err.value.reason == "BackoffLimitExceeded" and err.value.status["restarts"] == 1


def test_permanent_exit_fails_at_once_with_the_replicas_log(tmp_path):
    code = (
        "print('cannot read the data', flush=True); "
        "sys.exit(3) if task['type'] == 'worker' else time.sleep(30)"
    )
    manifest = _job(tmp_path, code, workers=2, backoff_limit=5)
    with pytest.raises(TFJobFailed) as err:
        _run(manifest, tmp_path)
    assert err.value.reason == "PermanentError"
    assert err.value.status["restarts"] == 0
    assert "worker-0 exited with code 3" in str(err.value)
    assert "cannot read the data" in str(err.value)


def test_signal_death_is_retryable_and_never_policy_is_not(tmp_path):
    code = "os.kill(os.getpid(), 9)"
    manifest = _job(tmp_path, code, workers=1, backoff_limit=1)
    with pytest.raises(TFJobFailed) as err:
        _run(manifest, tmp_path)
    assert err.value.reason == "AttemptLimitExceeded"
    assert err.value.status["attempts"][0]["exit_code"] == 137
    never = _job(tmp_path, code, workers=1, backoff_limit=3, restart_policy="Never")
    with pytest.raises(TFJobFailed) as err:
        _run(never, tmp_path)
    assert err.value.reason == "ReplicaFailed" and err.value.status["restarts"] == 0


def test_active_deadline_stops_the_job(tmp_path):
    manifest = _job(tmp_path, "time.sleep(60)", workers=2, active_deadline_seconds=1)
    started = time.monotonic()
    with pytest.raises(TFJobFailed) as err:
        _run(manifest, tmp_path)
    assert err.value.reason == "DeadlineExceeded"
    assert time.monotonic() - started < 30  # the replicas were stopped, not waited for
    assert {a["replica"] for a in err.value.status["attempts"]} == {"chief-0", "worker-0"}
    assert all(a["exit_code"] == 143 for a in err.value.status["attempts"])


def test_chief_success_ends_the_job_and_stops_lingering_workers(tmp_path):
    code = "print('chief log line', flush=True) if task['type'] == 'chief' else time.sleep(60)"
    manifest = _job(tmp_path, code, workers=3)
    out = io.StringIO()
    status = run_tfjob(
        manifest, tmp_path / "logs", stream=out, grace_seconds=0.5, poll_seconds=0.05
    )
    assert status["conditions"][-1]["type"] == "Succeeded"
    assert "chief log line" in out.getvalue()  # the chief's log is streamed
    codes = {a["replica"]: a["exit_code"] for a in status["attempts"]}
    assert codes["chief-0"] == 0 and codes["worker-1"] == 143


def test_not_a_tfjob_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not a TFJob"):
        run_tfjob({"kind": "PyTorchJob", "metadata": {"name": "x"}, "spec": {}}, tmp_path)


def test_an_interrupted_caller_leaves_no_replicas_behind(tmp_path):
    import psutil

    manifest = _job(tmp_path, "time.sleep(60)", workers=2)
    pids = {}

    def on_event(event, details):
        if event == "ReplicasStarted":
            pids.update(details["pids"])
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(manifest, tmp_path, on_event=on_event)
    assert len(pids) == 2
    for pid in pids.values():
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"


def test_cores_are_shared_out_only_when_every_replica_gets_its_own():
    assert cpu_shares(2, [0, 1]) == [(0,), (1,)]
    assert cpu_shares(2, [0, 1, 2, 3, 4]) == [(0, 1), (2, 3)]  # a core left over stays free
    assert cpu_shares(3, [0, 1]) == [(), (), ()]  # more replicas than cores: none pinned
    assert cpu_shares(1, [0, 1]) == [()]  # a single replica has every core anyway


@pytest.mark.skipif(len(usable_cpus()) < 2, reason="needs two cores to pin two replicas")
@pytest.mark.parametrize("pin", [True, False])
def test_each_replica_runs_on_cores_of_its_own(tmp_path, pin):
    """Like pods with CPUs of their own, two replicas on two cores are pinned one core each
    (the kubelet's static CPU manager does the same for Guaranteed pods); their intra-op
    threads match their share; the restarted replica keeps its cores."""
    code = (
        "path = os.path.join(out, key + '.cpus'); first = not os.path.exists(path); "
        "open(path, 'a').write(json.dumps([sorted(os.sched_getaffinity(0)), "
        "os.environ['TF_NUM_INTRAOP_THREADS']]) + '\\n'); "
        "worker = os.path.join(out, 'worker-0.cpus'); "
        "[time.sleep(0.05) for _ in range(400) if key == 'chief-0' and "
        "(not os.path.exists(worker) or len(open(worker).readlines()) < 2)]; "
        "sys.exit(143 if key == 'worker-0' and first else 0)"
    )
    events = []
    manifest = _job(tmp_path, code, workers=2, restart_policy="ExitCode")
    _run(manifest, tmp_path, pin_cpus=pin, on_event=lambda e, d: events.append((e, d)))

    def runs(key):
        lines = (tmp_path / f"{key}.cpus").read_text().splitlines()
        return [json.loads(line) for line in lines]

    chief, worker = runs("chief-0"), runs("worker-0")
    assert len(worker) == 2  # the worker was restarted once
    started = dict(events)["ReplicasStarted"]["cpus"]
    everything = usable_cpus()
    threads = str(len(everything) // 2)
    if pin:
        assert chief[0][0] and worker[0][0] and not set(chief[0][0]) & set(worker[0][0])
        assert len(chief[0][0]) == len(everything) // 2
        assert worker[1] == worker[0]  # the same cores after the restart
        assert started == {"chief-0": chief[0][0], "worker-0": worker[0][0]}
    else:
        assert chief[0][0] == worker[0][0] == everything
        assert started == {"chief-0": [], "worker-0": []}
    assert chief[0][1] == worker[0][1] == threads
