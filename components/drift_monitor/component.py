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
    report: dsl.Output[dsl.HTML],
    version: str = "latest",
    delta: float = 0.002,
    window: int = 200,
    bias_rate: float = 0.0,
    label_column: str = "",
    id_column: str = "",
    reference_path: str = "",
    model_in_loop: bool = True,
) -> bool:
    """Checks new observations for drift against a published model version.

    Feeds per-feature window means and standard deviations, the LiteRT model's predicted class
    shares and confidence and, for labelled rows (late ones joined by id), its error indicator
    into ADWIN detectors, and adds labelled rows to the model's biased reservoir on the
    workspace. An alarm stays open until a model published after it resolves it. The decision
    goes into the run report (section ``drift``) and, per feature, into the Metrics artifact;
    the whole decision is also written to ``drift_decision.json`` in the run directory, and the
    drift report (distribution tests, per-feature plots) to the HTML artifact.

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
        report: The drift report: open alarms, distribution tests and per-feature plots.
        version: Watched model version, or latest.
        delta: Family-wise ADWIN confidence, split evenly over all detectors (Bonferroni).
        window: Observations per window of the windowed detectors.
        bias_rate: Bias rate of the reservoir (it holds at most 1/bias_rate rows); 0 keeps
            the saved reservoir's rate, or takes 0.001 for a new reservoir.
        label_column: Label column of the observations; empty for the model's.
        id_column: Row id column for late labels; empty for the model's, if any.
        reference_path: Optional data like the training data, to prime fresh detectors.
        model_in_loop: Run the model on every row: predicted classes, confidence and errors.

    Returns:
        Whether an alarm is open (drift found now or earlier and not yet resolved).
    """
    from kfp_edge.drift_monitor.monitor import decision_metrics, run_drift_check
    from kfp_edge.drift_monitor.report import render_html

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
        id_column=id_column or None,
        reference=reference_path or None,
        model_in_loop=model_in_loop,
    )
    for key, value in decision_metrics(decision).items():
        metrics.log_metric(key, value)
    with open(report.path, "w") as f:
        f.write(render_html(decision))
    return bool(decision["drifted"])


@dsl.component(base_image=TENSORFLOW_IMAGE, install_kfp_package=False)
def RetrainDataOp(
    workspace: str,
    run_id: str,
    job_id: str,
    model_name: str,
    version: str = "latest",
    include_original: bool = False,
    original_share: float = 0.5,
    test_fraction: float = 0.2,
    min_rows: int = 30,
) -> NamedTuple(
    "Outputs",
    [("input_path", str), ("test_path", str), ("label_column", str), ("train_run_id", str)],
):
    """Writes the input of a retraining run: training rows and a recent held-out test table.

    The reservoir's labelled rows without duplicates, the newest held out as the test table
    (for the gate's champion comparison), plus the original data when asked (ageing out).

    Args:
        workspace: Root of the workspace volume.
        run_id: Run id of the drift check (the table goes into its run directory); empty to
            use the KFP pipeline job id, as the drift check does.
        job_id: The KFP pipeline job id (pass ``dsl.PIPELINE_JOB_ID_PLACEHOLDER``).
        model_name: Name of the model whose reservoir is used.
        version: The watched model version (for the original data).
        include_original: Add the original training data of that version (capped by
            original_share).
        original_share: At most this share of the training rows comes from the original data.
        test_fraction: Share of the newest labelled rows held out as the recent test split.
        min_rows: Fail when fewer labelled rows than this are available.

    Returns:
        input_path: The Parquet table to train on (raw features and the label column).
        test_path: The recent held-out Parquet table (never among the training rows).
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
        original_share=original_share,
        test_fraction=test_fraction,
    )
    update_report(run_dir(workspace, run_id), "retrain_input", result)
    outputs = namedtuple("Outputs", ["input_path", "test_path", "label_column", "train_run_id"])
    return outputs(
        result["input_path"], result["test_path"], result["label_column"], f"{run_id}-retrain"
    )
