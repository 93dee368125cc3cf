"""kfp component: the run context step.

The recorded parameters are separate inputs, not one dict: a dict built from pipeline inputs
compiles to a constant with placeholders inside, which KFP backends before 2.14 substitute in
random order (the launcher may leave them unresolved), and kfp-edge supports 2.5.
"""

from typing import NamedTuple

from kfp import dsl

from kfp_edge.images import SPARK_IMAGE


@dsl.component(base_image=SPARK_IMAGE, install_kfp_package=False)
def RunContextOp(
    workspace: str,
    run_id: str,
    job_id: str,
    dataset: str,
    input_path: str,
    label_column: str,
    seed: int,
    model: str,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    workers: int,
    training_engine: str,
    model_name: str,
    min_accuracy: float,
    max_accuracy_drop: float,
    max_size_bytes: int,
    max_latency_p50_us: float,
    max_latency_p95_us: float,
) -> NamedTuple("Outputs", [("run_id", str), ("run_dir", str)]):
    """Fixes the run id and records the run's parameters in its report.

    Args:
        workspace: Root of the workspace volume (the PVC mount path in the cluster).
        run_id: Run id asked for by the user; empty to use the KFP pipeline job id.
        job_id: The KFP pipeline job id (pass ``dsl.PIPELINE_JOB_ID_PLACEHOLDER``).
        dataset: Recorded: bundled dataset.
        input_path: Recorded: the user's input data.
        label_column: Recorded: label column of input_path.
        seed: Recorded: seed of the split and of training.
        model: Recorded: model from the training registry.
        epochs: Recorded: training epochs.
        batch_size: Recorded: per-replica batch size.
        learning_rate: Recorded: Adam learning rate.
        workers: Recorded: training replicas.
        training_engine: Recorded: training engine.
        model_name: Recorded: name in the model store.
        min_accuracy: Recorded: gate's minimum accuracy.
        max_accuracy_drop: Recorded: gate's maximum accuracy drop.
        max_size_bytes: Recorded: gate's maximum size.
        max_latency_p50_us: Recorded: gate's maximum p50 latency.
        max_latency_p95_us: Recorded: gate's maximum p95 latency.

    Returns:
        run_id: The run id all later steps use.
        run_dir: The run's directory on the workspace (holds report.json).
    """
    from collections import namedtuple

    from kfp_edge.run_context.context import init_run
    from kfp_edge.workspace import run_dir as _run_dir

    parameters = {
        "dataset": dataset,
        "input_path": input_path,
        "label_column": label_column,
        "seed": seed,
        "model": model,
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "workers": workers,
        "training_engine": training_engine,
        "model_name": model_name,
        "min_accuracy": min_accuracy,
        "max_accuracy_drop": max_accuracy_drop,
        "max_size_bytes": max_size_bytes,
        "max_latency_p50_us": max_latency_p50_us,
        "max_latency_p95_us": max_latency_p95_us,
    }
    resolved = init_run(workspace, run_id, job_id, parameters)
    outputs = namedtuple("Outputs", ["run_id", "run_dir"])
    return outputs(resolved, str(_run_dir(workspace, resolved)))
