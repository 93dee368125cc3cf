"""The random-forest family as candidates of the gate: train, compile to TFLite, list as variants.

Two steps, one per runtime image: :func:`fit_forests` (Spark image) fits every configuration
and saves each forest's arrays and MLlib's own test probabilities under ``<run>/forests/``;
:func:`export_forest_candidates` (TensorFlow image) compiles each to TFLite, checks it against
MLlib, and writes it as an entry of the run's variants directory (the contract of
:mod:`kfp_edge.variants`) next to the compressed neural networks, so the evaluation scores it
and the gate chooses across families by the same service levels.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np

from kfp_edge.dataset import load_split, read_manifest
from kfp_edge.forest_training.forest import (
    ForestArrays,
    parse_config,
    predict_proba,
    train_forests,
)
from kfp_edge.variants import ENTRY_SUFFIX
from kfp_edge.workspace import write_json_atomic

FAMILY = "random_forest"
FORESTS_DIR = "forests"
MAX_DIFF = 1e-5  # probabilities of the compiled model against MLlib's


def fit_forests(
    data_dir: str | os.PathLike,
    forests_dir: str | os.PathLike,
    configs: list[str],
    seed: int = 42,
    max_bins: int = 32,
    spark=None,
    driver_memory: str = "2g",
) -> list[dict]:
    """Fits every configuration concurrently in one SparkSession and saves each forest.

    Args:
        data_dir: The ETL output (Parquet splits and manifest).
        forests_dir: Where ``<name>.npz`` (arrays and MLlib's test probabilities) and
            ``<name>.json`` (configuration, timings, validation accuracy) go.
        configs: ``"<trees>x<depth>"`` strings; empty returns ``[]`` without starting Spark.
        seed: MLlib's seed.
        max_bins: MLlib's ``maxBins``.
        spark: A SparkSession; a local one is created (and stopped) when None.
        driver_memory: Heap of the local session when one is created.

    Returns:
        The saved summaries, in configuration order.

    Raises:
        ValueError: Naming a malformed configuration (before any work).
    """
    specs = [parse_config(c) for c in configs]
    if not specs:
        return []
    from kfp_edge.spark_session import create_session

    own_session = spark is None
    spark = spark or create_session("kfp-edge-forest", driver_memory=driver_memory)
    try:
        fitted = train_forests(spark, data_dir, specs, seed=seed, max_bins=max_bins)
    finally:
        if own_session:
            spark.stop()
    out = Path(forests_dir)
    out.mkdir(parents=True, exist_ok=True)
    summaries = []
    for item in fitted:
        spec, arrays = item["spec"], item["arrays"]
        fields = {f.name: getattr(arrays, f.name) for f in dataclasses.fields(arrays)}
        tmp = out / f".{spec.name}.npz.tmp"
        with open(tmp, "wb") as f:
            np.savez(f, spark_test_proba=item["spark_test_proba"], **fields)
        os.replace(tmp, out / f"{spec.name}.npz")
        summary = {
            "name": spec.name,
            "num_trees": spec.num_trees,
            "max_depth": spec.max_depth,
            "train_seconds": item["train_seconds"],
            "spark_validation_accuracy": item["validation_accuracy"],
        }
        write_json_atomic(out / f"{spec.name}.json", summary)
        summaries.append(summary)
    return summaries


def load_forest(forests_dir: str | os.PathLike, name: str) -> tuple[ForestArrays, np.ndarray]:
    """Returns a saved forest's arrays and MLlib's test probabilities."""
    with np.load(Path(forests_dir) / f"{name}.npz") as saved:
        arrays = ForestArrays(
            **{
                f.name: saved[f.name] for f in dataclasses.fields(ForestArrays) if f.name != "depth"
            },
            depth=int(saved["depth"]),
        )
        return arrays, saved["spark_test_proba"]


def export_forest_candidates(
    forests_dir: str | os.PathLike, data_dir: str | os.PathLike, variants_dir: str | os.PathLike
) -> list[dict]:
    """Compiles every saved forest to TFLite, checks it against MLlib, writes its variant entry.

    Args:
        forests_dir: The output of :func:`fit_forests`.
        data_dir: The ETL output (the test split the check runs on).
        variants_dir: The run's variants directory (shared with the compression step).

    Returns:
        The variant entries written, by name.

    Raises:
        ValueError: If a compiled forest's probabilities differ from MLlib's by more than 1e-5.
    """
    from kfp_edge.forest_training.tflite_forest import to_tflite
    from kfp_edge.litert import TFLiteModel

    forests_dir, out = Path(forests_dir), Path(variants_dir)
    out.mkdir(parents=True, exist_ok=True)
    x, _ = load_split(data_dir, "test")
    num_features = read_manifest(data_dir)["num_features"]
    entries = []
    for summary_path in sorted(forests_dir.glob("*.json")):
        summary = json.loads(summary_path.read_text())
        arrays, spark_proba = load_forest(forests_dir, summary["name"])
        started = time.perf_counter()
        path = out / f"{summary['name']}.tflite"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(to_tflite(arrays, num_features))
        os.replace(tmp, path)
        compile_seconds = time.perf_counter() - started
        difference = (
            float(np.abs(TFLiteModel(path).predict(x) - spark_proba).max()) if len(x) else 0.0
        )
        if difference > MAX_DIFF:
            raise ValueError(f"{path}: compiled forest differs from MLlib by {difference:.2e}")
        exact = float(np.abs(predict_proba(arrays, x) - spark_proba).max()) if len(x) else 0.0
        entry = {
            "name": summary["name"],
            "path": str(path.resolve()),
            "technique": FAMILY,
            "family": FAMILY,
            "params": {
                **{k: v for k, v in summary.items() if k != "name"},
                "depth_reached": arrays.depth,
                "nodes_per_tree": int(arrays.feature.shape[1]),
                "compile_seconds": round(compile_seconds, 3),
                "max_abs_diff_vs_spark": difference,
                "numpy_max_abs_diff_vs_spark": exact,
                "size_bytes": path.stat().st_size,
            },
        }
        write_json_atomic(out / f"{summary['name']}{ENTRY_SUFFIX}", entry)
        entries.append(entry)
    return entries
