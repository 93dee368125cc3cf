"""Compressed TFLite variants of a trained SavedModel.

A variant is a Keras-side technique (none, pruning, clustering, QAT, distillation or the
collaborative prune -> cluster -> QAT) followed by a TFLite conversion (float32, float16,
dynamic-range int8 or full-integer int8 with a representative dataset from the training
shards). :data:`VARIANTS` lists them; :func:`export_variants` writes the chosen ones.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from kfp_edge.dataset import FEATURES_KEY, LABEL_KEY, load_split, read_manifest, shard_paths
from kfp_edge.litert import gzip_bytes
from kfp_edge.progress import report_progress
from kfp_edge.tf_env import load_keras_model
from kfp_edge.variants import ENTRY_SUFFIX, VARIANTS_FILE
from kfp_edge.workspace import write_json_atomic

# name -> (keras technique, tflite quantization). Techniques: none, prune, cluster, qat,
# distill, pcqat. Quantizations: float32, float16, dynamic_int8, full_int8.
VARIANTS: dict[str, tuple[str, str]] = {
    "float32": ("none", "float32"),
    "float16": ("none", "float16"),
    "dynamic_int8": ("none", "dynamic_int8"),
    "full_int8": ("none", "full_int8"),
    "pruned": ("prune", "float32"),
    "pruned_int8": ("prune", "full_int8"),
    "clustered": ("cluster", "float32"),
    "clustered_int8": ("cluster", "full_int8"),
    "qat_int8": ("qat", "full_int8"),
    "distilled": ("distill", "float32"),
    "distilled_int8": ("distill", "full_int8"),
    "pcqat_int8": ("pcqat", "full_int8"),
}

DEFAULT_OPTIONS = {
    "sparsity": 0.8,
    "clusters": 16,
    "fine_tune_epochs": 5,
    "learning_rate": 1e-3,
    "batch_size": 32,
    "student_width": 0,
    "student_depth": 1,
    "temperature": 4.0,
    "alpha": 0.1,
    "distill_epochs": 30,
    "distill_learning_rate": 1e-2,
    "int8_io": False,
    "per_channel": False,
    "representative_samples": 256,
    "seed": 0,
}


def check_options(variants: list[str], options: dict) -> dict:
    """Validates variant names and options; returns the options with defaults filled in.

    Raises:
        ValueError: Unknown or missing variants, unknown options or values out of range; the
            message names the variant or option.
    """
    if not variants:
        raise ValueError(f"variants: the list is empty; choose some of {sorted(VARIANTS)}")
    for name in variants:
        if name not in VARIANTS:
            raise ValueError(f"variants: unknown variant {name!r}; known: {sorted(VARIANTS)}")
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise ValueError(
            f"unknown compression option {unknown[0]!r}; known: {sorted(DEFAULT_OPTIONS)}"
        )
    opts = {**DEFAULT_OPTIONS, **options}
    if not 0.0 < float(opts["sparsity"]) < 1.0:
        raise ValueError(f"sparsity: {opts['sparsity']} must be between 0 and 1 (exclusive)")
    if int(opts["clusters"]) < 2:
        raise ValueError(f"clusters: {opts['clusters']} must be at least 2")
    if not 0.0 <= float(opts["alpha"]) <= 1.0:
        raise ValueError(f"alpha: {opts['alpha']} must be between 0 and 1")
    if float(opts["temperature"]) <= 0:
        raise ValueError(f"temperature: {opts['temperature']} must be positive")
    for key in ("fine_tune_epochs", "distill_epochs", "student_width", "student_depth"):
        if int(opts[key]) < 0:
            raise ValueError(f"{key}: {opts[key]} must be >= 0")
    for key in ("batch_size", "representative_samples"):
        if int(opts[key]) < 1:
            raise ValueError(f"{key}: {opts[key]} must be >= 1")
    return opts


def representative_features(data_dir: str | os.PathLike, samples: int) -> np.ndarray:
    """Reads up to ``samples`` raw feature rows from the training TFRecord shards.

    Rows are taken round-robin over the shards so every shard contributes.

    Raises:
        ValueError: If the shards hold no rows or rows of the wrong length (naming the shard).
    """
    from kfp_edge.tf_env import import_tf

    tf, _ = import_tf()
    manifest = read_manifest(data_dir)
    num_features = int(manifest["num_features"])
    spec = {
        FEATURES_KEY: tf.io.FixedLenFeature([num_features], tf.float32),
        LABEL_KEY: tf.io.FixedLenFeature([1], tf.int64),
    }
    paths = shard_paths(data_dir, "train")
    rows = []
    per_shard = max(1, -(-samples // max(1, len(paths))))
    for path in paths:
        if not Path(path).exists():
            raise FileNotFoundError(f"{path}: training shard listed in the manifest is missing")
        try:
            for record in tf.data.TFRecordDataset(path).take(per_shard):
                rows.append(tf.io.parse_single_example(record, spec)[FEATURES_KEY].numpy())
        except tf.errors.OpError as exc:
            raise ValueError(f"{path}: unreadable training shard: {exc.message}") from exc
    if not rows:
        raise ValueError(
            f"{data_dir}: the training shards hold no rows for the representative dataset"
        )
    return np.stack(rows[:samples]).astype(np.float32)


def _normalization_layer_name(model) -> str | None:
    for layer in model.layers:
        if type(layer).__name__ == "Normalization":
            return layer.name
    return None


def _op_outputs_under(tflite: bytes, scope: str) -> list[str]:
    """Names of the op output tensors of a .tflite model whose name contains ``scope``."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(tflite, 0)
    names = []
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            for k in range(op.OutputsLength()):
                name = graph.Tensors(op.Outputs(k)).Name().decode()
                if scope in name:
                    names.append(name)
    return names


