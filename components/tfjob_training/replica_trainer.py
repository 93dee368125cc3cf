"""What runs in every TFJob replica: ``python -m kfp_edge.tfjob_training.replica_trainer``.

It reads ``TF_CONFIG`` (set by the Training Operator, or by the local engine the same way) and
trains with ``MultiWorkerMirroredStrategy``; without ``TF_CONFIG`` it trains in one process with
the default strategy. It reads the ETL's TFRecord shards with tf.data auto-sharding, keeps
BackupAndRestore state in a per-job backup directory on the workspace, and only the chief writes
the final SavedModel and the training report.

Exit codes follow the operator's ``restartPolicy: ExitCode``: codes below 128 are permanent (the
job fails at once), codes of 128 or more are retryable (the replicas are restarted).
"""

from __future__ import annotations

import argparse
import enum
import json
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

from kfp_edge.model_versions import SAVED_MODEL_DIR
from kfp_edge.workspace import write_json_atomic

# numpy and TensorFlow are imported inside functions: the replica's entry point blocks SIGTERM
# (see exit_on_sigterm) before any library starts a thread.

REPORT_FILE = "training_report.json"
PROGRESS_FILE = "progress.json"
EPOCHS_FILE = "epochs.jsonl"  # per-epoch metrics with --report-metrics
EVALUATOR_FILE = "evaluator.json"
BACKUP_DIR = "backup"
JOBS_DIR = "jobs"
ALL_REDUCE_PACK_BYTES = 32 << 20  # gradients packed into collectives of up to 32 MiB


def job_dir(output_dir: str | os.PathLike, job: str) -> Path:
    """Returns the per-job directory (progress, replica logs, manifest) of a training dir."""
    return Path(output_dir) / JOBS_DIR / job


class ExitCode(enum.IntEnum):
    """Exit codes of a replica; the operator retries codes >= 128 and fails on 1-127."""

    SUCCESS = 0
    FAILED = 1  # an unexpected error: permanent, a retry would fail the same way
    BAD_ARGUMENTS = 2
    BAD_DATA = 3
    PEER_LOST = 138  # a collective op failed because another replica went away: retryable
    PREEMPTED = 143  # SIGTERM (128 + 15), as the kubelet reports it: retryable

    @property
    def retryable(self) -> bool:
        """Whether the operator's ExitCode policy restarts a replica that exits with it."""
        return is_retryable(int(self))


def is_retryable(code: int) -> bool:
    """Returns whether an exit code is retryable under ``restartPolicy: ExitCode``.

    Args:
        code: The container's exit code (128 + N for a process killed by signal N).
    """
    return code >= 128


