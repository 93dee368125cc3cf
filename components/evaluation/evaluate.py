"""Evaluation of every TFLite variant with LiteRT, and of the float SavedModel as reference.

Each variant gets the same figures: accuracy with its Wilson 95 % interval, per-class
precision and recall, the confusion matrix on the held-out split, raw, shipped and gzip size,
single-sample latency p50/p95/p99 (end to end: set, invoke, get; and invoke only) over ``runs``
timed invocations after a warm-up with pinned threads (every variant timed side by side in
interleaved rounds), cold start (load, allocate, first invoke), batch throughput, the peak
memory of one batch-1 interpreter as deployed, and an op check. The SavedModel is measured
the same way with tf_keras in graph mode (a ``tf.function`` of ``model(x)``, as a TensorFlow
server would run it), as the reference the gate compares against.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from kfp_edge import browser_model, litert
from kfp_edge.classification import classification_report
from kfp_edge.dataset import load_split, read_manifest
from kfp_edge.model_versions import shipped_bytes
from kfp_edge.progress import report_progress


def evaluate_tflite(
    path: str | os.PathLike,
    x: np.ndarray,
    y: np.ndarray,
    classes: list[str],
    runs: int = 1000,
    warmup: int = 100,
    num_threads: int = 1,
    batch_size: int = 256,
    measure_memory: bool = True,
    measure_latency: bool = True,
) -> dict:
    """Measures one .tflite model with the LiteRT interpreter (no TensorFlow needed).

    With ``measure_latency`` False the latency figures are left out, for a caller that times
    several models side by side (:func:`kfp_edge.litert.measure_side_by_side`).

    Returns:
        ``{"path", "size_bytes", "shipped_bytes", "gzip_bytes", "accuracy",
        "accuracy_interval", "per_class", "confusion_matrix", "latency_us",
        "invoke_latency_us", "cold_start_us", "throughput_rows_per_s", "peak_memory_bytes",
        "ops_ok", "select_tf_ops", "ops", "input_dtype", "output_dtype", "browser"}``;
        ``browser`` is :func:`kfp_edge.browser_model.browser_check` (whether LiteRT.js runs
        its batch-1 copy).
    """
    ops = litert.op_check(path)
    model = litert.TFLiteModel(path, num_threads=num_threads)
    report = classification_report(y, model.predict(x, batch_size=batch_size), classes)
    return {
        "path": str(path),
        "size_bytes": litert.size_bytes(path),
        "shipped_bytes": shipped_bytes(path),
        "gzip_bytes": litert.gzip_bytes(path),
        **report,
        **(model.measure_latency(x, runs=runs, warmup=warmup) if measure_latency else {}),
        "cold_start_us": litert.cold_start_us(path, num_threads),
        "throughput_rows_per_s": model.throughput_rows_per_s(x, batch_size=batch_size),
        "peak_memory_bytes": litert.peak_memory_bytes(path, num_threads)
        if measure_memory
        else None,
        "ops_ok": ops["ops_ok"],
        "select_tf_ops": ops["select_tf_ops"],
        "ops": ops["ops"],
        "input_dtype": model.input_dtype.name,
        "output_dtype": model.output_dtype.name,
        "browser": browser_model.browser_check(path),
    }


def keras_latency_us(
    model,
    x: np.ndarray,
    runs: int = 1000,
    warmup: int = 100,
    num_threads: int = 1,
    mode: str = "tf_function",
) -> dict:
    """Single-sample latency of a tf_keras model in microseconds, numpy row in, numpy out.

    Args:
        model: The tf_keras model.
        x: Rows used in turn.
        runs: Timed calls.
        warmup: Untimed calls first (they also trace the tf.function).
        num_threads: Recorded with the figures.
        mode: ``tf_function`` (graph mode, ``tf.function(model)``, the fair comparison with an
            interpreter), ``eager`` (``model(x)``) or ``predict`` (``model.predict``).
    """
    from kfp_edge.tf_env import import_tf

    tf, _ = import_tf()
    if mode == "tf_function":
        graph = tf.function(lambda t: model(t, training=False), reduce_retracing=True)

        def call(row):
            return graph(tf.constant(row)).numpy()
    elif mode == "eager":

        def call(row):
            return model(row, training=False).numpy()
    elif mode == "predict":

        def call(row):
            return model.predict(row, verbose=0)
    else:
        raise ValueError(f"unknown Keras latency mode {mode!r}; use tf_function, eager or predict")
    rows = [x[i : i + 1] for i in range(min(len(x), 256))]
    for i in range(max(1, warmup)):
        call(rows[i % len(rows)])
    timings = np.empty(runs, dtype=np.float64)
    clock = time.perf_counter_ns
    for i in range(runs):
        row = rows[i % len(rows)]
        t0 = clock()
        call(row)
        timings[i] = clock() - t0
    return litert.latency_summary(timings / 1000.0, warmup, num_threads)


def _measure_reference_memory(saved_model_dir: str, num_threads: int, batch_size: int) -> int:
    """In this process: peak RSS growth (bytes) from loading the SavedModel to running a batch.

    TensorFlow is imported (and its runtime started) before the baseline, as
    :func:`kfp_edge.litert._measure_peak_memory` imports LiteRT before its own.
    """
    from kfp_edge.tf_env import import_tf, load_keras_model

    tf, _ = import_tf()
    tf.config.threading.set_intra_op_parallelism_threads(num_threads)
    tf.config.threading.set_inter_op_parallelism_threads(num_threads)
    tf.constant(0.0) + 1.0  # start the eager runtime before the baseline
    Path("/proc/self/clear_refs").write_text("5")
    baseline = litert.rss_kib("VmRSS")
    model = load_keras_model(saved_model_dir)
    x = np.random.default_rng(0).normal(size=(batch_size, int(model.inputs[0].shape[-1])))
    model(x.astype(np.float32), training=False)
    return max(0, litert.rss_kib("VmHWM") - baseline) * 1024


def reference_peak_memory_bytes(
    saved_model_dir: str | os.PathLike, num_threads: int = 1, batch_size: int = 1
) -> int | None:
    """Peak memory of the SavedModel under tf_keras, measured like the interpreters' memory.

    A fresh Python process imports TensorFlow, resets the peak-RSS watermark, loads the model
    and runs one batch of ``batch_size`` rows; the figure is the RSS growth. None without
    /proc.
    """
    return litert.measure_in_fresh_process(
        "kfp_edge.evaluation.evaluate:_measure_reference_memory",
        saved_model_dir,
        num_threads,
        batch_size,
    )


def evaluate_reference(
    saved_model_dir: str | os.PathLike,
    x: np.ndarray,
    y: np.ndarray,
    classes: list[str],
    runs: int = 1000,
    warmup: int = 100,
    num_threads: int = 1,
    batch_size: int = 256,
    measure_memory: bool = True,
) -> dict:
    """Measures the float SavedModel with tf_keras, the same figures as :func:`evaluate_tflite`.

    TensorFlow's intra- and inter-op threads are pinned to ``num_threads`` when TensorFlow has
    not started its runtime yet. Peak memory is measured in a fresh process
    (:func:`reference_peak_memory_bytes`).
    """
    from kfp_edge.tf_env import import_tf, load_keras_model

    tf, _ = import_tf()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(num_threads)
        tf.config.threading.set_inter_op_parallelism_threads(num_threads)
    except RuntimeError:
        pass  # the runtime is already initialized in this process; threads stay as they are
    model = load_keras_model(saved_model_dir)
    probabilities = model.predict(x, batch_size=batch_size, verbose=0)
    # One row, as the interpreters' memory is measured: like with like.
    peak = reference_peak_memory_bytes(saved_model_dir, num_threads, 1) if measure_memory else None
    report = classification_report(y, probabilities, classes)
    reps = -(-batch_size // len(x))
    batch = tf.constant(np.concatenate([x] * reps)[:batch_size])
    model(batch, training=False)
    rows, start = 0, time.perf_counter()
    while time.perf_counter() - start < 0.2:
        model(batch, training=False).numpy()
        rows += len(batch)
    throughput = rows / (time.perf_counter() - start)
    return {
        "name": "saved_model",
        "path": str(saved_model_dir),
        "technique": "reference",
        "runtime": "tf_keras tf.function(model)",
        "size_bytes": litert.size_bytes(saved_model_dir),
        "shipped_bytes": litert.gzip_bytes(saved_model_dir),
        "gzip_bytes": litert.gzip_bytes(saved_model_dir),
        **report,
        "latency_us": keras_latency_us(model, x, runs, warmup, num_threads),
        "throughput_rows_per_s": throughput,
        "peak_memory_bytes": peak,
        "params": int(model.count_params()),
    }


def evaluate_variants(
    variants_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    saved_model_dir: str | os.PathLike | None = None,
    split: str = "test",
    runs: int = 1000,
    warmup: int = 100,
    num_threads: int = 1,
    batch_size: int = 256,
    measure_memory: bool = True,
) -> dict:
    """Evaluates every variant of ``variants.json`` (and the SavedModel reference if given).

    Args:
        variants_dir: The compression step's output (``variants.json`` and the .tflite files).
        data_dir: The ETL output; ``split`` is the held-out split evaluated.
        saved_model_dir: The float SavedModel measured as the reference; None to skip it.
        split: Dataset split to evaluate on.
        runs: Timed single-sample invocations per model (at least 1000 for the report).
        warmup: Untimed invocations before timing.
        num_threads: Interpreter (and TensorFlow) threads.
        batch_size: Batch size of accuracy and throughput runs.
        measure_memory: Measure peak memory (a short subprocess per variant) of one batch-1
            interpreter.

    Returns:
        ``{"split", "rows", "classes", "num_threads", "reference": {...} or None,
        "variants": [{"name", "technique", "params", ...figures of evaluate_tflite}],
        "unrunnable": [{"name", "path", "select_tf_ops", "custom_ops", "error", ...}]}``;
        variants whose ops the LiteRT interpreter cannot run (SELECT_TF_OPS without the Flex
        delegate) are listed under ``unrunnable`` instead of ``variants``.

    Raises:
        FileNotFoundError: A missing variants list or .tflite file (named).
        ValueError: A model that does not fit the dataset (named), or an empty split.
    """
    from kfp_edge.variants import read_variants

    entries = read_variants(variants_dir)
    manifest = read_manifest(data_dir)
    if split not in manifest["splits"]:
        raise ValueError(f"{data_dir}: the dataset has no split {split!r}")
    classes = [str(c) for c in manifest["classes"]]
    x, y = load_split(data_dir, split)
    if len(y) == 0:
        raise ValueError(f"{data_dir}: split {split!r} is empty; nothing to evaluate")
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0, got {runs} and {warmup}")
    reference = None
    if saved_model_dir:
        reference = evaluate_reference(
            saved_model_dir, x, y, classes, runs, warmup, num_threads, batch_size, measure_memory
        )
    results, unrunnable = [], []
    for done, entry in enumerate(entries):
        report_progress(done, len(entries), entry["name"])
        path = Path(entry["path"])
        if not path.is_absolute():
            path = Path(variants_dir) / path
        if not path.exists():
            raise FileNotFoundError(
                f"{path}: variant {entry['name']!r} listed in "
                f"{Path(variants_dir) / 'variants.json'} is missing"
            )
        ops = litert.op_check(path)
        if not ops["ops_ok"]:
            try:
                litert.TFLiteModel(path, num_threads=num_threads)
            except ValueError as exc:
                # Needs SELECT_TF_OPS (or custom ops) this interpreter lacks: no figures can be
                # measured; the gate rejects it with this reason.
                unrunnable.append(
                    {
                        "name": entry["name"],
                        "path": str(path),
                        "technique": entry.get("technique", ""),
                        "ops_ok": False,
                        "select_tf_ops": ops["select_tf_ops"],
                        "custom_ops": ops["custom_ops"],
                        "size_bytes": litert.size_bytes(path),
                        "shipped_bytes": shipped_bytes(path),
                        "gzip_bytes": litert.gzip_bytes(path),
                        "error": str(exc).split("\n")[0][:500],
                    }
                )
                continue
        figures = evaluate_tflite(
            path, x, y, classes, runs, warmup, num_threads, batch_size, measure_memory, False
        )
        results.append(
            {
                "name": entry["name"],
                "technique": entry.get("technique", ""),
                "params": entry.get("params", {}),
                **figures,
            }
        )
    # All variants timed in interleaved rounds, so drift while measuring hits them alike.
    models = {v["name"]: litert.TFLiteModel(v["path"], num_threads) for v in results}
    latencies = litert.measure_side_by_side(models, x, runs, warmup)
    for v in results:
        v.update(latencies[v["name"]])
    return {
        "split": split,
        "rows": int(len(y)),
        "classes": classes,
        "num_threads": int(num_threads),
        "reference": reference,
        "variants": results,
        "unrunnable": unrunnable,
    }
