"""The gate stage's parameters, one source for component, pipelines and CLI."""

from dataclasses import dataclass

from kfp_edge.stage_config import param


@dataclass(frozen=True)
class GateConfig:
    """The gate's service levels (see kfp_edge.stage_config)."""

    min_accuracy: float = param(0.9, "Minimum accuracy on the held-out split.")
    max_accuracy_drop: float = param(0.05, "Maximum accuracy lost against the float SavedModel.")
    max_size_bytes: int = param(10000000, "Maximum .tflite size in bytes.")
    max_latency_p50_us: float = param(10000.0, "Maximum single-sample p50 latency in microseconds.")
    max_latency_p95_us: float = param(50000.0, "Maximum single-sample p95 latency in microseconds.")
