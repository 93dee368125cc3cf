"""The gate stage's parameters, one source for component, pipelines and CLI."""

from dataclasses import dataclass

from kfp_edge.stage_config import param


@dataclass(frozen=True)
class GateConfig:
    """The gate's service levels (see kfp_edge.stage_config)."""

    min_accuracy: float = param(0.9, "Minimum accuracy on the held-out split.")
    accuracy_bound: str = param(
        "point",
        "What min_accuracy applies to: point (the measured accuracy) or lower (the lower bound "
        "of its Wilson 95 % interval).",
    )
    max_accuracy_drop: float = param(0.05, "Maximum accuracy lost against the float SavedModel.")
    max_class_recall_drop: float = param(
        0.15, "Maximum recall any class may lose against the float SavedModel and the champion."
    )
    max_regression: float = param(
        0.02, "Maximum accuracy lost against the champion (the published version) on the same rows."
    )
    max_size_bytes: int = param(10000000, "Maximum shipped (gzip) .tflite size in bytes.")
    max_latency_p50_us: float = param(10000.0, "Maximum single-sample p50 latency in microseconds.")
    max_latency_p95_us: float = param(50000.0, "Maximum single-sample p95 latency in microseconds.")
    max_peak_memory_bytes: int = param(
        256000000, "Maximum peak memory of one batch-1 interpreter in bytes."
    )
    latency_tie_fraction: float = param(
        0.05, "p50 latencies closer than this fraction (or than their noise) are a tie."
    )
