"""Training throughput: the local TFJob engine with 1 and 2 workers against plain training.

All runs train the sensor model (``cnn1d``, 64-value windows, 4 classes) on the same TFRecord
shards with the same trainer code and the same per-replica batch, on the same cores and threads
in all (plain and 1 worker: one process with an intra-op thread per core and one inter-op
thread, as the engine gives a one-replica job; 2 workers: one intra-op thread each, each
replica pinned to a core of its own, as the engine pins replicas that fit the cores):

- ``plain``: the trainer in one process without TF_CONFIG (the default strategy, no collectives);
- ``plain_1_intra_op_thread``: the same with one intra-op thread, the fastest plain run on two
  cores for this small model (its ops are too small to split between threads); the ratios are
  given against it too, so that the distributed runs are also compared with plain at its best;
- ``tfjob_1_worker``: a TFJob with a chief alone; like the operator, the engine gives a single
  replica no TF_CONFIG, so it trains as plain does (the difference is the engine's overhead);
- ``tfjob_2_workers``: a chief and a worker, all-reducing packed gradients over gRPC (RING) on
  loopback, 16 steps per ``tf.function`` call, the learning rate scaled with the global batch;
- ``tfjob_2_workers_unpinned``: the same with the replicas free to run on either core, as the
  engine ran them before.

(One step per ``tf.function`` call instead of 16 took 2 workers to about 0.4x plain: the
per-step Python and call overhead on top of each all-reduce; ``--steps-per-execution 1``.)

Each contestant runs seven times, the rounds interleaved, and the run with the median
examples/s is reported (all seven figures alongside): run-to-run spread on this VM is up to
40 % for the same job. Examples/s count the training examples
of the epochs run divided by the time inside ``model.fit`` (from the chief's report);
``examples_per_s_after_epoch_1`` leaves out the first epoch, which also traces the train
function and fills the dataset cache; ``wall_s`` is the whole job, process starts included.
Round ``i`` trains every contestant with seed ``42 + i``: one seed's test accuracy differs by
up to a point from another's, so the accuracy is the mean over the rounds' seeds.
On one 2-core machine two workers share the cores, so the ratios show the strategy's overhead
here, not a cluster's speed-up.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from kfp_edge.tfjob_training.replica_trainer import usable_cpus

FEATURES = 64
CLASSES = 4


def _write_sensor_dataset(data_dir: Path, rows: int, seed: int = 0) -> Path:
    """Sensor-like windows (a noisy sine per class) in the ETL's output contract."""
    from kfp_edge.tf_env import import_tf

    tf, _ = import_tf()
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2 * np.pi, FEATURES, dtype=np.float32)
    y = rng.integers(0, CLASSES, size=rows)
    x = (1 + 0.5 * y[:, None]) * np.sin(t[None, :] * (1 + y[:, None]))
    x = x + 0.3 * rng.normal(size=(rows, FEATURES))
    x = x.astype(np.float32)
    n_train = int(rows * 0.8)
    splits = {"train": (x[:n_train], y[:n_train]), "test": (x[n_train:], y[n_train:])}
    manifest = {
        "feature_columns": [f"s{i}" for i in range(FEATURES)],
        "label_column": "label",
        "classes": [f"c{k}" for k in range(CLASSES)],
        "num_features": FEATURES,
        "num_classes": CLASSES,
        "preprocessing": "preprocessing.json",
        "splits": {},
    }
    for split, (xs, ys) in splits.items():
        (data_dir / split).mkdir(parents=True, exist_ok=True)
        shards = []
        for i, idx in enumerate(np.array_split(np.arange(len(ys)), 2)):
            rel = f"{split}/part-{i:05d}.tfrecord"
            with tf.io.TFRecordWriter(str(data_dir / rel)) as w:
                for j in idx:
                    ex = tf.train.Example(
                        features=tf.train.Features(
                            feature={
                                "features": tf.train.Feature(
                                    float_list=tf.train.FloatList(value=xs[j])
                                ),
                                "label": tf.train.Feature(
                                    int64_list=tf.train.Int64List(value=[int(ys[j])])
                                ),
                            }
                        )
                    )
                    w.write(ex.SerializeToString())
            shards.append({"path": rel, "rows": int(len(idx))})
        manifest["splits"][split] = {"rows": int(len(ys)), "shards": shards}
    x_train = splits["train"][0]
    (data_dir / "preprocessing.json").write_text(
        json.dumps(
            {
                "type": "standardize",
                "feature_columns": manifest["feature_columns"],
                "mean": x_train.mean(axis=0).tolist(),
                "std": x_train.std(axis=0).tolist(),
            }
        )
    )
    (data_dir / "manifest.json").write_text(json.dumps(manifest))
    return data_dir