class TrainerError(Exception):
    """A permanent error with the exit code the replica ends with."""

    def __init__(self, message: str, code: ExitCode):
        super().__init__(message)
        self.code = code


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parses the trainer's command line (argparse exits with code 2 on bad arguments)."""
    p = argparse.ArgumentParser(prog="python -m kfp_edge.tfjob_training.replica_trainer")
    p.add_argument("--data-dir", required=True, help="ETL output directory (manifest.json)")
    p.add_argument("--output-dir", required=True, help="training directory of the run")
    p.add_argument("--job-name", default="local", help="TFJob name; names the backup directory")
    p.add_argument("--model", default="iris_mlp")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=16, help="per-replica batch size")
    p.add_argument("--learning-rate", type=float, default=0.04)
    p.add_argument("--width", type=int, default=0, help="hidden width; 0 = model default")
    p.add_argument("--depth", type=int, default=0, help="hidden layers; 0 = model default")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--lr-scaling",
        choices=("linear", "none"),
        default="linear",
        help="scale --learning-rate (given for one replica's batch) with the replicas",
    )
    p.add_argument(
        "--steps-per-execution", type=int, default=16, help="training steps per tf.function call"
    )
    p.add_argument(
        "--report-metrics",
        action="store_true",
        help="validate after every epoch and print 'epoch=N validation_accuracy=V' lines "
        "(Katib's StdOut metrics collector; the local search's median stopping rule)",
    )
    p.add_argument(
        "--stop-file",
        default="",
        help="finish after the current epoch when this file exists (local early stopping)",
    )
    args = p.parse_args(argv)
    for name in ("epochs", "batch_size", "steps_per_execution"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not re.match(r"^[a-z]([-a-z0-9]*[a-z0-9])?$", args.job_name):
        p.error(f"--job-name must be a DNS-1035 label (a letter first), got {args.job_name!r}")
    if not args.learning_rate > 0:
        p.error(f"--learning-rate must be > 0, got {args.learning_rate}")
    return args


def read_tf_config(environ=None) -> dict:
    """Returns the parsed ``TF_CONFIG`` of the environment, or ``{}`` when unset.

    Raises:
        TrainerError: If TF_CONFIG is not valid JSON or lacks its task.
    """
    raw = (environ if environ is not None else os.environ).get("TF_CONFIG", "")
    if not raw.strip():
        return {}
    try:
        config = json.loads(raw)
        task = config["task"]
        task["type"], int(task["index"])
        config["cluster"]
    except (ValueError, KeyError, TypeError) as exc:
        raise TrainerError(
            f"TF_CONFIG is malformed ({exc}): {raw!r}", ExitCode.BAD_ARGUMENTS
        ) from exc
    return config


def is_chief(tf_config: dict) -> bool:
    """Returns whether this replica writes the final outputs (chief, or worker 0 without one)."""
    if not tf_config:
        return True
    task = tf_config["task"]
    if task["type"] == "chief":
        return True
    return (
        task["type"] == "worker"
        and int(task["index"]) == 0
        and ("chief" not in tf_config["cluster"])
    )


def check_data(data_dir: str) -> dict:
    """Checks the ETL output before TensorFlow starts, so bad data fails in a second.

    Returns:
        The dataset manifest.

    Raises:
        TrainerError: Naming the missing or inconsistent file or field (exit code BAD_DATA).
    """
    from kfp_edge.dataset import read_manifest

    try:
        manifest = read_manifest(data_dir)
    except FileNotFoundError as exc:
        raise TrainerError(str(exc), ExitCode.BAD_DATA) from exc
    except ValueError as exc:
        raise TrainerError(
            f"{data_dir}/manifest.json is not valid JSON: {exc}", ExitCode.BAD_DATA
        ) from exc
    for field in ("num_features", "num_classes", "splits", "preprocessing"):
        if field not in manifest:
            raise TrainerError(
                f"{data_dir}/manifest.json lacks the field {field!r}", ExitCode.BAD_DATA
            )
    for split in ("train",):
        if split not in manifest["splits"] or not manifest["splits"][split].get("shards"):
            raise TrainerError(
                f"{data_dir}/manifest.json has no {split!r} shards", ExitCode.BAD_DATA
            )
    for split in manifest["splits"]:
        for shard in manifest["splits"][split]["shards"]:
            path = Path(data_dir) / shard["path"]
            if not path.is_file():
                raise TrainerError(
                    f"{path}: TFRecord shard listed in the manifest is missing", ExitCode.BAD_DATA
                )
    pre_path = Path(data_dir) / manifest["preprocessing"]
    try:
        pre = json.loads(pre_path.read_text())
    except (OSError, ValueError) as exc:
        raise TrainerError(
            f"{pre_path}: cannot read the preprocessing spec: {exc}", ExitCode.BAD_DATA
        ) from exc
    for field in ("mean", "std"):
        if len(pre.get(field, [])) != manifest["num_features"]:
            raise TrainerError(
                f"{pre_path}: field {field!r} has {len(pre.get(field, []))} values, "
                f"expected num_features={manifest['num_features']}",
                ExitCode.BAD_DATA,
            )
    manifest["_preprocessing"] = pre
    return manifest


def exit_on_sigterm() -> None:
    """Makes SIGTERM (preemption, pod deletion) end the replica with the retryable code 143.

    A Python signal handler runs only when the main thread is back in the interpreter, which a
    replica blocked in a collective op may never be. So SIGTERM is blocked in this thread (and in
    every thread TensorFlow starts later) and a dedicated thread waits for it with sigwait.
    Call it first, before numpy (OpenBLAS) or TensorFlow start threads: a thread that does not
    block SIGTERM would take the signal and end the process with its default action.
    """
    import threading

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

    def wait() -> None:
        signal.sigwait({signal.SIGTERM})
        print("trainer: SIGTERM received (preempted); exiting with a retryable code", flush=True)
        os._exit(ExitCode.PREEMPTED)

    threading.Thread(target=wait, name="sigterm-waiter", daemon=True).start()


def pool_cpu_memory() -> None:
    """Makes TensorFlow keep its CPU tensor memory in a pool (its BFC allocator).

    TensorFlow's default CPU allocator gets each tensor from ``malloc``. In a replica of a
    distributed job, glibc served the convolution's per-step buffers (260 KiB to 19 MiB) with a
    fresh ``mmap`` and returned them with ``munmap``: some 600 of each and 55,000 page faults a
    second per replica, a quarter of the CPU time in the kernel (perf, 2 workers on 2 cores).
    The pooled allocator reuses the memory (50 mmaps and 2,000 page faults a second) and also
    counts it: the report's ``peak_tensor_bytes``. Call it before TensorFlow starts; a value
    already in the environment (``TF_CPU_ALLOCATOR_USE_BFC``) is kept.
    """
    os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")


def usable_cpus() -> list[int]:
    """The cores this process may run on (its affinity; every core where that is unknown)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def cpu_budget(cgroup_root: str = "/sys/fs/cgroup", affinity: int | None = None) -> int:
    """The CPUs this process may use: the cores of its affinity, capped by its CPU quota.

    The quota is the container's CPU limit, from cgroup v2 (``cpu.max``) or v1
    (``cpu/cpu.cfs_quota_us`` and ``cpu.cfs_period_us``), rounded up.

    Args:
        cgroup_root: Where the process's cgroup files are mounted.
        affinity: Cores of the affinity; counted when None.
    """
    if affinity is None:
        affinity = len(usable_cpus())
    root = Path(cgroup_root)
    quota = period = None
    try:
        text = (root / "cpu.max").read_text().split()
        if text and text[0] != "max":
            quota, period = int(text[0]), int(text[1])
    except (OSError, ValueError, IndexError):
        try:
            quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
            period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            pass
    if quota is not None and period and quota > 0:
        return max(1, min(affinity, math.ceil(quota / period)))
    return max(1, affinity)


def size_thread_pools(environ=None, cpus: int | None = None) -> None:
    """Sizes TensorFlow's intra- and inter-op thread pools to the CPUs the replica may use.

    TensorFlow sizes both pools to the cores of its affinity. In a pod with a CPU limit but no
    pinning (no static CPU manager) that is every core of the node: a 4-CPU replica on a 64-core
    node would run 64 threads a pool and be throttled by its quota. So both get
    :func:`cpu_budget` threads; values already in the environment (the local engine sets its
    replicas' share) are kept. Call it before TensorFlow starts.

    Args:
        environ: The environment to set; ``os.environ`` when None.
        cpus: The CPUs to size for; :func:`cpu_budget` when None.
    """
    environ = os.environ if environ is None else environ
    n = str(cpu_budget() if cpus is None else cpus)
    environ.setdefault("TF_NUM_INTRAOP_THREADS", n)
    environ.setdefault("TF_NUM_INTEROP_THREADS", n)


def peak_tensor_bytes(tf) -> int | None:
    """The peak of this process's CPU tensor memory, or None when the allocator does not count it.

    Args:
        tf: The tensorflow module.
    """
    try:
        return int(tf.config.experimental.get_memory_info("CPU:0")["peak"])
    except ValueError:  # the default (unpooled) allocator keeps no statistics
        return None


def tf_data_autotune(cpus: int | None = None) -> bool:
    """Whether the training input pipeline should let tf.data autotune itself.

    Autotuning runs a model thread and grows prefetch buffers and parallelism with background
    threads: worth it with cores to spare, but in a replica pinned to one core (the local engine
    gives each of two workers on two cores one) those threads take turns with the training step
    on that core. Measured on the pinned 2-worker job: steps 10-15 % faster and the first epoch
    0.3-0.5 s shorter with autotune off and a fixed prefetch of 2 batches.

    Args:
        cpus: CPUs this process may use; :func:`cpu_budget` when None.
    """
    return (cpu_budget() if cpus is None else cpus) > 1


FIXED_PREFETCH_BATCHES = 2  # without autotune


def _make_dataset(
    tf, data_dir, manifest, split, batch_size, shard_policy, repeat, seed, autotune=True
):
    from kfp_edge.dataset import FEATURES_KEY, LABEL_KEY, shard_paths

    num_features = int(manifest["num_features"])
    spec = {
        FEATURES_KEY: tf.io.FixedLenFeature([num_features], tf.float32),
        LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
    }

    def parse(record):
        ex = tf.io.parse_single_example(record, spec)
        return ex[FEATURES_KEY], ex[LABEL_KEY]

    files = shard_paths(data_dir, split)
    ds = tf.data.Dataset.from_tensor_slices(files)
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=1)
    ds = ds.map(parse)
    if repeat:
        ds = ds.cache().shuffle(1024, seed=seed).repeat()
    ds = ds.batch(batch_size).prefetch(tf.data.AUTOTUNE if autotune else FIXED_PREFETCH_BATCHES)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = shard_policy
    options.autotune.enabled = autotune
    return ds.with_options(options)


def validate_records(tf, data_dir: str, manifest: dict) -> int:
    """Parses every TFRecord shard before training, so bad data fails before any collective.

    Returns:
        The number of records checked.

    Raises:
        TrainerError: Naming the shard file and the record number of the first bad record
            (a corrupt record, a wrong feature length, a label outside the classes).
    """
    from kfp_edge.dataset import FEATURES_KEY, LABEL_KEY

    num_features, num_classes = int(manifest["num_features"]), int(manifest["num_classes"])
    spec = {
        FEATURES_KEY: tf.io.FixedLenFeature([num_features], tf.float32),
        LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
    }
    checked = 0
    for split in manifest["splits"]:
        for shard in manifest["splits"][split]["shards"]:
            path = str(Path(data_dir) / shard["path"])
            row = 0
            try:
                for batch in tf.data.TFRecordDataset(path).batch(4096):
                    try:
                        parsed = tf.io.parse_example(batch, spec)
                    except tf.errors.InvalidArgumentError:
                        for i, record in enumerate(batch):  # find the record, then report it
                            try:
                                tf.io.parse_single_example(record, spec)
                            except tf.errors.InvalidArgumentError as exc:
                                raise TrainerError(
                                    f"{path}: record {row + i}: not a tf.train.Example with "
                                    f"{FEATURES_KEY!r} ({num_features} floats) and {LABEL_KEY!r} "
                                    f"(int64): {exc.message.splitlines()[0]}",
                                    ExitCode.BAD_DATA,
                                ) from exc
                        raise
                    labels = parsed[LABEL_KEY].numpy()
                    bad = (labels < 0) | (labels >= num_classes)
                    if bad.any():
                        i = int(bad.argmax())
                        raise TrainerError(
                            f"{path}: record {row + i}: label {int(labels[i])} is outside the "
                            f"{num_classes} classes of the manifest",
                            ExitCode.BAD_DATA,
                        )
                    row += int(labels.shape[0])
            except tf.errors.DataLossError as exc:
                raise TrainerError(
                    f"{path}: corrupt TFRecord after record {row}: {exc.message}", ExitCode.BAD_DATA
                ) from exc
            checked += row
    return checked


def _evaluate(tf, model, data_dir, manifest, split) -> dict | None:
    """Evaluates a split on this replica alone (no collectives): eager calls on the full split."""
    import numpy as np

    if split not in manifest["splits"] or not manifest["splits"][split]["shards"]:
        return None
    policy = tf.data.experimental.AutoShardPolicy.OFF
    ds = _make_dataset(tf, data_dir, manifest, split, 256, policy, False, 0, autotune=False)
    probs, labels = [], []
    for x, y in ds:
        probs.append(model(x, training=False).numpy())
        labels.append(y.numpy())
    if not labels:
        return None
    p = np.concatenate(probs)
    y = np.concatenate(labels)
    loss = float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-7, 1.0))))
    return {"rows": int(len(y)), "accuracy": float(np.mean(p.argmax(axis=1) == y)), "loss": loss}


def _save_atomic(model, final_dir: Path) -> None:
    """Saves the SavedModel to a staging directory, then swaps it in with renames."""
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.staging-", dir=final_dir.parent))
    model.save(str(staging), save_format="tf", include_optimizer=False)
    os.chmod(staging, 0o755)  # mkdtemp makes it private; later steps may run as another user
    old = None
    if final_dir.exists():
        old = final_dir.parent / f".{final_dir.name}.old-{os.getpid()}"
        os.replace(final_dir, old)
    os.replace(staging, final_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def run_evaluator(args: argparse.Namespace, manifest: dict, poll_seconds: float = 0.5) -> list:
    """The evaluator replica: scores the chief's checkpoints on the validation split.

    It is listed in TF_CONFIG's cluster (as the operator does) but not in the collective group
    (MultiWorkerMirroredStrategy coordinates the chief and the workers only) and runs no
    collective: it restores each new BackupAndRestore checkpoint of the chief into its
    own copy of the model, evaluates it, and appends the result to
    ``jobs/<job>/evaluator.json``; when the chief's report of this job appears, it scores the
    final SavedModel and exits.

    Returns:
        The evaluations, one per checkpoint seen, the final model last.
    """
    from kfp_edge.tf_env import import_tf
    from kfp_edge.tfjob_training.models import build_model

    tf, keras = import_tf()
    started = time.time()
    output_dir = Path(args.output_dir)
    backup_dir = output_dir / BACKUP_DIR / args.job_name
    out_path = job_dir(output_dir, args.job_name) / EVALUATOR_FILE
    report_path = output_dir / REPORT_FILE
    pre = manifest["_preprocessing"]
    model = build_model(
        args.model,
        int(manifest["num_features"]),
        int(manifest["num_classes"]),
        pre["mean"],
        pre["std"],
        args.width,
        args.depth,
    )
    saved_epoch = tf.Variable(-1, dtype=tf.int64)
    checkpoint = tf.train.Checkpoint(model=model, ckpt_saved_epoch=saved_epoch)
    split = "validation" if manifest["splits"].get("validation", {}).get("shards") else "train"
    results: list = []
    seen = None
    print(f"trainer: evaluator scoring {split} for job {args.job_name}", flush=True)
    while True:
        report = _read_json(report_path)
        finished = (
            report.get("job_name") == args.job_name and report_path.stat().st_mtime >= started
        )
        if finished:
            final = keras.models.load_model(str(output_dir / SAVED_MODEL_DIR))
            results.append(
                {
                    "epoch": report["epochs"],
                    "checkpoint": "final",
                    split: _evaluate(tf, final, args.data_dir, manifest, split),
                }
            )
            write_json_atomic(out_path, results)
            print(f"trainer: evaluator final {split}: {results[-1][split]}", flush=True)
            return results
        # BackupAndRestore: every replica restores from (and the chief writes to) <dir>/chief
        path = tf.train.latest_checkpoint(str(backup_dir / "chief"))
        if path and path != seen:
            try:
                checkpoint.restore(path).expect_partial()
                metrics = _evaluate(tf, model, args.data_dir, manifest, split)
            except (tf.errors.NotFoundError, tf.errors.DataLossError, ValueError):
                metrics = None  # the chief replaced or removed it while we read: skip it
            if metrics is not None:
                seen = path
                results.append(
                    {"epoch": int(saved_epoch.numpy()) + 1, "checkpoint": path, split: metrics}
                )
                write_json_atomic(out_path, results)
        time.sleep(poll_seconds)


def _PEER_ERRORS(tf) -> tuple:  # noqa: N802 - used like a constant
    """TensorFlow errors a collective raises when a peer went away (retryable)."""
    return (
        tf.errors.UnavailableError,
        tf.errors.AbortedError,
        tf.errors.CancelledError,
        tf.errors.DeadlineExceededError,
        tf.errors.InternalError,
    )


def _save(model, output_dir: Path, chief: bool, task: dict, backup_dir: Path) -> bool:
    """Saves the final model: the chief to ``saved_model``, others to a removed temp path.

    Returns:
        Whether this replica wrote the final model (is the chief).
    """
    if chief:
        _save_atomic(model, output_dir / SAVED_MODEL_DIR)
        try:  # BackupAndRestore removed its checkpoints at the end of training
            backup_dir.rmdir()
        except OSError:
            pass
        return True
    # MultiWorkerMirroredStrategy saves are collective: every replica saves, the others to a
    # temporary path that is removed.
    tmp = Path(tempfile.mkdtemp(prefix=f".worker-{task['type']}-{task['index']}-", dir=output_dir))
    try:
        model.save(str(tmp / SAVED_MODEL_DIR), save_format="tf", include_optimizer=False)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return False


def choose_strategy(tf, tf_config: dict, gpus: int | None = None):
    """Returns the distribution strategy of this replica.

    - a distributed job (TF_CONFIG): MultiWorkerMirroredStrategy, all-reducing with AUTO on
      GPUs (NCCL where it can) and RING on CPUs, gradients packed into few collectives;
    - one replica with several GPUs: MirroredStrategy over them;
    - otherwise the default strategy.

    Args:
        tf: The TensorFlow module.
        tf_config: The parsed TF_CONFIG (``{}`` when unset).
        gpus: GPUs visible to this process; counted when None.
    """
    gpus = len(tf.config.list_physical_devices("GPU")) if gpus is None else gpus
    if tf_config:
        impl = tf.distribute.experimental.CommunicationImplementation
        options = tf.distribute.experimental.CommunicationOptions(
            bytes_per_pack=ALL_REDUCE_PACK_BYTES,
            implementation=impl.AUTO if gpus else impl.RING,
        )
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    if gpus > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _check_arguments(args: argparse.Namespace, environ) -> dict:
    """Checks the model arguments and TF_CONFIG; returns the parsed TF_CONFIG."""
    from kfp_edge.tfjob_training.models import check_model_args

    try:
        check_model_args(args.model, args.width, args.depth)
    except ValueError as exc:
        raise TrainerError(str(exc), ExitCode.BAD_ARGUMENTS) from exc
    tf_config = read_tf_config(environ)
    if tf_config and args.stop_file:
        # replicas could see the file at different epochs and leave a collective waiting
        raise TrainerError("--stop-file works for a single replica only", ExitCode.BAD_ARGUMENTS)
    if tf_config and tf_config["task"]["type"] not in ("chief", "worker", "evaluator"):
        raise TrainerError(
            f"TF_CONFIG task type {tf_config['task']['type']!r} is not supported by this trainer "
            "(it runs chief, worker and evaluator replicas)",
            ExitCode.BAD_ARGUMENTS,
        )
    return tf_config


class _Run:
    """What one replica's training needs to know: arguments, cluster, data and batch sizes."""

    def __init__(self, args, tf_config: dict, manifest: dict, strategy):
        self.args, self.tf_config, self.manifest, self.strategy = (
            args,
            tf_config,
            manifest,
            strategy,
        )
        self.chief = is_chief(tf_config)
        self.task = tf_config.get("task", {"type": "local", "index": 0})
        self.output_dir = Path(args.output_dir)
        self.backup_dir = self.output_dir / BACKUP_DIR / args.job_name
        self.progress_path = job_dir(self.output_dir, args.job_name) / PROGRESS_FILE
        self.replicas = strategy.num_replicas_in_sync
        self.global_batch = args.batch_size * self.replicas
        self.train_rows = int(manifest["splits"]["train"]["rows"])
        self.steps_per_epoch = max(1, math.ceil(self.train_rows / self.global_batch))
        # the learning rate is given for one replica's batch: scaled with the global batch
        scale = self.replicas if args.lr_scaling == "linear" else 1
        self.learning_rate = args.learning_rate * scale
        self.early_stopped_at: int | None = None
        self.epoch_seconds: list[float] = []  # this attempt's epochs, wall time each


def _compiled_model(keras, run: _Run):
    from kfp_edge.tfjob_training.models import build_model

    pre = run.manifest["_preprocessing"]
    with run.strategy.scope():
        model = build_model(
            run.args.model,
            int(run.manifest["num_features"]),
            int(run.manifest["num_classes"]),
            pre["mean"],
            pre["std"],
            run.args.width,
            run.args.depth,
        )
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=run.learning_rate),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            steps_per_execution=min(run.args.steps_per_execution, run.steps_per_epoch),
        )
    model.train_function = metrics_once_per_execution(model)
    return model


