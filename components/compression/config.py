"""The compression stage's parameters, one source for component, pipelines and CLI."""

from dataclasses import dataclass

from kfp_edge.stage_config import param


@dataclass(frozen=True)
class CompressionConfig:
    """The compression step's parameters (see kfp_edge.stage_config)."""

    variants: list = param(
        ["float32", "float16", "dynamic_int8", "full_int8"],
        "Variant names: float32, float16, dynamic_int8, full_int8, pruned, pruned_int8, "
        "clustered, clustered_int8, qat_int8, distilled, distilled_int8, pcqat_int8 (prune -> "
        "cluster -> QAT).",
    )
    sparsity: float = param(0.8, "Target sparsity of pruning (polynomial decay from 0).")
    clusters: int = param(16, "Number of weight clusters per layer.")
    fine_tune_epochs: int = param(5, "Fine-tuning epochs of pruning, clustering and QAT.")
    learning_rate: float = param(0.001, "Adam learning rate of fine-tuning.")
    student_width: int = param(
        0, "Hidden units of the distilled student; 0 for half the teacher's."
    )
    student_depth: int = param(1, "Hidden layers of the distilled student.")
    temperature: float = param(4.0, "Distillation temperature.")
    alpha: float = param(
        0.1, "Weight of the hard-label loss in distillation (1 - alpha on the soft targets)."
    )
    distill_epochs: int = param(30, "Training epochs of the student.")
    int8_io: bool = param(
        False,
        "Give full-integer variants int8 inputs and outputs (and quantize the input "
        "standardization too: only for features of similar scale).",
    )
    int8_scales: str = param(
        "auto",
        "Weight scales of full-integer variants: auto (per channel for convolution models, per "
        "tensor for dense ones), per_channel or per_tensor.",
    )
    representative_samples: int = param(
        256, "Rows drawn at random (seeded) from all training shards to calibrate full_int8."
    )
    seed: int = param(0, "Seed of fine-tuning, distillation and the calibration sample.")