def convert(
    model,
    quantization: str,
    representative: np.ndarray | None = None,
    int8_io: bool = False,
    per_channel: bool = False,
) -> bytes:
    """Converts a tf_keras model to a TFLite flatbuffer.

    Full-integer int8 keeps the model's input standardization (the folded-in Normalization
    layer, a SUB and a MUL per feature) in float unless ``int8_io`` is asked: one int8 scale
    for the whole raw input tensor would erase features of small range next to features of
    large range (vibration 0.5 next to 1,500 rpm). Everything after it runs in int8. With
    ``int8_io`` the whole graph, the input and the output are int8; fit for features of
    similar scale only. Weights get one scale per tensor unless ``per_channel`` is asked: on
    the sensor MLP per-channel scales add about 12 % to the file for no accuracy gained.

    Args:
        model: The tf_keras model.
        quantization: float32, float16, dynamic_int8 or full_int8.
        representative: Raw feature rows for the calibration of full_int8.
        int8_io: With full_int8, make the model's input and output int8 as well.
        per_channel: With full_int8, one weight scale per output channel.

    Returns:
        The .tflite bytes (builtin ops only).
    """
    from kfp_edge.tf_env import import_tf

    tf, _ = import_tf()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "dynamic_int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization == "full_int8":
        if representative is None:
            raise ValueError("full_int8 needs a representative dataset")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]

        def dataset():
            for row in representative:
                yield [row[None, :].astype(np.float32)]

        converter.representative_dataset = dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter._experimental_disable_per_channel = not per_channel
        normalization = _normalization_layer_name(model)
        if int8_io or normalization is None:
            if int8_io:
                converter.inference_input_type = tf.int8
                converter.inference_output_type = tf.int8
            return converter.convert()
        # Calibrate, then quantize with the standardization ops left in float: the same two
        # steps TensorFlow's own QuantizationDebugger takes for selective quantization.
        from tensorflow.lite.python import convert as lite_convert

        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
            tf.lite.OpsSet.TFLITE_BUILTINS,
        ]
        converter.experimental_mlir_quantizer = True
        converter._experimental_calibrate_only = True
        calibrated = converter.convert()
        return lite_convert.mlir_quantize(
            calibrated,
            disable_per_channel=not per_channel,
            fully_quantize=False,
            denylisted_nodes=_op_outputs_under(calibrated, f"/{normalization}/"),
        )
    elif quantization != "float32":
        raise ValueError(f"unknown quantization {quantization!r}")
    return converter.convert()


