"""The training stage's parameters, one source for component, pipelines and CLI."""

from dataclasses import dataclass

from kfp_edge.stage_config import param


@dataclass(frozen=True)
class TrainingConfig:
    """The training step's parameters (see kfp_edge.stage_config)."""

    model: str = param("iris_mlp", "Model registry name: iris_mlp, mlp or cnn1d.")
    epochs: int = param(100, "Training epochs.")
    batch_size: int = param(16, "Per-replica batch size.")
    learning_rate: float = param(0.04, "Adam learning rate.")
    workers: int = param(2, "Training replicas in total, the chief included.")
    engine: str = param(
        "local",
        "local (replicas as processes in this step's pod) or kubernetes (a TFJob created "
        "through the Kubernetes API and followed until it finishes).",
    )
    replica_resources: dict = param(
        {},
        "{'chief': spec, 'worker': spec} with cpu/memory requests and limits, gpu_count, "
        "gpu_resource, node_selector and tolerations of the training replicas.",
    )
    image: str = param(
        "", "Image of the training replicas; the kfp-edge TensorFlow image when empty."
    )
    namespace: str = param("", "Namespace of the TFJob; the launcher pod's namespace when empty.")
    pvc_name: str = param("kfp-edge-workspace", "Workspace PVC mounted in every training replica.")
    mount_path: str = param(
        "", "Workspace mount path in the replicas; the workspace parameter when empty."
    )
    timeout_seconds: int = param(
        3600, "Timeout of the job (activeDeadlineSeconds and the launcher's own)."
    )
    attempt_limit: int = param(
        3, "Restarts allowed before the job fails (backoffLimit and the launcher's)."
    )
    keep_job: bool = param(False, "Keep the finished TFJob on the cluster instead of deleting it.")
    keep_failed_job: bool = param(
        False, "Keep a failed TFJob (its pods and logs) on the cluster for debugging."
    )
    pending_timeout_seconds: int = param(
        600, "Fail when a replica pod stays Pending (unschedulable) longer than this; 0: never."
    )
    gang_scheduling: bool = param(
        False,
        "Set spec.runPolicy.schedulingPolicy so that all replicas start together or none "
        "(needs the operator's gang scheduler, e.g. Volcano or scheduler-plugins).",
    )
    width: int = param(0, "Hidden width of the model; 0 for the model's default.")
    depth: int = param(0, "Hidden layers of the model; 0 for the model's default.")
    seed: int = param(42, "Random seed of training.")
    search_space: dict = param(
        {},
        "Hyperparameter search space ({name: {type: double|int|categorical, min, max, scale, "
        "step, values}}); empty: train once with the values above.",
    )
    search_algorithm: str = param("random", "Search algorithm: random or grid (Katib's names).")
    search_max_trials: int = param(4, "Trials of the search at most.")
    search_parallel_trials: int = param(2, "Trials running at the same time.")
    search_size_penalty: float = param(
        0.0, "Objective: validation accuracy minus this per million parameters."
    )
    search_early_stopping: bool = param(True, "Stop poor trials by Katib's median stopping rule.")
