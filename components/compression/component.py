"""kfp component: compressed TFLite variants of the trained SavedModel."""

from typing import NamedTuple

from kfp import dsl

from kfp_edge.images import TENSORFLOW_IMAGE


@dsl.component(base_image=TENSORFLOW_IMAGE, install_kfp_package=False)
def CompressionOp(
    workspace: str,
    run_id: str,
    saved_model_dir: str,
    data_dir: str,
    variants: list = ["float32", "float16", "dynamic_int8", "full_int8"],  # noqa: B006
    sparsity: float = 0.8,
    clusters: int = 16,
    fine_tune_epochs: int = 5,
    learning_rate: float = 0.001,
    student_width: int = 0,
    student_depth: int = 1,
    temperature: float = 4.0,
    alpha: float = 0.1,
    distill_epochs: int = 30,
    int8_io: bool = False,
    int8_scales: str = "auto",
    representative_samples: int = 256,
    seed: int = 0,
) -> NamedTuple("Outputs", [("variants_dir", str)]):
    """Builds the chosen compressed variants and converts each to a .tflite file.

    Args:
        workspace: Root of the workspace volume (the PVC mount path in the cluster).
        run_id: The run id; variants go to <workspace>/runs/<run_id>/variants/.
        saved_model_dir: The trainer's tf_keras SavedModel (raw features in, softmax out).
        data_dir: The ETL output: the training split fine-tunes, its TFRecord shards calibrate
            full-integer quantization.
        variants: Variant names: float32, float16, dynamic_int8, full_int8, pruned,
            pruned_int8, clustered, clustered_int8, qat_int8, distilled, distilled_int8,
            pcqat_int8 (prune -> cluster -> QAT).
        sparsity: Target sparsity of pruning (polynomial decay from 0).
        clusters: Number of weight clusters per layer.
        fine_tune_epochs: Fine-tuning epochs of pruning, clustering and QAT.
        learning_rate: Adam learning rate of fine-tuning.
        student_width: Hidden units of the distilled student; 0 for half the teacher's.
        student_depth: Hidden layers of the distilled student.
        temperature: Distillation temperature.
        alpha: Weight of the hard-label loss in distillation (1 - alpha on the soft targets).
        distill_epochs: Training epochs of the student.
        int8_io: Give full-integer variants int8 inputs and outputs (and quantize the input
            standardization too: only for features of similar scale).
        int8_scales: Weight scales of full-integer variants: auto (per channel for convolution
            models, per tensor for dense ones), per_channel or per_tensor.
        representative_samples: Rows drawn at random (seeded) from all training shards to
            calibrate full_int8.
        seed: Seed of fine-tuning, distillation and the calibration sample.

    Returns:
        variants_dir: Directory with <name>.tflite per variant and variants.json.
    """
    from collections import namedtuple

    from kfp_edge.compression.export import export_variants
    from kfp_edge.workspace import VARIANTS_DIR, run_dir, update_report

    out_dir = run_dir(workspace, run_id) / VARIANTS_DIR
    entries = export_variants(
        saved_model_dir,
        data_dir,
        out_dir,
        list(variants),
        sparsity=sparsity,
        clusters=clusters,
        fine_tune_epochs=fine_tune_epochs,
        learning_rate=learning_rate,
        student_width=student_width,
        student_depth=student_depth,
        temperature=temperature,
        alpha=alpha,
        distill_epochs=distill_epochs,
        int8_io=int8_io,
        int8_scales=int8_scales,
        representative_samples=representative_samples,
        seed=seed,
    )
    update_report(
        run_dir(workspace, run_id),
        "compression",
        {"variants_dir": str(out_dir), "variants": entries},
    )
    outputs = namedtuple("Outputs", ["variants_dir"])
    return outputs(str(out_dir))
