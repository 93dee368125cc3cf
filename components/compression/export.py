"""Compressed TFLite variants of a trained SavedModel.

A variant is a Keras-side technique (:data:`kfp_edge.compression.techniques.TECHNIQUES`: none,
prune, cluster, qat, distill or the collaborative prune -> cluster -> QAT) followed by a TFLite
conversion (:data:`kfp_edge.compression.conversions.CONVERSIONS`: float32, float16,
dynamic-range int8 or full-integer int8 calibrated on a random sample of the training rows).
Both registries hold plugin classes with pre- and post-validation. :data:`VARIANTS` names
the pairs; :func:`export_variants` writes the chosen ones.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from kfp_edge.dataset import FEATURES_KEY, LABEL_KEY, load_split, read_manifest, shard_paths
from kfp_edge.litert import gzip_bytes
from kfp_edge.model_versions import shipped_bytes
from kfp_edge.progress import report_progress
from kfp_edge.tf_env import load_keras_model
from kfp_edge.variants import ENTRY_SUFFIX, VARIANTS_FILE
from kfp_edge.workspace import write_json_atomic

# name -> (keras technique, tflite conversion).
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
INT8_SCALES = ("auto", "per_channel", "per_tensor")

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
    "int8_scales": "auto",
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
    if opts["int8_scales"] not in INT8_SCALES:
        raise ValueError(f"int8_scales: {opts['int8_scales']!r} is not one of {list(INT8_SCALES)}")
    return opts


def representative_features(data_dir: str | os.PathLike, samples: int, seed: int = 0) -> np.ndarray:
    """Draws ``samples`` raw feature rows at random from all training TFRecord shards.

    One pass over the shards with reservoir sampling (Algorithm R, seeded): every row of every
    shard is equally likely, whatever the shards' order or sizes, and memory stays at
    ``samples`` rows. The first rows of each shard (often one device or one day) would
    calibrate the int8 ranges on a biased slice.

    Raises:
        FileNotFoundError: A training shard listed in the manifest is missing (named).
        ValueError: If the shards hold no rows or rows of the wrong length (naming the shard).
    """
    from kfp_edge.tf_env import import_tf

    tf, _ = import_tf()
    num_features = int(read_manifest(data_dir)["num_features"])
    spec = {
        FEATURES_KEY: tf.io.FixedLenFeature([num_features], tf.float32),
        LABEL_KEY: tf.io.FixedLenFeature([1], tf.int64),
    }
    rng = np.random.default_rng(seed)
    reservoir = np.empty((samples, num_features), dtype=np.float32)
    seen = 0
    for path in shard_paths(data_dir, "train"):
        if not Path(path).exists():
            raise FileNotFoundError(f"{path}: training shard listed in the manifest is missing")
        try:
            for record in tf.data.TFRecordDataset(path):
                slot = seen if seen < samples else int(rng.integers(0, seen + 1))
                if slot < samples:
                    reservoir[slot] = tf.io.parse_single_example(record, spec)[FEATURES_KEY]
                seen += 1
        except tf.errors.OpError as exc:
            raise ValueError(f"{path}: unreadable training shard: {exc.message}") from exc
    if not seen:
        raise ValueError(
            f"{data_dir}: the training shards hold no rows for the representative dataset"
        )
    return reservoir[: min(seen, samples)]


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
    """Builds, converts, validates and writes the chosen variants, plus ``variants.json``.

    Steps: check the options and that the model fits the dataset; per variant, build its
    technique once (checked before, validated after), run the conversion's pre-validation,
    convert, validate the flatbuffer with LiteRT, then write the .tflite and its entry.

    Args:
        saved_model_dir: The trainer's tf_keras SavedModel (raw features in, softmax out).
        data_dir: The ETL output (data contract of :mod:`kfp_edge.dataset`): the training
            split fine-tunes and a random sample of its rows calibrates full-integer int8.
        out_dir: Where ``<name>.tflite`` and ``variants.json`` go.
        variants: Names from :data:`VARIANTS`, in the order wanted.
        **options: Overrides of :data:`DEFAULT_OPTIONS` (sparsity, clusters, fine_tune_epochs,
            learning_rate, batch_size, student_width, student_depth, temperature, alpha,
            distill_epochs, distill_learning_rate, int8_io, int8_scales,
            representative_samples, seed).

    Returns:
        One entry per variant: ``{"name", "path", "technique", "params"}``.

    Raises:
        ValueError: Unknown variants or options, a model that does not fit the dataset, or a
            technique or conversion whose validation fails (named).
        FileNotFoundError: A missing SavedModel or shard.
    """
    from kfp_edge.compression.conversions import CONVERSIONS
    from kfp_edge.compression.techniques import Build

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
    convert_options = {"int8_io": bool(opts["int8_io"]), "int8_scales": opts["int8_scales"]}
    if any(VARIANTS[name][1] == "full_int8" for name in variants):
        convert_options["representative"] = representative_features(
            data_dir, int(opts["representative_samples"]), int(opts["seed"])
        )
    build = Build(model, x, y, opts)
    entries = []
    for name in variants:
        technique, quantization = VARIANTS[name]
        keras_model, params = build.get(technique)
        conversion = CONVERSIONS[quantization]
        conversion.check(keras_model, convert_options)
        content = conversion.convert(keras_model, convert_options)
        conversion.validate(content, keras_model, x[:32])
        path = out / f"{name}.tflite"
        _write_atomic(path, content)
        report_progress(len(entries) + 1, len(variants), name)
        entry = {
            "name": name,
            "path": str(path.resolve()),
            "technique": technique if technique != "none" else "post_training",
            "params": {**params, **_conversion_params(quantization, keras_model, convert_options)},
        }
        entry["params"].update(
            size_bytes=len(content), shipped_bytes=shipped_bytes(path), gzip_bytes=gzip_bytes(path)
        )
        # One entry file per variant, so that parallel compression tasks (one per variant,
        # e.g. under dsl.ParallelFor) writing to the same directory lose none.
        write_json_atomic(out / f"{name}{ENTRY_SUFFIX}", entry)
        entries.append(entry)
    write_json_atomic(out / VARIANTS_FILE, entries)
    return entries


def _conversion_params(quantization: str, model, options: dict) -> dict:
    """The conversion settings recorded in a variant's entry."""
    from kfp_edge.compression.conversions import FullInt8, trained_ranges_only

    if quantization != "full_int8":
        return {"quantization": quantization, "int8_io": False}
    if trained_ranges_only(model) and not options["int8_io"]:
        return {
            "quantization": quantization,
            "int8_io": False,
            "per_channel": FullInt8.per_channel(model, {}),  # tfmot's 8-bit scheme: conv only
            "calibration": "none: the ranges of quantization-aware training",
        }
    return {
        "quantization": quantization,
        "int8_io": options["int8_io"],
        "per_channel": FullInt8.per_channel(model, options),
        "representative_samples": len(options["representative"]),
        "calibration": "random rows of all training shards (reservoir sampling, seeded)",
    }
