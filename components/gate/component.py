"""kfp component: the edge gate: service levels, the champion, and one stable choice."""

from typing import NamedTuple

from kfp import dsl

from kfp_edge.images import TENSORFLOW_IMAGE


@dsl.component(base_image=TENSORFLOW_IMAGE, install_kfp_package=False)
def GateOp(
    workspace: str,
    run_id: str,
    evaluation_path: str,
    data_dir: str,
    confusion: dsl.Output[dsl.ClassificationMetrics],
    report: dsl.Output[dsl.HTML],
    comparison: dsl.Output[dsl.Metrics],
    model_name: str = "",
    min_accuracy: float = 0.9,
    accuracy_bound: str = "point",
    max_accuracy_drop: float = 0.05,
    max_class_recall_drop: float = 0.15,
    max_regression: float = 0.02,
    max_size_bytes: int = 10_000_000,
    max_latency_p50_us: float = 10_000.0,
    max_latency_p95_us: float = 50_000.0,
    max_peak_memory_bytes: int = 256_000_000,
    latency_tie_fraction: float = 0.05,
) -> NamedTuple("Outputs", [("chosen_variant", str), ("chosen_path", str)]):
    """Checks every variant against the service levels and the champion, and picks one.

    Passing variants are ranked by shipped size, then accuracy, then p50 latency, with
    latencies within measurement noise counted as ties (the tie goes to the name). When
    model_name is given, its latest published version (the champion) is scored on the same
    rows of data_dir and a variant worse beyond max_regression overall, or beyond
    max_class_recall_drop in a class, is refused. The decision (why each variant passed or
    lost) goes into the run report before the step fails when no variant passes; the error
    then lists the nearest misses.

    Args:
        workspace: Root of the workspace volume (the PVC mount path in the cluster).
        run_id: The run id; the decision goes to the gate section of its report.json.
        evaluation_path: The evaluation step's evaluation.json.
        data_dir: The dataset the evaluation scored (its split); the champion is scored on the
            same rows.
        confusion: Confusion matrix of the chosen variant on the held-out split.
        report: The run report page (also <run>/report.html): the gate's decision and the
            champion comparison, variants, charts, confusion matrices, ETL counts and
            training curves.
        comparison: Champion and chosen challenger side by side: accuracy, its 95 % bounds
            and per-class recall (names champion_<figure> and chosen_<figure>).
        model_name: The model's name in the store; its latest version is the champion. Empty:
            no champion comparison.
        min_accuracy: Minimum accuracy on the held-out split.
        accuracy_bound: What min_accuracy applies to: point (the measured accuracy) or lower
            (the lower bound of its Wilson 95 % interval).
        max_accuracy_drop: Maximum accuracy lost against the float SavedModel.
        max_class_recall_drop: Maximum recall any class may lose against the float SavedModel
            and the champion.
        max_regression: Maximum accuracy lost against the champion (the published version) on
            the same rows.
        max_size_bytes: Maximum shipped (gzip) .tflite size in bytes.
        max_latency_p50_us: Maximum single-sample p50 latency in microseconds.
        max_latency_p95_us: Maximum single-sample p95 latency in microseconds.
        max_peak_memory_bytes: Maximum peak memory of one batch-1 interpreter in bytes.
        latency_tie_fraction: p50 latencies closer than this fraction (or than their noise)
            are a tie.

    Returns:
        chosen_variant: Name of the chosen variant.
        chosen_path: Its .tflite file.
    """
    import json
    import shutil
    from collections import namedtuple

    from kfp_edge.gate.gate import comparison_metrics, run_gate
    from kfp_edge.report_html import write_run_report
    from kfp_edge.workspace import run_dir

    decision = run_gate(
        workspace,
        run_id,
        evaluation_path,
        {
            "min_accuracy": min_accuracy,
            "accuracy_bound": accuracy_bound,
            "max_accuracy_drop": max_accuracy_drop,
            "max_class_recall_drop": max_class_recall_drop,
            "max_regression": max_regression,
            "max_size_bytes": max_size_bytes,
            "max_latency_p50_us": max_latency_p50_us,
            "max_latency_p95_us": max_latency_p95_us,
            "max_peak_memory_bytes": max_peak_memory_bytes,
            "latency_tie_fraction": latency_tie_fraction,
        },
        model_name=model_name,
        data_dir=data_dir,
    )
    with open(evaluation_path, encoding="utf-8") as f:
        evaluation = json.load(f)
    chosen = next(v for v in evaluation["variants"] if v["name"] == decision["chosen"])
    confusion.log_confusion_matrix(list(evaluation["classes"]), chosen["confusion_matrix"])
    for key, value in comparison_metrics(chosen, decision["champion"]).items():
        comparison.log_metric(key, value)
    shutil.copyfile(write_run_report(run_dir(workspace, run_id)), report.path)
    outputs = namedtuple("Outputs", ["chosen_variant", "chosen_path"])
    return outputs(decision["chosen"], decision["chosen_path"])
