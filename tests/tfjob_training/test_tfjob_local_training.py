"""Real distributed training on the local TFJob engine: Iris, MultiWorkerMirroredStrategy over
gRPC on loopback, a SIGKILLed worker and BackupAndRestore, the component under kfp.local."""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from kfp_edge.dataset import load_split, read_preprocessing
from kfp_edge.tfjob_training.local_tfjob_engine import TFJobFailed
from kfp_edge.tfjob_training.replica_trainer import PROGRESS_FILE, job_dir
from kfp_edge.tfjob_training.training_step import train_local


def _check_saved_model(report: dict, data_dir: Path) -> float:
    """Loads the SavedModel with tf_keras and scores the test split independently."""
    from kfp_edge.tf_env import import_tf

    _, keras = import_tf()
    model = keras.models.load_model(report["saved_model_dir"])
    assert model.input_shape == (None, 4)
    norm = model.get_layer("preprocessing")
    pre = read_preprocessing(data_dir)
    np.testing.assert_allclose(norm.mean.numpy().ravel(), pre["mean"], rtol=1e-5)
    np.testing.assert_allclose(norm.variance.numpy().ravel(), np.square(pre["std"]), rtol=1e-5)
    x, y = load_split(data_dir, "test")  # raw values: the normalization is in the model
    probs = model.predict(x, verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    accuracy = float(np.mean(probs.argmax(axis=1) == y))
    assert accuracy == pytest.approx(report["test"]["accuracy"])
    return accuracy


def _no_leftovers(output_dir: Path, job: str) -> None:
    assert not list(output_dir.glob(".worker-*")), "a worker's temporary SavedModel was left"
    assert not list(output_dir.glob(".saved_model.*")), "a staging directory was left"
    assert not (output_dir / "backup" / job).exists(), "the backup was not cleaned up"


@pytest.mark.slow
def test_two_local_workers_reach_the_accuracy_bound_of_one(iris_data_dir, tmp_path):
    reports = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}" / "training"
        reports[workers] = train_local(
            iris_data_dir, out, workers=workers, job=f"iris-w{workers}", stream=io.StringIO()
        )
        _no_leftovers(out, f"iris-w{workers}")
        assert json.loads((out / "training_report.json").read_text()) == reports[workers]
    one, two = reports[1], reports[2]
    assert one["replicas"] == 1 and two["replicas"] == 2
    assert two["strategy"] == "CollectiveAllReduceStrategy"  # MultiWorkerMirroredStrategy
    assert two["tf_config_cluster"].keys() == {"chief", "worker"}
    # one replica gets no TF_CONFIG (as from the operator): the default strategy, like plain
    assert one["tf_config_cluster"] == {} and one["strategy"] == "_DefaultDistributionStrategy"
    assert two["learning_rate_effective"] == 2 * one["learning_rate_effective"]
    assert two["tfjob"]["replicas"] == {"Chief": 1, "Worker": 1}
    assert two["global_batch_size"] == 2 * one["global_batch_size"] == 32
    for report in (one, two):
        assert report["epochs"] == 100 and report["resumed_at_epoch"] == 0
        assert report["test"]["accuracy"] >= 0.9, report["test"]
        assert report["tfjob"]["restarts"] == 0
        assert report["examples_per_second"] > 0
        # the replicas pool their CPU tensor memory (pool_cpu_memory): only the pooled
        # allocator counts it, the default one mapped and unmapped buffers on every step
        assert report["peak_tensor_bytes"] > 0
    assert _check_saved_model(two, iris_data_dir) >= 0.9