def metrics_once_per_execution(model):
    """Returns a train function for ``model.fit`` that reads the metrics once per execution.

    Keras's own train function reads every metric's result after every step, and under
    MultiWorkerMirroredStrategy each read is a cross-worker all-reduce of the metric's state
    (and each logged value one more): the small model's step made seven all-reduces instead of
    one, the gradients'. This function runs the same training step (Keras's ``compute_loss``,
    ``optimizer.minimize``, metric updates, step counter) as many times as Keras's own would
    (the compiled ``steps_per_execution``, which Keras lowers for an epoch's last, shorter
    execution) and reads the metrics after the last one, in cross-replica context (one
    aggregation per metric variable). The logs hold the same values, which Keras only looks at
    per execution anyway. ``fit`` uses it because Keras caches its train function in
    ``model.train_function`` (``compile`` clears it).

    Args:
        model: A compiled Keras 2 model.
    """
    from kfp_edge.tf_env import import_tf

    tf, keras = import_tf()
    strategy = model.distribute_strategy

    def step(data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)
            loss = model.compute_loss(x, y, y_pred, sample_weight)
        model.optimizer.minimize(loss, model.trainable_variables, tape=tape)
        model.compiled_metrics.update_state(y, y_pred, sample_weight)
        model._train_counter.assign_add(1)  # as Keras's step does (BackupAndRestore saves it)

    @tf.function(reduce_retracing=True)
    def train_function(iterator):
        for _ in tf.range(model._steps_per_execution):  # the variable Keras lowers at epoch end
            strategy.run(step, args=(next(iterator),))
        return model.get_metrics_result()

    def keeping_its_iterator(iterator):
        keeping_its_iterator.iterators[:] = [iterator]
        return train_function(iterator)

    keeping_its_iterator.iterators = []
    return keeping_its_iterator


