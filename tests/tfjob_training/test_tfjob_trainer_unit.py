"""The trainer's argument, TF_CONFIG, data checks and exit-code policy; the model registry."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from kfp_edge.tfjob_training import replica_trainer as trainer
from kfp_edge.tfjob_training.models import available_models, build_model, check_model_args
from kfp_edge.tfjob_training.replica_trainer import ExitCode, TrainerError


def test_exit_codes_follow_the_operators_exit_code_policy():
    assert not ExitCode.BAD_ARGUMENTS.retryable and not ExitCode.BAD_DATA.retryable
    assert not ExitCode.FAILED.retryable
    assert ExitCode.PREEMPTED == 143 and ExitCode.PREEMPTED.retryable
    assert ExitCode.PEER_LOST.retryable
    assert trainer.is_retryable(137) and not trainer.is_retryable(127)


def test_bad_arguments_exit_with_a_permanent_code(iris_data_dir, tmp_path, capsys):
    for argv in (["--epochs", "0"], ["--learning-rate", "-1"], ["--job-name", "../escape"]):
        with pytest.raises(SystemExit) as exc:
            trainer.main(["--data-dir", str(iris_data_dir), "--output-dir", str(tmp_path), *argv])
        assert exc.value.code == 2
    ps = {"cluster": {"chief": ["a:1"], "ps": ["b:1"]}, "task": {"type": "ps", "index": 0}}
    args = trainer.parse_args(["--data-dir", str(iris_data_dir), "--output-dir", str(tmp_path)])
    with pytest.raises(TrainerError, match="'ps' is not supported") as err:
        trainer.train(args, environ={"TF_CONFIG": json.dumps(ps)})
    assert err.value.code == ExitCode.BAD_ARGUMENTS
    code = trainer.main(
        ["--data-dir", str(iris_data_dir), "--output-dir", str(tmp_path), "--model", "transformer"]
    )
    assert code == ExitCode.BAD_ARGUMENTS
    assert "unknown model 'transformer'" in capsys.readouterr().err


def test_sigterm_ends_a_replica_with_the_retryable_code(tmp_path):
    """A replica blocked in native code (here: a sleep in C) still exits 143 on SIGTERM."""
    import signal
    import subprocess
    import sys
    import time

    code = (
        "import time; from kfp_edge.tfjob_training.replica_trainer import exit_on_sigterm; "
        "exit_on_sigterm(); print('ready', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == ExitCode.PREEMPTED == 143
    assert "SIGTERM received" in proc.stdout.read()
    assert time.monotonic() - started < 30


def test_tf_config_parsing_and_the_chief():
    assert trainer.read_tf_config({}) == {}
    cfg = {"cluster": {"chief": ["a:1"], "worker": ["b:1"]}, "task": {"type": "worker", "index": 0}}
    parsed = trainer.read_tf_config({"TF_CONFIG": json.dumps(cfg)})
    assert not trainer.is_chief(parsed)
    assert trainer.is_chief(
        {"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}
    )
    assert trainer.is_chief({})
    with pytest.raises(TrainerError) as err:
        trainer.read_tf_config({"TF_CONFIG": '{"cluster": {}}'})
    assert err.value.code == ExitCode.BAD_ARGUMENTS


def test_data_checks_name_the_file(iris_data_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(iris_data_dir, data)
    assert trainer.check_data(str(data))["num_features"] == 4
    manifest = json.loads((data / "manifest.json").read_text())
    missing = data / manifest["splits"]["train"]["shards"][1]["path"]
    missing.unlink()
    with pytest.raises(TrainerError, match=str(missing)) as err:
        trainer.check_data(str(data))
    assert err.value.code == ExitCode.BAD_DATA
    (data / "preprocessing.json").write_text(json.dumps({"mean": [0.0], "std": [1.0]}))
    manifest["splits"]["train"]["shards"].pop()
    (data / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(TrainerError, match="preprocessing.json: field 'mean' has 1 values"):
        trainer.check_data(str(data))
    (data / "manifest.json").write_text("{not json")
    with pytest.raises(TrainerError, match="not valid JSON"):
        trainer.check_data(str(data))


def test_bad_records_are_named_by_file_and_record(iris_data_dir, tmp_path):
    from kfp_edge.tf_env import import_tf

    tf, _ = import_tf()
    data = tmp_path / "data"
    shutil.copytree(iris_data_dir, data)
    manifest = trainer.check_data(str(data))
    assert trainer.validate_records(tf, str(data), manifest) == 150
    shard = data / manifest["splits"]["validation"]["shards"][1]["path"]
    records = [r.numpy() for r in tf.data.TFRecordDataset(str(shard))]

    def example(features, label):
        return tf.train.Example(
            features=tf.train.Features(
                feature={
                    "features": tf.train.Feature(float_list=tf.train.FloatList(value=features)),
                    "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                },
            )
        ).SerializeToString()

    for bad, message in (
        (example([1.0, 2.0, 3.0], 0), "record 2: not a tf.train.Example"),
        (example([1.0, 2.0, 3.0, 4.0], 7), "record 2: label 7 is outside"),
    ):
        with tf.io.TFRecordWriter(str(shard)) as w:
            for i, r in enumerate(records):
                w.write(bad if i == 2 else r)
        with pytest.raises(TrainerError, match=message) as err:
            trainer.validate_records(tf, str(data), manifest)
        assert str(shard) in str(err.value) and err.value.code == ExitCode.BAD_DATA
    shard.write_bytes(shard.read_bytes()[:-7])  # truncated: a corrupt file
    with pytest.raises(TrainerError, match="corrupt TFRecord") as err:
        trainer.validate_records(tf, str(data), manifest)
    assert str(shard) in str(err.value)


def test_registry_models_take_raw_features_and_output_probabilities():
    assert {"iris_mlp", "mlp", "cnn1d"} <= set(available_models())
    with pytest.raises(ValueError, match="unknown model"):
        check_model_args("nope", 0, 0)
    mean, std = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [0.5, 1.0, 2.0, 1.0, 1.0, 3.0]
    x = np.array([mean, np.add(mean, std)], dtype=np.float32)
    for name, width, depth in (("iris_mlp", 0, 0), ("mlp", 16, 3), ("cnn1d", 4, 2)):
        model = build_model(name, 6, 3, mean, std, width=width, depth=depth)
        assert model.input_shape == (None, 6)
        probs = model(x).numpy()
        assert probs.shape == (2, 3)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
        normalized = model.get_layer("preprocessing")(x).numpy()
        np.testing.assert_allclose(normalized, [[0.0] * 6, [1.0] * 6], atol=1e-5)
    iris = build_model("iris_mlp", 4, 3, [0.0] * 4, [1.0] * 4)
    dense = [layer for layer in iris.layers if layer.__class__.__name__ == "Dense"]
    assert [d.units for d in dense] == [10, 3]
    assert [d.activation.__name__ for d in dense] == ["sigmoid", "softmax"]
    with pytest.raises(ValueError, match="preprocessing spec has 1 means"):
        build_model("mlp", 4, 3, [0.0], [1.0])


def test_evaluator_scores_the_chiefs_backup_checkpoints_then_the_final_model(
    iris_data_dir, tmp_path
):
    """A real BackupAndRestore checkpoint (from a fit interrupted after 3 epochs) and then a
    final SavedModel with the chief's report: the evaluator scores both and stops."""
    import threading
    import time

    from kfp_edge.tf_env import import_tf
    from kfp_edge.workspace import write_json_atomic

    tf, keras = import_tf()
    out, job = tmp_path / "training", "eval-job"
    args = trainer.parse_args(
        [
            "--data-dir",
            str(iris_data_dir),
            "--output-dir",
            str(out),
            "--job-name",
            job,
            "--epochs",
            "3",
        ]
    )
    manifest = trainer.check_data(str(iris_data_dir))
    pre = manifest["_preprocessing"]
    model = build_model("iris_mlp", 4, 3, pre["mean"], pre["std"])
    model.compile(optimizer=keras.optimizers.Adam(0.04), loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
    y = np.arange(32) % 3

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 2:
                raise RuntimeError("preempted")

    backup = keras.callbacks.BackupAndRestore(str(out / "backup" / job))
    with pytest.raises(RuntimeError, match="preempted"):
        model.fit(x, y, epochs=10, verbose=0, callbacks=[backup, Interrupt()])
    assert tf.train.latest_checkpoint(str(out / "backup" / job / "chief"))
    evaluations = trainer.job_dir(out, job) / trainer.EVALUATOR_FILE

    def chief_finishes():
        while not evaluations.exists():
            time.sleep(0.05)
        model.save(str(out / trainer.SAVED_MODEL_DIR), save_format="tf")
        write_json_atomic(out / trainer.REPORT_FILE, {"job_name": job, "epochs": 3})

    threading.Thread(target=chief_finishes, daemon=True).start()
    results = trainer.run_evaluator(args, manifest, poll_seconds=0.05)
    assert results[0]["epoch"] == 3 and results[0]["checkpoint"] != "final"
    assert results[-1]["checkpoint"] == "final" and results[-1]["epoch"] == 3
    # the checkpoint restored the weights the final model has: the same scores
    assert results[0]["validation"] == pytest.approx(results[-1]["validation"])
    assert json.loads(evaluations.read_text()) == results


def test_an_unexpected_error_ends_the_replica_with_a_defined_code(iris_data_dir, tmp_path, capsys):
    """Before, the exception left main() and the interpreter could hang in TensorFlow's
    collective shutdown; now main() returns FAILED (1) and run() ends with os._exit."""
    import subprocess
    import sys

    argv = ["--data-dir", str(iris_data_dir), "--output-dir", str(tmp_path)]
    original = trainer.train
    trainer.train = lambda args: (_ for _ in ()).throw(RuntimeError("a bug"))
    try:
        assert trainer.main(argv) == ExitCode.FAILED
    finally:
        trainer.train = original
    assert "RuntimeError: a bug" in capsys.readouterr().err
    code = (
        "import sys; from kfp_edge.tfjob_training import replica_trainer as t; "
        "t.train = lambda args: (_ for _ in ()).throw(KeyboardInterrupt()); t.run(sys.argv[1:])"
    )
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, timeout=60)
    assert proc.returncode == ExitCode.FAILED
    proc = subprocess.run([sys.executable, "-c", code, "--epochs", "0"], timeout=60)
    assert proc.returncode == ExitCode.BAD_ARGUMENTS


