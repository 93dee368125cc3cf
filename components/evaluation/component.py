"""kfp component: LiteRT evaluation of every compressed variant against the float reference."""

from typing import NamedTuple

from kfp import dsl

from kfp_edge.images import TENSORFLOW_IMAGE


@dsl.component(base_image=TENSORFLOW_IMAGE, install_kfp_package=False)
def EvaluationOp(
    workspace: str,
    run_id: str,
    variants_dir: str,
    data_dir: str,
    saved_model_dir: str,
    metrics: dsl.Output[dsl.Metrics],
    report: dsl.Output[dsl.HTML],
    split: str = "test",
    runs: int = 1000,
    warmup: int = 100,
    num_threads: int = 1,
    batch_size: int = 256,
    measure_memory: bool = True,
) -> NamedTuple("Outputs", [("evaluation_path", str)]):
    """Measures every .tflite variant with LiteRT and the SavedModel as the reference.

    Args:
        workspace: Root of the workspace volume (the PVC mount path in the cluster).
        run_id: The run id; the result goes to <workspace>/runs/<run_id>/evaluation.json.
        variants_dir: The compression step's output (variants.json and .tflite files).
        data_dir: The ETL output; the held-out split is evaluated.
        saved_model_dir: The float SavedModel, measured the same way as the reference.
        metrics: Per variant: accuracy, size, gzip size, latency p50/p95/p99, throughput,
            peak memory (names <variant>_<figure>); the reference as saved_model_<figure>.
        report: HTML page: accuracy against size and latency for every variant, and the table.
        split: Dataset split to evaluate on.
        runs: Timed single-sample invocations per model after the warm-up.
        warmup: Untimed invocations before timing.
        num_threads: Interpreter (and TensorFlow) threads, pinned.
        batch_size: Batch size of accuracy and throughput runs.
        measure_memory: Measure each interpreter's peak memory in a short subprocess.

    Returns:
        evaluation_path: The evaluation.json with the reference and every variant's figures.
    """
    from collections import namedtuple

    from kfp_edge.evaluation.evaluate import evaluate_variants
    from kfp_edge.report_html import render_html
    from kfp_edge.workspace import EVALUATION_FILE, run_dir, update_report, write_json_atomic

    evaluation = evaluate_variants(
        variants_dir,
        data_dir,
        saved_model_dir,
        split=split,
        runs=runs,
        warmup=warmup,
        num_threads=num_threads,
        batch_size=batch_size,
        measure_memory=measure_memory,
    )
    directory = run_dir(workspace, run_id)
    path = directory / EVALUATION_FILE
    write_json_atomic(path, evaluation)
    update_report(directory, "evaluation", evaluation)
    entries = [evaluation["reference"]] if evaluation["reference"] else []
    for entry in entries + evaluation["variants"]:
        prefix = entry["name"]
        metrics.log_metric(f"{prefix}_accuracy", float(entry["accuracy"]))
        metrics.log_metric(f"{prefix}_size_bytes", float(entry["size_bytes"]))
        metrics.log_metric(f"{prefix}_gzip_bytes", float(entry["gzip_bytes"]))
        for q in ("p50", "p95", "p99"):
            metrics.log_metric(f"{prefix}_latency_{q}_us", float(entry["latency_us"][q]))
        metrics.log_metric(f"{prefix}_rows_per_s", float(entry["throughput_rows_per_s"]))
        if entry.get("peak_memory_bytes") is not None:
            metrics.log_metric(f"{prefix}_peak_memory_bytes", float(entry["peak_memory_bytes"]))
    with open(report.path, "w", encoding="utf-8") as f:
        f.write(render_html(evaluation))
    outputs = namedtuple("Outputs", ["evaluation_path"])
    return outputs(str(path))