def _progress_callback(keras, run: _Run, epoch_starts: list):
    class Progress(keras.callbacks.Callback):
        """Records the epoch each attempt started at, and each finished epoch (chief only)."""

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_started = time.perf_counter()
            if not epoch_starts:
                epoch_starts.append(epoch)
                if run.chief:
                    previous = _read_json(run.progress_path).get("attempt_start_epochs", [])
                    write_json_atomic(
                        run.progress_path,
                        {"attempt_start_epochs": [*previous, epoch], "epochs_done": epoch},
                    )

        def on_epoch_end(self, epoch, logs=None):
            run.epoch_seconds.append(time.perf_counter() - self.epoch_started)
            if run.chief:
                state = _read_json(run.progress_path)
                state["epochs_done"] = epoch + 1
                state["logs"] = {k: float(v) for k, v in (logs or {}).items()}
                # The curves of the run report; an epoch redone after a restart replaces its row.
                earlier = [h for h in state.get("history", []) if h["epoch"] <= epoch]
                state["history"] = earlier + [{"epoch": epoch + 1, **state["logs"]}]
                write_json_atomic(run.progress_path, state)
                if run.args.report_metrics:
                    _report_epoch(run, epoch + 1, logs or {})
            if run.args.stop_file and Path(run.args.stop_file).exists():
                self.model.stop_training = True
                run.early_stopped_at = epoch + 1

    return Progress()


