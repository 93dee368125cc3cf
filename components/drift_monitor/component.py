"""kfp components of the drift monitor: the drift check and the retraining input."""

from typing import NamedTuple

from kfp import dsl

from kfp_edge.images import TENSORFLOW_IMAGE


@dsl.component(base_image=TENSORFLOW_IMAGE, install_kfp_package=False)
def DriftMonitorOp(
    workspace: str,
    run_id: str,
    job_id: str,
    model_name: str,
    input_path: str,
    metrics: dsl.Output[dsl.Metrics],
    version: str = "latest",
    delta: float = 0.002,
    window: int = 10,
    bias_rate: float = 0.0,
    label_column: str = "",
    reference_path: str = "",
    model_in_loop: bool = True,
) -> bool:
    """Checks new observations for drift against a published model version.

    Feeds per-feature window means and, for labelled rows, the LiteRT model's error indicator
    into ADWIN detectors, and adds labelled rows to the model's biased reservoir on the
    workspace. The decision goes into the run report (section ``drift``) and, per feature, into
    the Metrics artifact; the whole decision is also written to ``drift_decision.json`` in the
    run directory.

    The single return value (kfp output ``Output``) is the decision, so that a pipeline can
    branch on it with ``dsl.If(task.output == True)``; kfp.local 2.17 cannot resolve a
    NamedTuple field in a condition.

    Args:
        workspace: Root of the workspace volume (the PVC mount path in the cluster).
        run_id: Run id of this check; empty to use the KFP pipeline job id.
        job_id: The KFP pipeline job id (pass ``dsl.PIPELINE_JOB_ID_PLACEHOLDER``).
        model_name: Name of the watched model in the model store.
        input_path: New observations: a CSV or Parquet file or a directory of them.
        metrics: Per-feature drift figures (detected 0/1, position, statistic) and the error.
        version: Watched model version, or latest.
        delta: ADWIN's confidence parameter (smaller: fewer false alarms, later detection).
        window: Observations per window mean of the feature detectors.
        bias_rate: Bias rate of the reservoir (it holds at most 1/bias_rate rows); 0 keeps
            the saved reservoir's rate, or takes 0.001 for a new reservoir.
        label_column: Label column of the observations; empty for the model's.
        reference_path: Optional data like the training data, to prime fresh detectors.
        model_in_loop: Run the model on labelled rows for the error indicator.

    Returns:
        Whether any feature drifted or the model's error rate rose.
    """
    from kfp_edge.drift_monitor.monitor import decision_metrics, run_drift_check

    decision = run_drift_check(
        workspace,
        run_id or job_id,
        model_name,
        input_path,
        version=version,
        delta=delta,
        window=window,
        bias_rate=bias_rate,
        label_column=label_column or None,
        reference=reference_path or None,
        model_in_loop=model_in_loop,
    )
    for key, value in decision_metrics(decision).items():
        metrics.log_metric(key, value)
    return bool(decision["drifted"])


@dsl.component(base_image=TENSORFLOW_IMAGE, install_kfp_package=False)
def RetrainDataOp(
    workspace: str,
    run_id: str,
    job_id: str,
    model_name: str,
    version: str = "latest",
    include_original: bool = False,
    min_rows: int = 30,
) -> NamedTuple("Outputs", [("input_path", str), ("label_column", str), ("train_run_id", str)]):
    """Writes the input of a retraining run: the reservoir's rows, plus the original data.

    Args:
        workspace: Root of the workspace volume.
        run_id: Run id of the drift check (the table goes into its run directory); empty to
            use the KFP pipeline job id, as the drift check does.
        job_id: The KFP pipeline job id (pass ``dsl.PIPELINE_JOB_ID_PLACEHOLDER``).
        model_name: Name of the model whose reservoir is used.
        version: The watched model version (for the original data).
        include_original: Append the original train, validation and test data of that version.
        min_rows: Fail when fewer labelled rows than this are available.

    Returns:
        input_path: The Parquet table to train on (raw features and the label column).
        label_column: Its label column.
        train_run_id: Run id for the retraining edge pipeline (``<run_id>-retrain``).
    """
    from collections import namedtuple

    from kfp_edge.drift_monitor.retrain import prepare_retraining_data
    from kfp_edge.workspace import run_dir, update_report

    run_id = run_id or job_id
    result = prepare_retraining_data(
        workspace,
        model_name,
        run_id,
        include_original=include_original,
        version=version,
        min_rows=min_rows,
    )
    update_report(run_dir(workspace, run_id), "retrain_input", result)
    outputs = namedtuple("Outputs", ["input_path", "label_column", "train_run_id"])
    return outputs(result["input_path"], result["label_column"], f"{run_id}-retrain")
