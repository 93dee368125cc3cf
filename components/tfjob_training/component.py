"""kfp component: distributed Keras training as a Kubeflow TFJob."""

from typing import NamedTuple

from kfp import dsl

from kfp_edge.images import TENSORFLOW_IMAGE


@dsl.component(base_image=TENSORFLOW_IMAGE, install_kfp_package=False)
def TfjobTrainingOp(
    workspace: str,
    run_id: str,
    data_dir: str,
    metrics: dsl.Output[dsl.Metrics],
    model: str = "iris_mlp",
    epochs: int = 100,
    batch_size: int = 16,
    learning_rate: float = 0.04,
    workers: int = 2,
    engine: str = "local",
    replica_resources: dict = {},  # noqa: B006 - kfp needs a literal default
    image: str = "",
    namespace: str = "",
    pvc_name: str = "kfp-edge-workspace",
    mount_path: str = "",
    timeout_seconds: int = 3600,
    attempt_limit: int = 3,
    keep_job: bool = False,
    keep_failed_job: bool = False,
    pending_timeout_seconds: int = 600,
    gang_scheduling: bool = False,
    width: int = 0,
    depth: int = 0,
    seed: int = 42,
    search_space: dict = {},  # noqa: B006 - kfp needs a literal default
    search_algorithm: str = "random",
    search_max_trials: int = 4,
    search_parallel_trials: int = 2,
    search_size_penalty: float = 0.0,
    search_early_stopping: bool = True,
) -> NamedTuple("Outputs", [("saved_model_dir", str)]):
    """Trains a Keras model from the registry as a TFJob (chief + workers, TF_CONFIG, MWMS).

    Args:
        workspace: Root of the workspace volume (the PVC mount path in the cluster).
        run_id: The run id; the model goes to <workspace>/runs/<run_id>/training/saved_model.
        data_dir: The ETL's output directory (TFRecord shards, manifest, preprocessing spec).
        metrics: Training metrics: test and validation accuracy and loss, examples/s, restarts.
        model: Model registry name: iris_mlp, mlp or cnn1d.
        epochs: Training epochs.
        batch_size: Per-replica batch size.
        learning_rate: Adam learning rate.
        workers: Training replicas in total, the chief included.
        engine: local (replicas as processes in this step's pod) or kubernetes (a TFJob created
            through the Kubernetes API and followed until it finishes).
        replica_resources: {"chief": spec, "worker": spec} with cpu/memory requests and limits,
            gpu_count, gpu_resource, node_selector and tolerations of the training replicas.
        image: Image of the training replicas; the kfp-edge TensorFlow image when empty.
        namespace: Namespace of the TFJob; the launcher pod's namespace when empty.
        pvc_name: Workspace PVC mounted in every training replica.
        mount_path: Workspace mount path in the replicas; the workspace parameter when empty.
        timeout_seconds: Timeout of the job (activeDeadlineSeconds and the launcher's own).
        attempt_limit: Restarts allowed before the job fails (backoffLimit and the launcher's).
        keep_job: Keep the finished TFJob on the cluster instead of deleting it.
        keep_failed_job: Keep a failed TFJob (its pods and logs) on the cluster for debugging.
        pending_timeout_seconds: Fail when a replica pod stays Pending (unschedulable) longer
            than this; 0: never.
        gang_scheduling: Set spec.runPolicy.schedulingPolicy so that all replicas start
            together or none (needs the operator's gang scheduler, e.g. Volcano or
            scheduler-plugins).
        width: Hidden width of the model; 0 for the model's default.
        depth: Hidden layers of the model; 0 for the model's default.
        seed: Random seed of training.
        search_space: Hyperparameter search space ({name: {type, min, max, scale, step,
            values}}); empty trains once. The best trial's model is the output.
        search_algorithm: Search algorithm: random or grid.
        search_max_trials: Trials of the search at most.
        search_parallel_trials: Trials running at the same time.
        search_size_penalty: Objective: validation accuracy minus this per million parameters.
        search_early_stopping: Stop poor trials by Katib's median stopping rule.

    Returns:
        saved_model_dir: The SavedModel (raw float32 features in, softmax probabilities out).
    """
    from collections import namedtuple

    from kfp_edge.tfjob_training.training_step import run_training

    report = run_training(
        workspace,
        run_id,
        data_dir,
        engine=engine,
        model=model,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        workers=workers,
        replica_resources=replica_resources,
        image=image,
        namespace=namespace,
        pvc_name=pvc_name,
        mount_path=mount_path,
        timeout_seconds=timeout_seconds,
        attempt_limit=attempt_limit,
        keep_job=keep_job,
        keep_failed_job=keep_failed_job,
        pending_timeout_seconds=pending_timeout_seconds,
        gang_scheduling=gang_scheduling,
        width=width,
        depth=depth,
        seed=seed,
        search={
            "space": search_space,
            "algorithm": search_algorithm,
            "max_trials": search_max_trials,
            "parallel_trials": search_parallel_trials,
            "size_penalty": search_size_penalty,
            "early_stopping": search_early_stopping,
        },
    )
    for split in ("test", "validation"):
        for name, value in (report.get(split) or {}).items():
            if name != "rows":
                metrics.log_metric(f"{split}_{name}", float(value))
    metrics.log_metric("examples_per_second", float(report["examples_per_second"]))
    metrics.log_metric("restarts", float(report["tfjob"]["restarts"]))
    metrics.log_metric("replicas", float(report["replicas"]))
    if report.get("search"):
        metrics.log_metric("search_trials", float(len(report["search"]["trials"])))
    outputs = namedtuple("Outputs", ["saved_model_dir"])
    return outputs(report["saved_model_dir"])