def _report_epoch(run: _Run, epoch: int, logs: dict) -> None:
    """Prints one metrics line for Katib's StdOut collector and appends it to epochs.jsonl."""
    record = {"epoch": epoch, **{k: float(v) for k, v in logs.items()}}
    values = {
        "validation_accuracy": logs.get("val_accuracy"),
        "validation_loss": logs.get("val_loss"),
    }
    print(
        f"epoch={epoch} " + " ".join(f"{k}={v:.6f}" for k, v in values.items() if v is not None),
        flush=True,
    )
    with open(job_dir(run.output_dir, run.args.job_name) / EPOCHS_FILE, "a") as f:
        f.write(json.dumps(record) + "\n")


def _fit(tf, keras, model, run: _Run) -> tuple:
    """Fits with BackupAndRestore; returns ``(history, fit seconds, first epoch run)``."""
    train_ds = _make_dataset(
        tf,
        run.args.data_dir,
        run.manifest,
        "train",
        run.global_batch,
        tf.data.experimental.AutoShardPolicy.AUTO,
        True,
        run.args.seed,
        autotune=tf_data_autotune(),
    )
    epoch_starts: list[int] = []
    callbacks = [
        keras.callbacks.BackupAndRestore(str(run.backup_dir)),
        _progress_callback(keras, run, epoch_starts),
    ]
    validation, validation_steps = None, None
    if run.args.report_metrics:
        rows = int(run.manifest["splits"]["validation"]["rows"])
        validation_steps = max(1, math.ceil(rows / run.global_batch))
        policy = tf.data.experimental.AutoShardPolicy.AUTO
        validation = _make_dataset(
            tf, run.args.data_dir, run.manifest, "validation", run.global_batch, policy, False, 0
        )
    started = time.time()
    try:
        history = model.fit(
            train_ds,
            epochs=run.args.epochs,
            steps_per_epoch=run.steps_per_epoch,
            validation_data=validation,
            validation_steps=validation_steps,
            callbacks=callbacks,
            verbose=2 if run.chief else 0,
        )
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as exc:
        if run.tf_config and _looks_like_peer_failure(str(exc)):
            raise TrainerError(f"lost a peer during training: {exc}", ExitCode.PEER_LOST) from exc
        raise TrainerError(
            f"bad training data in {run.args.data_dir}: {exc}", ExitCode.BAD_DATA
        ) from exc
    except _PEER_ERRORS(tf) as exc:
        raise TrainerError(f"lost a peer during training: {exc}", ExitCode.PEER_LOST) from exc
    return history, time.time() - started, epoch_starts[0] if epoch_starts else run.args.epochs