def _plain(data_dir: Path, out: Path, params: dict, intra_op_threads: int | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    # the threads the local engine gives a replica that has every core (like for like)
    threads = intra_op_threads or len(usable_cpus())
    env.update(TF_NUM_INTRAOP_THREADS=str(threads), TF_NUM_INTEROP_THREADS="1")
    args = [
        sys.executable,
        "-m",
        "kfp_edge.tfjob_training.replica_trainer",
        "--data-dir",
        str(data_dir),
        "--output-dir",
        str(out),
        "--job-name",
        "plain",
        "--model",
        params["model"],
        "--epochs",
        str(params["epochs"]),
        "--batch-size",
        str(params["batch_size"]),
        "--learning-rate",
        str(params["learning_rate"]),
        "--width",
        str(params["width"]),
        "--depth",
        str(params["depth"]),
        "--seed",
        str(params["seed"]),
    ]
    started = time.perf_counter()
    subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    report = json.loads((out / "training_report.json").read_text())
    report["wall"] = time.perf_counter() - started
    return report


def _tfjob(data_dir: Path, out: Path, params: dict, workers: int, pin_cpus=True, **opts) -> dict:
    from kfp_edge.tfjob_training.training_step import train_local

    started = time.perf_counter()
    report = train_local(
        data_dir,
        out,
        workers=workers,
        job=f"bench-w{workers}",
        stream=io.StringIO(),
        pin_cpus=pin_cpus,
        **params,
        **opts,
    )
    report["wall"] = time.perf_counter() - started
    return report


ROUNDS = 7
SEED = 42


def _median_run(reports: list[dict]) -> dict:
    """The report of the run with the median examples/s (wall time: the median too)."""
    ordered = sorted(reports, key=lambda r: r["examples_per_second"])
    median = dict(ordered[len(ordered) // 2])
    median["wall"] = sorted(r["wall"] for r in reports)[len(reports) // 2]
    median["rounds"] = [r["examples_per_second"] for r in reports]
    accuracies = [r["test"]["accuracy"] for r in reports]
    median["test_accuracy_mean"] = sum(accuracies) / len(accuracies)
    median["test_accuracy_rounds"] = accuracies
    return median


def run(quick: bool = False) -> dict:
    rows = 1200 if quick else 32000
    params = {
        "model": "cnn1d",
        "epochs": 3 if quick else 8,
        "batch_size": 64,
        "learning_rate": 0.01,
        "width": 16,
        "depth": 2,
    }
    rounds = 1 if quick else ROUNDS
    runs: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        tmp = Path(tmp)
        data_dir = _write_sensor_dataset(tmp / "data", rows)
        for i in range(rounds):  # interleaved, so a change of load hits every contestant
            params["seed"] = SEED + i  # accuracy over as many seeds as rounds, the same for all
            runs.setdefault("plain", []).append(_plain(data_dir, tmp / f"plain-{i}", params))
            runs.setdefault("plain_1_intra_op_thread", []).append(
                _plain(data_dir, tmp / f"plain1-{i}", params, intra_op_threads=1)
            )
            for name, workers, opts in (
                ("tfjob_1_worker", 1, {}),
                ("tfjob_2_workers", 2, {}),
                ("tfjob_2_workers_unpinned", 2, {"pin_cpus": False}),
            ):
                out = tmp / f"{name}-{i}"
                runs.setdefault(name, []).append(_tfjob(data_dir, out, params, workers, **opts))
    results = {name: _median_run(reports) for name, reports in runs.items()}
    table = []
    for name, r in results.items():
        table.append(
            {
                "run": name,
                "replicas": r["replicas"],
                "strategy": r["strategy"],
                "global_batch": r["global_batch_size"],
                "examples_per_s": r["examples_per_second"],
                "examples_per_s_after_epoch_1": r["examples_per_second_after_first_epoch"],
                "examples_per_s_rounds": " ".join(f"{v:.0f}" for v in r["rounds"]),
                "fit_s": r["fit_seconds"],
                "wall_s": round(r["wall"], 2),
                "test_accuracy_mean": round(r["test_accuracy_mean"], 4),
                "test_accuracy_rounds": " ".join(f"{a:.4f}" for a in r["test_accuracy_rounds"]),
            }
        )
    eps = {name: r["examples_per_second"] for name, r in results.items()}
    fastest_plain = max(eps["plain"], eps["plain_1_intra_op_thread"])
    ratios = {
        "tfjob_1_worker_vs_plain_examples_per_s": eps["tfjob_1_worker"] / eps["plain"],
        "tfjob_2_workers_vs_plain_examples_per_s": eps["tfjob_2_workers"] / eps["plain"],
        "tfjob_1_worker_vs_fastest_plain_examples_per_s": eps["tfjob_1_worker"] / fastest_plain,
        "tfjob_2_workers_vs_fastest_plain_examples_per_s": eps["tfjob_2_workers"] / fastest_plain,
        "tfjob_2_workers_unpinned_vs_plain_examples_per_s": eps["tfjob_2_workers_unpinned"]
        / eps["plain"],
        "tfjob_2_workers_vs_1_worker_examples_per_s": eps["tfjob_2_workers"]
        / eps["tfjob_1_worker"],
        "tfjob_2_workers_vs_plain_wall": results["tfjob_2_workers"]["wall"]
        / results["plain"]["wall"],
        "tfjob_2_workers_minus_plain_test_accuracy_mean": results["tfjob_2_workers"][
            "test_accuracy_mean"
        ]
        - results["plain"]["test_accuracy_mean"],
    }
    return {
        "name": "training",
        "rows": table,
        "ratios": {k: round(v, 3) for k, v in ratios.items()},
        "notes": (
            f"cnn1d (width 16, depth 2) on {rows} synthetic 64-value sensor windows, "
            f"{params['epochs']} epochs, per-replica batch {params['batch_size']}; "
            f"{os.cpu_count()} CPU cores shared by all replicas; median of {rounds} interleaved "
            f"rounds; load average {os.getloadavg()[0]:.1f} at the end"
        ),
    }


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
