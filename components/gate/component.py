"""kfp component: the edge gate that picks the smallest, then fastest, variant meeting the SLOs."""

from typing import NamedTuple

from kfp import dsl

from kfp_edge.images import TENSORFLOW_IMAGE


@dsl.component(base_image=TENSORFLOW_IMAGE, install_kfp_package=False)
def GateOp(
    workspace: str,
    run_id: str,
    evaluation_path: str,
    confusion: dsl.Output[dsl.ClassificationMetrics],
    report: dsl.Output[dsl.HTML],
    min_accuracy: float = 0.9,
    max_accuracy_drop: float = 0.05,
    max_size_bytes: int = 10_000_000,
    max_latency_p50_us: float = 10_000.0,
    max_latency_p95_us: float = 50_000.0,
) -> NamedTuple("Outputs", [("chosen_variant", str), ("chosen_path", str)]):
    """Checks every variant against the service levels and picks the smallest passing one.

    The decision (why each variant passed or lost) goes into the run report before the step
    fails when no variant passes; the error then lists the nearest misses.

    Args:
        workspace: Root of the workspace volume (the PVC mount path in the cluster).
        run_id: The run id; the decision goes to the gate section of its report.json.
        evaluation_path: The evaluation step's evaluation.json.
        confusion: Confusion matrix of the chosen variant on the held-out split.
        report: The run report page (also <run>/report.html): the gate's decision, variants,
            charts, confusion matrices, ETL counts and training curves.
        min_accuracy: Minimum accuracy on the held-out split.
        max_accuracy_drop: Maximum accuracy lost against the float SavedModel.
        max_size_bytes: Maximum .tflite size in bytes.
        max_latency_p50_us: Maximum single-sample p50 latency in microseconds.
        max_latency_p95_us: Maximum single-sample p95 latency in microseconds.

    Returns:
        chosen_variant: Name of the chosen variant.
        chosen_path: Its .tflite file.
    """
    import json
    import shutil
    from collections import namedtuple

    from kfp_edge.gate.gate import run_gate
    from kfp_edge.report_html import write_run_report
    from kfp_edge.workspace import run_dir

    decision = run_gate(
        workspace,
        run_id,
        evaluation_path,
        {
            "min_accuracy": min_accuracy,
            "max_accuracy_drop": max_accuracy_drop,
            "max_size_bytes": max_size_bytes,
            "max_latency_p50_us": max_latency_p50_us,
            "max_latency_p95_us": max_latency_p95_us,
        },
    )
    with open(evaluation_path, encoding="utf-8") as f:
        evaluation = json.load(f)
    chosen = next(v for v in evaluation["variants"] if v["name"] == decision["chosen"])
    confusion.log_confusion_matrix(list(evaluation["classes"]), chosen["confusion_matrix"])
    shutil.copyfile(write_run_report(run_dir(workspace, run_id)), report.path)
    outputs = namedtuple("Outputs", ["chosen_variant", "chosen_path"])
    return outputs(decision["chosen"], decision["chosen_path"])