def _report(tf, model, run: _Run, history, fit_seconds: float, initial_epoch: int) -> dict:
    from kfp_edge.dataset import SPLITS

    args, manifest = run.args, run.manifest
    evaluation = {
        s: _evaluate(tf, model, args.data_dir, manifest, s) for s in SPLITS if s != "train"
    }
    epochs_run = args.epochs - initial_epoch
    progress = _read_json(run.progress_path)
    return {
        "job_name": args.job_name,
        "model": args.model,
        "width": args.width,
        "depth": args.depth,
        "epochs": args.epochs,
        "epochs_run_last_attempt": epochs_run,
        "resumed_at_epoch": initial_epoch,
        "attempt_start_epochs": progress.get("attempt_start_epochs", [initial_epoch]),
        "batch_size_per_replica": args.batch_size,
        "global_batch_size": run.global_batch,
        "learning_rate": args.learning_rate,
        "learning_rate_effective": run.learning_rate,
        "steps_per_execution": min(args.steps_per_execution, run.steps_per_epoch),
        "replicas": run.replicas,
        "strategy": type(run.strategy).__name__,
        "tf_config_cluster": run.tf_config.get("cluster", {}),
        "steps_per_epoch": run.steps_per_epoch,
        "train_rows": run.train_rows,
        "final_train_metrics": {k: float(v[-1]) for k, v in history.history.items() if v},
        "history": progress.get("history", []),
        "validation": evaluation.get("validation"),
        "test": evaluation.get("test"),
        "fit_seconds": round(fit_seconds, 3),
        "examples_per_second": round(
            run.steps_per_epoch * run.global_batch * epochs_run / max(fit_seconds, 1e-9), 1
        ),
        "epoch_seconds": [round(t, 3) for t in run.epoch_seconds],
        # the first epoch also traces the train function and fills the dataset cache
        "examples_per_second_after_first_epoch": round(
            run.steps_per_epoch
            * run.global_batch
            * (len(run.epoch_seconds) - 1)
            / max(sum(run.epoch_seconds[1:]), 1e-9),
            1,
        )
        if len(run.epoch_seconds) > 1
        else None,
        "saved_model_dir": str(run.output_dir / SAVED_MODEL_DIR),
        "input": {
            "dtype": "float32",
            "shape": [None, int(manifest["num_features"])],
            "values": "raw (normalization folded into the model)",
        },
        "classes": manifest.get("classes"),
        "num_params": int(model.count_params()),
        "peak_tensor_bytes": peak_tensor_bytes(tf),
        "epochs_done": progress.get("epochs_done", args.epochs),
        "early_stopped_at_epoch": run.early_stopped_at,
    }