def test_job_names_must_start_with_a_letter(iris_data_dir, tmp_path):
    with pytest.raises(SystemExit) as exc:
        trainer.parse_args(["--data-dir", "d", "--output-dir", "o", "--job-name", "7-run"])
    assert exc.value.code == 2


class _FakeTF:
    """Records the strategy the trainer asks for: this machine has no GPU (and creating a
    MultiWorkerMirroredStrategy here would configure this test process's runtime)."""

    def __init__(self):
        from types import SimpleNamespace

        impl = SimpleNamespace(AUTO="AUTO", RING="RING", NCCL="NCCL")
        self.made = []
        experimental = SimpleNamespace(
            CommunicationImplementation=impl,
            CommunicationOptions=lambda **kw: kw,
        )
        self.distribute = SimpleNamespace(
            experimental=experimental,
            MultiWorkerMirroredStrategy=lambda **kw: self.made.append(("MWMS", kw)) or "mwms",
            MirroredStrategy=lambda: self.made.append(("Mirrored", {})) or "mirrored",
            get_strategy=lambda: "default",
        )


def test_the_strategy_fits_the_devices():
    cfg = {"cluster": {"chief": ["a:1"], "worker": ["b:1"]}, "task": {"type": "chief", "index": 0}}
    tf = _FakeTF()
    assert trainer.choose_strategy(tf, cfg, gpus=0) == "mwms"
    assert tf.made[-1][1]["communication_options"]["implementation"] == "RING"
    assert trainer.choose_strategy(tf, cfg, gpus=2) == "mwms"
    assert tf.made[-1][1]["communication_options"]["implementation"] == "AUTO"  # NCCL on GPUs
    assert tf.made[-1][1]["communication_options"]["bytes_per_pack"] > 0
    assert trainer.choose_strategy(tf, {}, gpus=4) == "mirrored"  # one replica, several GPUs
    assert trainer.choose_strategy(tf, {}, gpus=1) == "default"
    assert trainer.choose_strategy(tf, {}, gpus=0) == "default"