def _write_atomic(path: Path, content: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_variants(
    saved_model_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    variants: list[str],
    **options,
) -> list[dict]:
    """Builds, converts and writes the chosen variants, plus ``variants.json``.

    Args:
        saved_model_dir: The trainer's tf_keras SavedModel (raw features in, softmax out).
        data_dir: The ETL output (data contract of :mod:`kfp_edge.dataset`): the training
            split fine-tunes and the training shards calibrate full-integer quantization.
        out_dir: Where ``<name>.tflite`` and ``variants.json`` go.
        variants: Names from :data:`VARIANTS`, in the order wanted.
        **options: Overrides of :data:`DEFAULT_OPTIONS` (sparsity, clusters, fine_tune_epochs,
            learning_rate, batch_size, student_width, student_depth, temperature, alpha,
            distill_epochs, distill_learning_rate, int8_io, per_channel, representative_samples,
            seed).

    Returns:
        One entry per variant: ``{"name", "path", "technique", "params"}``.

    Raises:
        ValueError: Unknown variants or options, or a model that does not fit the dataset.
        FileNotFoundError: A missing SavedModel or shard.
    """
    from kfp_edge.compression import optimize

    variants = list(dict.fromkeys(variants))
    opts = check_options(variants, options)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = load_keras_model(saved_model_dir)
    manifest = read_manifest(data_dir)
    model_features = int(model.inputs[0].shape[-1])
    if model_features != int(manifest["num_features"]):
        raise ValueError(
            f"{saved_model_dir}: the model takes {model_features} features but the dataset "
            f"{data_dir} has num_features={manifest['num_features']}"
        )
    x, y = load_split(data_dir, "train")
    representative = None
    if any(VARIANTS[name][1] == "full_int8" for name in variants):
        representative = representative_features(data_dir, int(opts["representative_samples"]))

    epochs = int(opts["fine_tune_epochs"])
    batch = int(opts["batch_size"])
    lr = float(opts["learning_rate"])
    seed = int(opts["seed"])
    width, depth = optimize.hidden_shape(model)
    student_width = int(opts["student_width"]) or max(2, width // 2)
    student_depth = int(opts["student_depth"])
    cache: dict[str, tuple[object, dict]] = {}

    def build(technique: str):
        if technique in cache:
            return cache[technique]
        if technique == "none":
            result = (model, {})
        elif technique == "prune":
            pruned = optimize.prune(model, x, y, float(opts["sparsity"]), epochs, batch, lr, seed)
            result = (
                pruned,
                {
                    "target_sparsity": float(opts["sparsity"]),
                    "sparsity": optimize.kernel_sparsity(pruned),
                    "fine_tune_epochs": max(1, epochs),
                    "schedule": "polynomial_decay",
                },
            )
        elif technique == "cluster":
            clustered = optimize.cluster(
                model, x, y, int(opts["clusters"]), epochs, batch, lr, seed=seed
            )
            result = (
                clustered,
                {
                    "clusters": int(opts["clusters"]),
                    "unique_weights_per_layer": optimize.unique_kernel_values(clustered),
                    "fine_tune_epochs": epochs,
                },
            )
        elif technique == "qat":
            qat = optimize.quantization_aware(model, x, y, epochs, batch, lr, seed=seed)
            result = (qat, {"fine_tune_epochs": epochs})
        elif technique == "distill":
            student = optimize.distill(
                model,
                x,
                y,
                student_width,
                student_depth,
                float(opts["temperature"]),
                float(opts["alpha"]),
                int(opts["distill_epochs"]),
                batch,
                float(opts["distill_learning_rate"]),
                seed,
            )
            result = (
                student,
                {
                    "student_width": student_width,
                    "student_depth": student_depth,
                    "temperature": float(opts["temperature"]),
                    "alpha": float(opts["alpha"]),
                    "epochs": max(1, int(opts["distill_epochs"])),
                    "teacher_params": int(model.count_params()),
                    "student_params": int(student.count_params()),
                },
            )
        elif technique == "pcqat":
            pruned, prune_params = build("prune")
            clustered = optimize.cluster(
                pruned,
                x,
                y,
                int(opts["clusters"]),
                epochs,
                batch,
                lr,
                preserve_sparsity=True,
                seed=seed,
            )
            cluster_sparsity = optimize.kernel_sparsity(clustered)
            qat = optimize.quantization_aware(
                clustered, x, y, epochs, batch, lr, preserve="cluster_sparsity", seed=seed
            )
            result = (
                qat,
                {
                    **prune_params,
                    "clusters": int(opts["clusters"]),
                    "sparsity_after_clustering": cluster_sparsity,
                    "pipeline": "prune -> cluster(preserve_sparsity) -> PCQAT",
                },
            )
        else:
            raise ValueError(f"unknown technique {technique!r}")
        cache[technique] = result
        return result

    entries = []
    for name in variants:
        technique, quantization = VARIANTS[name]
        keras_model, params = build(technique)
        int8_io = bool(opts["int8_io"]) and quantization == "full_int8"
        per_channel = bool(opts["per_channel"]) and quantization == "full_int8"
        content = convert(
            keras_model, quantization, representative, int8_io=int8_io, per_channel=per_channel
        )
        path = out / f"{name}.tflite"
        _write_atomic(path, content)
        report_progress(len(entries) + 1, len(variants), name)
        entry = {
            "name": name,
            "path": str(path.resolve()),
            "technique": technique if technique != "none" else "post_training",
            "params": {
                **params,
                "quantization": quantization,
                "int8_io": int8_io,
                **({"per_channel": per_channel} if quantization == "full_int8" else {}),
                "size_bytes": len(content),
                "gzip_bytes": gzip_bytes(path),
                **(
                    {"representative_samples": len(representative)}
                    if quantization == "full_int8"
                    else {}
                ),
            },
        }
        # One entry file per variant, so that parallel compression tasks (one per variant,
        # e.g. under dsl.ParallelFor) writing to the same directory lose none.
        write_json_atomic(out / f"{name}{ENTRY_SUFFIX}", entry)
        entries.append(entry)
    write_json_atomic(out / VARIANTS_FILE, entries)
    return entries