def train(args: argparse.Namespace, environ=None) -> dict | None:
    """Trains one replica's share; the chief returns the training report, the others None.

    Steps: check the arguments and TF_CONFIG; check the data (an evaluator replica then
    scores checkpoints instead); choose the strategy; validate every record; build and compile
    the model in the strategy's scope; fit with BackupAndRestore; save (a collective); the chief
    evaluates and writes the report.

    Raises:
        TrainerError: On bad arguments or bad data (permanent) or a lost peer (retryable).
    """
    from kfp_edge.tf_env import import_tf

    started = time.time()
    tf_config = _check_arguments(args, environ)
    manifest = check_data(args.data_dir)
    if tf_config and tf_config["task"]["type"] == "evaluator":
        run_evaluator(args, manifest)
        return None
    tf, keras = import_tf()
    keras.utils.set_random_seed(args.seed)
    # the strategy first: MultiWorkerMirroredStrategy must configure the runtime before any op
    run = _Run(args, tf_config, manifest, choose_strategy(tf, tf_config))
    validate_records(tf, args.data_dir, manifest)
    print(
        f"trainer: task {run.task['type']}:{run.task['index']} chief={run.chief} "
        f"replicas={run.replicas} global_batch={run.global_batch} "
        f"steps_per_epoch={run.steps_per_epoch} learning_rate={run.learning_rate:g}",
        flush=True,
    )
    model = _compiled_model(keras, run)
    history, fit_seconds, initial_epoch = _fit(tf, keras, model, run)
    try:
        saved = _save(model, run.output_dir, run.chief, run.task, run.backup_dir)
    except _PEER_ERRORS(tf) as exc:
        raise TrainerError(f"lost a peer while saving: {exc}", ExitCode.PEER_LOST) from exc
    if not saved:
        return None
    report = _report(tf, model, run, history, fit_seconds, initial_epoch)
    report["wall_seconds"] = round(time.time() - started, 3)
    write_json_atomic(run.output_dir / REPORT_FILE, report)
    return report