def _two_identical_models(keras, steps_per_execution):
    models = []
    for _ in range(2):
        keras.utils.set_random_seed(7)
        model = build_model("iris_mlp", 4, 3, [0.0] * 4, [1.0] * 4, 8, 1)
        model.compile(
            optimizer=keras.optimizers.Adam(0.05),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            steps_per_execution=steps_per_execution,
        )
        models.append(model)
    return models


def test_reading_metrics_once_per_execution_trains_and_logs_as_keras_does():
    """The trainer's train function (metrics read once per execution, which saves the
    cross-worker all-reduces Keras's own makes after every step) gives Keras's weights and logs,
    also when an epoch ends with a shorter execution (7 steps = 3 + 3 + 1)."""
    from kfp_edge.tf_env import import_tf

    tf, keras = import_tf()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(112, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 1).astype("int64")
    keras_own, ours = _two_identical_models(keras, steps_per_execution=3)
    ours.train_function = trainer.metrics_once_per_execution(ours)
    histories = []
    for model in (keras_own, ours):
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16).repeat()
        histories.append(model.fit(ds, epochs=3, steps_per_epoch=7, verbose=0).history)
        assert int(model.optimizer.iterations) == 3 * 7
    assert ours.make_train_function() is ours.train_function  # what fit ran
    for a, b in zip(keras_own.get_weights(), ours.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    for key in ("loss", "accuracy"):
        np.testing.assert_allclose(histories[0][key], histories[1][key], rtol=1e-6)


def test_fit_leaves_its_training_iterator_alive():
    """TensorFlow's iterator destructor waits for tf.data's autotune thread, which can miss its
    cancellation and sleep out its optimization period (seen: fit returning 1-23 s after the
    last epoch of a 2-worker job). So the train function keeps the iterator fit gave it; the
    replica ends with os._exit, which never runs that destructor."""
    import gc
    import weakref

    from kfp_edge.tf_env import import_tf

    tf, keras = import_tf()
    (model,) = _two_identical_models(keras, steps_per_execution=2)[:1]
    model.train_function = trainer.metrics_once_per_execution(model)
    x = np.zeros((32, 4), "float32")
    ds = tf.data.Dataset.from_tensor_slices((x, np.zeros(32, "int64"))).batch(8).repeat()
    model.fit(ds, epochs=2, steps_per_epoch=4, verbose=0)
    (iterator,) = model.train_function.iterators
    alive = weakref.ref(iterator)
    del iterator
    gc.collect()
    assert alive() is not None


def test_a_replica_on_one_core_reads_its_input_without_autotune(iris_data_dir):
    """tf.data's autotune threads would take turns with the training step on a single core."""
    from kfp_edge.tf_env import import_tf

    tf, _ = import_tf()
    assert trainer.tf_data_autotune(cpus=1) is False
    assert trainer.tf_data_autotune(cpus=2) is True
    manifest = trainer.check_data(str(iris_data_dir))
    policy = tf.data.experimental.AutoShardPolicy.AUTO
    for autotune in (False, True):
        ds = trainer._make_dataset(
            tf, str(iris_data_dir), manifest, "train", 8, policy, True, 0, autotune=autotune
        )
        assert ds.options().autotune.enabled is autotune
        x, y = next(iter(ds))
        assert x.shape == (8, 4) and y.shape == (8,)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "200000 100000\n"}, 2),  # cgroup v2: a limit of 2 CPUs
        ({"cpu.max": "150000 100000\n"}, 2),  # 1.5 CPUs: rounded up
        ({"cpu.max": "max 100000\n"}, 8),  # no limit: the affinity
        ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3),  # v1
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, 8),
        ({"cpu.max": "6400000 100000\n"}, 8),  # a limit above the affinity: the affinity
        ({}, 8),  # no cgroup files
    ],
)
def test_a_replica_counts_the_cpus_of_its_limit_not_of_the_node(tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert trainer.cpu_budget(str(tmp_path), affinity=8) == expected


def test_thread_pools_follow_the_cpu_budget_unless_the_environment_sets_them():
    """In a 4-CPU pod on a 64-core node TensorFlow would size both pools to 64 threads."""
    environ = {}
    trainer.size_thread_pools(environ, cpus=4)
    assert environ == {"TF_NUM_INTRAOP_THREADS": "4", "TF_NUM_INTEROP_THREADS": "4"}
    environ = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}  # the local engine
    trainer.size_thread_pools(environ, cpus=4)
    assert environ == {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