@pytest.mark.slow
def test_a_sigkilled_worker_restarts_alone_and_the_job_resumes_from_backup(iris_data_dir, tmp_path):
    out = tmp_path / "training"
    job = "kill-test"
    killed: dict = {}

    def kill_worker_after_first_epoch(chief: int, worker: int) -> None:
        progress = job_dir(out, job) / PROGRESS_FILE
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                done = json.loads(progress.read_text()).get("epochs_done", 0)
            except (OSError, ValueError):
                done = 0
            if done >= 1:
                # freeze the chief so that no further epoch can finish, read where it is,
                # kill the worker, then let the chief go on (into the failed collective)
                os.kill(chief, signal.SIGSTOP)
                killed["after_epoch"] = json.loads(progress.read_text())["epochs_done"]
                os.kill(worker, signal.SIGKILL)
                os.kill(chief, signal.SIGCONT)
                return
            time.sleep(0.01)

    def on_event(event: str, details: dict) -> None:
        if event == "ReplicasStarted" and details["attempt"] == 0:
            threading.Thread(
                target=kill_worker_after_first_epoch,
                args=(details["pids"]["chief-0"], details["pids"]["worker-0"]),
                daemon=True,
            ).start()

    report = train_local(
        iris_data_dir,
        out,
        workers=2,
        epochs=30,
        job=job,
        on_event=on_event,
        grace_seconds=2.0,
        stream=io.StringIO(),
    )
    assert killed, "the worker was never killed"
    conditions = report["tfjob"]["conditions"]
    assert conditions[:4] == ["Created", "Running", "Restarting", "Running"]
    assert conditions[-1] == "Succeeded"
    runs = report["tfjob"]["attempts"]
    worker = [a["exit_code"] for a in runs if a["replica"] == "worker-0"]
    chief = [a["exit_code"] for a in runs if a["replica"] == "chief-0"]
    # only the killed worker was restarted by the engine; the chief, whose collective lost its
    # peer, noticed it and ended with a retryable code (138) itself, and was restarted alone
    assert worker[0] == 137 and worker[-1] == 0
    assert chief[-1] == 0 and set(chief[:-1]) <= {138}
    assert report["tfjob"]["restarts"] == len(worker) + len(chief) - 2
    # resumed from the backup of the last epoch finished before the kill, not from 0 (one more
    # only if the chief was frozen between its backup and its progress record of an epoch)
    assert report["attempt_start_epochs"][0] == 0
    assert report["resumed_at_epoch"] == report["attempt_start_epochs"][-1]
    assert killed["after_epoch"] <= report["resumed_at_epoch"] <= killed["after_epoch"] + 1
    assert report["epochs_run_last_attempt"] == 30 - report["resumed_at_epoch"]
    assert report["test"]["accuracy"] >= 0.9
    _no_leftovers(out, job)


def test_bad_data_path_fails_fast_without_retries(tmp_path):
    missing = tmp_path / "no-such-run" / "data"
    started = time.monotonic()
    with pytest.raises(TFJobFailed) as err:
        train_local(
            missing,
            tmp_path / "training",
            workers=2,
            epochs=3,
            job="bad-data",
            stream=io.StringIO(),
        )
    assert err.value.reason == "PermanentError"
    assert err.value.status["restarts"] == 0
    assert {a["attempt"] for a in err.value.status["attempts"]} == {0}  # no replica restarted
    assert str(missing / "manifest.json") in str(err.value)
    assert "exited with code 3" in str(err.value)
    assert time.monotonic() - started < 60  # no TensorFlow start, no retries, no backoff
    assert not (tmp_path / "training" / "saved_model").exists()


@pytest.mark.slow
def test_component_runs_under_kfp_local(iris_data_dir, tmp_path):
    from kfp import local

    from kfp_edge.tfjob_training.component import TfjobTrainingOp

    local.init(
        runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp-root")
    )
    workspace = tmp_path / "ws"
    task = TfjobTrainingOp(
        workspace=str(workspace),
        run_id="run-1",
        data_dir=str(iris_data_dir),
        epochs=10,
        workers=1,
        model="mlp",
        width=8,
        depth=1,
    )
    saved = Path(task.outputs["saved_model_dir"])
    assert saved == workspace / "runs" / "run-1" / "training" / "saved_model"
    assert (saved / "saved_model.pb").exists()
    report = json.loads((workspace / "runs" / "run-1" / "report.json").read_text())
    assert report["training"]["model"] == "mlp" and report["training"]["engine"] == "local"
    metrics = task.outputs["metrics"].metadata
    assert metrics["test_accuracy"] == report["training"]["test"]["accuracy"]
    assert metrics["restarts"] == 0


@pytest.mark.slow
def test_bad_record_fails_the_distributed_job_permanently(iris_data_dir, tmp_path):
    """A record with 3 features in a 4-feature dataset: exit 3 names the shard and the record,
    and outranks the peer's lost-peer code, so the job is not retried."""
    import shutil

    from kfp_edge.tf_env import import_tf

    tf, _ = import_tf()
    data = tmp_path / "data"
    shutil.copytree(iris_data_dir, data)
    shard = (
        data
        / json.loads((data / "manifest.json").read_text())["splits"]["train"]["shards"][1]["path"]
    )
    records = [r.numpy() for r in tf.data.TFRecordDataset(str(shard))]
    bad = tf.train.Example(
        features=tf.train.Features(
            feature={
                "features": tf.train.Feature(float_list=tf.train.FloatList(value=[1.0, 2.0, 3.0])),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[0])),
            }
        )
    )
    with tf.io.TFRecordWriter(str(shard)) as w:
        for i, r in enumerate(records):
            w.write(bad.SerializeToString() if i == 5 else r)
    with pytest.raises(TFJobFailed) as err:
        train_local(
            data,
            tmp_path / "training",
            workers=2,
            epochs=5,
            job="bad-record",
            stream=io.StringIO(),
            grace_seconds=2.0,
        )
    assert err.value.reason == "PermanentError"
    assert err.value.status["restarts"] == 0
    assert "exited with code 3" in str(err.value)
    assert f"{shard}: record 5" in str(err.value)