def _looks_like_peer_failure(message: str) -> bool:
    lowered = message.lower()
    return any(
        s in lowered
        for s in (
            "collective",
            "peer",
            "socket",
            "connection",
            "heartbeat",
            "coordination",
            "unavailable",
        )
    )


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def main(argv: list[str] | None = None) -> int:
    """Entry point of a replica: returns its exit code (see :class:`ExitCode`).

    Args:
        argv: Command-line arguments; ``sys.argv[1:]`` when None.

    Returns:
        The exit code.
    """
    args = parse_args(argv)
    try:
        report = train(args)
    except TrainerError as exc:
        print(
            f"trainer: error ({exc.code.name}, exit {int(exc.code)}): {exc}",
            file=sys.stderr,
            flush=True,
        )
        return int(exc.code)
    except Exception:  # noqa: BLE001 - any other error ends the replica with a defined code
        traceback.print_exc()
        print(f"trainer: unexpected error (FAILED, exit {int(ExitCode.FAILED)})", file=sys.stderr)
        return int(ExitCode.FAILED)
    if report is not None:
        print(
            "trainer: done "
            + json.dumps(
                {
                    k: report[k]
                    for k in (
                        "epochs",
                        "resumed_at_epoch",
                        "replicas",
                        "examples_per_second",
                        "test",
                    )
                }
            ),
            flush=True,
        )
    return int(ExitCode.SUCCESS)


def run(argv: list[str] | None = None) -> None:
    """Runs a replica and ends its process with its exit code, whatever happens.

    SIGTERM is handled first (see :func:`exit_on_sigterm`); the process ends with
    ``os._exit``, because TensorFlow's collective runtime can block the interpreter's shutdown
    after an error (the work is done, or has failed, either way).
    """
    exit_on_sigterm()
    pool_cpu_memory()
    size_thread_pools()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: 2 on bad arguments
        code = exc.code if isinstance(exc.code, int) else int(ExitCode.BAD_ARGUMENTS)
    except BaseException:  # noqa: BLE001 - e.g. KeyboardInterrupt: still a defined exit
        traceback.print_exc()
        code = int(ExitCode.FAILED)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
