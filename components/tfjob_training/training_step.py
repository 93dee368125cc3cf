"""Training as a TFJob: build the spec once, run it on the local engine or on Kubernetes.

:func:`train_local` is what ``kfp-edge run`` and the tests call; :func:`run_training` is what the
component calls with ``engine="local"`` or ``engine="kubernetes"``.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Callable, TextIO

from kfp_edge.tfjob_training import tfjob_spec
from kfp_edge.tfjob_training.config import TrainingConfig
from kfp_edge.tfjob_training.local_tfjob_engine import TFJobFailed
from kfp_edge.tfjob_training.replica_trainer import PROGRESS_FILE, REPORT_FILE, job_dir
from kfp_edge.workspace import write_json_atomic

ENGINES = ("local", "kubernetes")


def build_job(
    data_dir: str,
    output_dir: str,
    *,
    job: str,
    model: str = TrainingConfig.model,
    epochs: int = TrainingConfig.epochs,
    batch_size: int = TrainingConfig.batch_size,
    learning_rate: float = TrainingConfig.learning_rate,
    workers: int = TrainingConfig.workers,
    width: int = TrainingConfig.width,
    depth: int = TrainingConfig.depth,
    seed: int = TrainingConfig.seed,
    image: str = "",
    steps_per_execution: int | None = None,
    report_metrics: bool = False,
    stop_file: str = "",
    **spec_options,
) -> dict:
    """Builds the TFJob that trains ``model`` on ``data_dir`` into ``output_dir``.

    Args:
        data_dir: ETL output directory as the replicas see it.
        output_dir: Training directory as the replicas see it.
        job: TFJob name.
        model: Model registry name.
        epochs: Training epochs.
        batch_size: Per-replica batch size.
        learning_rate: Adam learning rate.
        workers: Replicas in total, the chief included.
        width: Hidden width (0: the model's default).
        depth: Hidden layers (0: the model's default).
        seed: Random seed.
        image: Replica image; the kfp-edge TensorFlow image when empty.
        steps_per_execution: Training steps per ``tf.function`` call (the trainer's default
            when None).
        report_metrics: Validate every epoch and print Katib's metric lines.
        stop_file: The trainer finishes after the epoch in which this file appears.
        **spec_options: Further keyword arguments of :func:`tfjob.build_tfjob` (namespace,
            replica_resources, pvc_name, mount_path, backoff_limit, active_deadline_seconds,
            clean_pod_policy, ttl_seconds_after_finished, restart_policy, labels).

    Returns:
        The TFJob manifest.
    """
    from kfp_edge.images import TENSORFLOW_IMAGE
    from kfp_edge.tfjob_training.models import check_model_args

    check_model_args(model, int(width), int(depth))
    args = tfjob_spec.trainer_args(
        data_dir,
        output_dir,
        job,
        model,
        epochs,
        batch_size,
        learning_rate,
        width,
        depth,
        seed,
        steps_per_execution,
        report_metrics,
        stop_file,
    )
    return tfjob_spec.build_tfjob(
        job, args, image=image or TENSORFLOW_IMAGE, workers=workers, **spec_options
    )


def _start_fresh(output_dir: Path, job: str) -> None:
    """Forgets the progress of an earlier job of the same name (its backup stays usable)."""
    (job_dir(output_dir, job) / PROGRESS_FILE).unlink(missing_ok=True)


def _finish(output_dir: Path, manifest: dict, status: dict, engine: str) -> dict:
    report_path = output_dir / REPORT_FILE
    if not report_path.exists():
        raise RuntimeError(
            f"TFJob {manifest['metadata']['name']} succeeded but the chief wrote no {report_path}"
        )
    report = json.loads(report_path.read_text())
    if report.get("job_name") != manifest["metadata"]["name"]:
        raise RuntimeError(
            f"{report_path} belongs to job {report.get('job_name')!r}, not "
            f"{manifest['metadata']['name']!r}"
        )
    report["engine"] = engine
    report["tfjob"] = {
        "name": manifest["metadata"]["name"],
        "namespace": manifest["metadata"].get("namespace"),
        "replicas": {t: s["replicas"] for t, s in manifest["spec"]["tfReplicaSpecs"].items()},
        "run_policy": manifest["spec"].get("runPolicy", {}),
        "restarts": status.get("restarts", 0),
        "conditions": [c["type"] for c in status.get("conditions", [])],
    }
    if "attempts" in status:
        report["tfjob"]["attempts"] = status["attempts"]
    write_json_atomic(report_path, report)
    return report


def train_local(
    data_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    model: str = TrainingConfig.model,
    epochs: int = TrainingConfig.epochs,
    batch_size: int = TrainingConfig.batch_size,
    learning_rate: float = TrainingConfig.learning_rate,
    workers: int = TrainingConfig.workers,
    job: str | None = None,
    stream: TextIO | None = None,
    on_event: Callable[[str, dict], None] | None = None,
    grace_seconds: float = 5.0,
    pin_cpus: bool = True,
    **opts,
) -> dict:
    """Builds the TFJob spec and runs it with the local engine.

    Args:
        data_dir: ETL output directory (see :mod:`kfp_edge.dataset`).
        output_dir: Training directory; receives ``saved_model/``, ``training_report.json``,
            ``jobs/<job>/`` (manifest, replica logs, progress) and ``backup/<job>/``.
        model: Model registry name (``iris_mlp``, ``mlp``, ``cnn1d``).
        epochs: Training epochs.
        batch_size: Per-replica batch size.
        learning_rate: Adam learning rate.
        workers: Replicas in total, the chief included.
        job: TFJob name; derived from the output directory when None.
        stream: Where the chief's log is streamed (stdout when None).
        on_event: Callback of the local engine (job conditions, replica pids).
        grace_seconds: SIGTERM-to-SIGKILL grace when replicas are stopped.
        pin_cpus: Pin each replica to cores of its own when they fit (the engine's default).
        **opts: Further options of :func:`build_job` (width, depth, seed, backoff_limit,
            active_deadline_seconds, replica_resources, ...).

    Returns:
        The training report (also in ``<output_dir>/training_report.json``).

    Raises:
        kfp_edge.tfjob_training.local_tfjob_engine.TFJobFailed: If the job fails.
    """
    from kfp_edge.tfjob_training.local_tfjob_engine import run_tfjob

    output_dir = Path(output_dir).absolute()
    data_dir = Path(data_dir).absolute()
    job = job or tfjob_spec.job_name(output_dir.parent.name or "local", prefix="local-train")
    opts.setdefault("namespace", "local")
    opts.setdefault("mount_path", str(output_dir.parent))
    manifest = build_job(
        str(data_dir),
        str(output_dir),
        job=job,
        model=model,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        workers=workers,
        **opts,
    )
    jdir = job_dir(output_dir, job)
    jdir.mkdir(parents=True, exist_ok=True)
    _start_fresh(output_dir, job)
    write_json_atomic(jdir / "tfjob.json", manifest)
    logs = jdir / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    status = run_tfjob(
        manifest,
        logs,
        stream=stream or sys.stdout,
        on_event=on_event,
        grace_seconds=grace_seconds,
        pin_cpus=pin_cpus,
    )
    return _finish(output_dir, manifest, status, "local")


def run_training(
    workspace: str,
    run_id: str,
    data_dir: str,
    *,
    engine: str = "local",
    model: str = TrainingConfig.model,
    epochs: int = TrainingConfig.epochs,
    batch_size: int = TrainingConfig.batch_size,
    learning_rate: float = TrainingConfig.learning_rate,
    workers: int = TrainingConfig.workers,
    replica_resources: dict | None = None,
    image: str = "",
    namespace: str = "",
    pvc_name: str = tfjob_spec.DEFAULT_PVC,
    mount_path: str = "",
    timeout_seconds: int = TrainingConfig.timeout_seconds,
    attempt_limit: int = TrainingConfig.attempt_limit,
    keep_job: bool = False,
    keep_failed_job: bool = TrainingConfig.keep_failed_job,
    pending_timeout_seconds: int = TrainingConfig.pending_timeout_seconds,
    gang_scheduling: bool = TrainingConfig.gang_scheduling,
    width: int = TrainingConfig.width,
    depth: int = TrainingConfig.depth,
    seed: int = TrainingConfig.seed,
    search: dict | None = None,
    stream: TextIO | None = None,
    api_client=None,
) -> dict:
    """Trains into ``<run dir>/training`` on the chosen engine and records the run report.

    With a ``search`` (``{"space", "algorithm", "max_trials", "parallel_trials",
    "size_penalty", "early_stopping"}``, a non-empty space) the step runs a hyperparameter
    search instead of one job: trials in parallel on the local engine, or a Katib Experiment
    with TFJob trials on the cluster; the best trial's model becomes the step's model.

    Args:
        workspace: Workspace root (the PVC mount path in the cluster).
        run_id: Pipeline run id.
        data_dir: ETL output directory.
        engine: ``local`` (replicas as local processes) or ``kubernetes`` (a TFJob on the
            cluster, created through the Kubernetes API).
        model: Model registry name.
        epochs: Training epochs.
        batch_size: Per-replica batch size.
        learning_rate: Adam learning rate.
        workers: Replicas in total, the chief included.
        replica_resources: ``{"chief": spec, "worker": spec}`` (see :mod:`kfp_edge.resources`).
        image: Replica image (kubernetes engine); the kfp-edge TensorFlow image when empty.
        namespace: Namespace of the TFJob; the launcher pod's own namespace when empty.
        pvc_name: Workspace PVC mounted in every replica.
        mount_path: Mount path of the workspace in the replicas; ``workspace`` when empty.
        timeout_seconds: The launcher's own timeout (also the job's activeDeadlineSeconds).
        attempt_limit: Restarts allowed (backoffLimit, and the launcher's own limit).
        keep_job: Keep the TFJob after it finished (kubernetes engine).
        keep_failed_job: Keep a failed TFJob for debugging (kubernetes engine).
        pending_timeout_seconds: How long a replica pod may stay Pending (kubernetes engine).
        gang_scheduling: Start all replicas together or none (``schedulingPolicy``).
        width: Hidden width (0: model default).
        depth: Hidden layers (0: model default).
        seed: Random seed.
        search: The hyperparameter search (see above); None or an empty space trains once.
        stream: Where the chief's log goes (stdout when None).
        api_client: Kubernetes ``ApiClient`` for the kubernetes engine; in-cluster
            configuration when None.

    Returns:
        The training report.
    """
    from kfp_edge.workspace import TRAINING_DIR, run_dir, update_report

    if engine not in ENGINES:
        raise ValueError(f"unknown training engine {engine!r}; expected one of {ENGINES}")
    rdir = run_dir(workspace, run_id)
    output_dir = rdir / TRAINING_DIR
    job = tfjob_spec.job_name(run_id)
    common = dict(
        model=model,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        workers=workers,
        width=width,
        depth=depth,
        seed=seed,
        replica_resources=replica_resources or {},
        backoff_limit=attempt_limit,
        active_deadline_seconds=timeout_seconds,
    )
    if search and search.get("space"):
        cluster = dict(
            namespace=namespace,
            image=image,
            pvc_name=pvc_name,
            mount_path=mount_path or str(workspace),
            timeout_seconds=timeout_seconds,
            api_client=api_client,
        )
        run = functools.partial(
            _search, engine, rdir, data_dir, output_dir, search, common, stream, cluster
        )
    elif engine == "local":
        run = functools.partial(train_local, data_dir, output_dir, job=job, stream=stream, **common)
    else:
        launch_options = dict(
            timeout_seconds=timeout_seconds,
            attempt_limit=attempt_limit,
            keep_job=keep_job,
            keep_failed_job=keep_failed_job,
            pending_timeout_seconds=pending_timeout_seconds,
            stream=stream or sys.stdout,
            api_client=api_client,
        )
        spec = dict(
            namespace=namespace or _pod_namespace(),
            image=image,
            pvc_name=pvc_name,
            mount_path=mount_path or str(workspace),
            gang_scheduling=gang_scheduling,
            **common,
        )
        run = functools.partial(
            _train_on_kubernetes, output_dir, data_dir, job, spec, launch_options
        )
    try:
        report = run()
    except TFJobFailed as exc:  # the failure goes into the run report too
        failure = {"reason": exc.reason, "message": str(exc)}
        failure["failed_replicas"] = exc.status.get("failed_replicas", [])
        update_report(rdir, "training", {"engine": engine, "job": job, "failed": failure})
        raise
    update_report(rdir, "training", report)
    return report


def _train_on_kubernetes(
    output_dir: Path, data_dir: str, job: str, spec: dict, launch_options: dict
) -> dict:
    """Builds the TFJob (owned by this pod), launches it and reads the chief's report."""
    from kfp_edge.tfjob_training.launcher import launch, launcher_owner

    output_dir.mkdir(parents=True, exist_ok=True)
    manifest = build_job(
        str(data_dir), str(output_dir), job=job, labels={"kfp-edge/tfjob": job}, **spec
    )
    owner = launcher_owner(spec["namespace"])
    if owner is not None:
        manifest["metadata"]["ownerReferences"] = [owner]
    # a new job starts its progress afresh; an adopted one (a retried step) keeps it
    status = launch(manifest, before_create=lambda: _start_fresh(output_dir, job), **launch_options)
    return _finish(output_dir, manifest, status, "kubernetes")


def _pod_namespace() -> str:
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    return path.read_text().strip() if path.exists() else "kubeflow"


def _search(engine, rdir, data_dir, output_dir, search, common, stream, cluster) -> dict:
    """Runs the search, then makes the best trial's model and report the step's own."""
    from kfp_edge.tfjob_training.local_search import SEARCH_DIR, run_search

    fixed = {k: v for k, v in common.items() if k not in ("workers", "replica_resources")}
    if engine == "local":
        summary = run_search(
            data_dir,
            rdir / SEARCH_DIR,
            search["space"],
            algorithm=search.get("algorithm", "random"),
            max_trials=int(search.get("max_trials", 4)),
            parallel_trials=int(search.get("parallel_trials", 2)),
            size_penalty=float(search.get("size_penalty", 0.0)),
            early_stopping=bool(search.get("early_stopping", True)),
            stream=stream,
            **fixed,
        )
    else:
        summary = _search_on_katib(rdir / SEARCH_DIR, data_dir, search, common, cluster)
    best = rdir / SEARCH_DIR / summary["best"]
    if output_dir.exists():
        shutil.rmtree(output_dir)
    shutil.copytree(best, output_dir, ignore=shutil.ignore_patterns("backup"))
    report = json.loads((output_dir / REPORT_FILE).read_text())
    report["saved_model_dir"] = str(output_dir / "saved_model")
    report["search"] = summary
    write_json_atomic(output_dir / REPORT_FILE, report)
    return report


def _search_on_katib(search_dir: Path, data_dir, search: dict, common: dict, cluster: dict) -> dict:
    """The search as a Katib Experiment with TFJob trials; returns the local search's summary."""
    from kfp_edge.images import TENSORFLOW_IMAGE
    from kfp_edge.tfjob_training.katib import build_experiment
    from kfp_edge.tfjob_training.katib_launcher import run_experiment

    search_dir.mkdir(parents=True, exist_ok=True)
    trainer = ("model", "epochs", "batch_size", "learning_rate", "width", "depth", "seed")
    experiment = build_experiment(
        search_dir.parent.name,
        search["space"],
        str(data_dir),  # the replicas mount the workspace where this step does
        str(search_dir),
        namespace=cluster["namespace"] or _pod_namespace(),
        algorithm=search.get("algorithm", "random"),
        max_trials=int(search.get("max_trials", 4)),
        parallel_trials=int(search.get("parallel_trials", 2)),
        early_stopping=bool(search.get("early_stopping", True)),
        image=cluster["image"] or TENSORFLOW_IMAGE,
        workers=common["workers"],
        replica_resources=common["replica_resources"],
        pvc_name=cluster["pvc_name"],
        mount_path=cluster["mount_path"],
        **{k: common[k] for k in trainer},
    )
    write_json_atomic(search_dir / "experiment.json", experiment)
    best = run_experiment(
        experiment,
        api_client=cluster["api_client"],
        timeout_seconds=cluster["timeout_seconds"],
        poll_seconds=float(search.get("poll_seconds", 15.0)),
    )
    return {
        "engine": "katib",
        "experiment": experiment["metadata"]["name"],
        "algorithm": experiment["spec"]["algorithm"]["algorithmName"],
        "space": search["space"],
        "best": best["name"],
        "best_assignments": best["assignments"],
        "best_metrics": best["metrics"],
    }
