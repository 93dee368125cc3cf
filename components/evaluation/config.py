"""The evaluation stage's parameters, one source for component, pipelines and CLI."""

from dataclasses import dataclass

from kfp_edge.stage_config import param


@dataclass(frozen=True)
class EvaluationConfig:
    """The LiteRT evaluation's parameters (see kfp_edge.stage_config)."""

    split: str = param("test", "Dataset split to evaluate on.")
    runs: int = param(1000, "Timed single-sample invocations per model after the warm-up.")
    warmup: int = param(100, "Untimed invocations before timing.")
    num_threads: int = param(1, "Interpreter (and TensorFlow) threads, pinned.")
    batch_size: int = param(256, "Batch size of accuracy and throughput runs.")
    measure_memory: bool = param(
        True, "Measure each interpreter's peak memory in a short subprocess."
    )
