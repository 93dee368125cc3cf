"""Single-sample latency: LiteRT against Keras ``model(x)`` on the same trained model.

One tf_keras model (the sensor MLP of ``bench_compression``, about 134k parameters) is timed
three ways in the same process, on the same test rows, one row per call, after the same warm-up:

- ``keras model(x)``: the eager tf_keras call a notebook would make;
- ``keras predict``: ``model.predict(x, verbose=0)`` (what people often time by mistake);
- ``litert float32`` and ``litert full_int8``: ``ai_edge_litert`` interpreter with one thread
  (``kfp_edge.litert.TFLiteModel.latency_us``).

TensorFlow is pinned to one intra-op and one inter-op thread, like the interpreter.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np


def _time_calls(fn, rows: list, runs: int, warmup: int) -> dict:
    from kfp_edge.litert import latency_summary

    for i in range(warmup):
        fn(rows[i % len(rows)])
    timings = np.empty(runs)
    for i in range(runs):
        row = rows[i % len(rows)]
        t0 = time.perf_counter_ns()
        fn(row)
        timings[i] = time.perf_counter_ns() - t0
    return latency_summary(timings / 1000.0, warmup, 1)


def run(quick: bool = False) -> dict:
    from benchmarks.bench_compression import sensor_setup
    from kfp_edge.compression.export import export_variants
    from kfp_edge.dataset import load_split
    from kfp_edge.litert import TFLiteModel
    from kfp_edge.tf_env import import_tf, load_keras_model

    tf, _ = import_tf()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # TensorFlow already started in this process (another benchmark ran first)
    rows_total, epochs = (3_000, 1) if quick else (20_000, 5)
    runs, predict_runs, warmup = (200, 20, 50) if quick else (2000, 300, 200)
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        work = Path(tmp)
        data_dir, saved, info = sensor_setup(work, rows_total, epochs)
        export_variants(saved, data_dir, work / "variants", ["float32", "full_int8"])
        x, _ = load_split(data_dir, "test")
        rows = [x[i : i + 1] for i in range(min(256, len(x)))]
        model = load_keras_model(saved)
        keras_call = _time_calls(lambda r: model(r, training=False).numpy(), rows, runs, warmup)
        keras_predict = _time_calls(
            lambda r: model.predict(r, verbose=0), rows, predict_runs, min(warmup, 20)
        )
        litert = {
            name: TFLiteModel(work / "variants" / f"{name}.tflite", num_threads=1).latency_us(
                x, runs=runs, warmup=warmup
            )
            for name in ("float32", "full_int8")
        }
    table = [
        ("keras model(x)", keras_call),
        ("keras predict", keras_predict),
        ("litert float32", litert["float32"]),
        ("litert full_int8", litert["full_int8"]),
    ]
    out_rows = [
        {
            "engine": name,
            "p50_us": lat["p50"],
            "p95_us": lat["p95"],
            "p99_us": lat["p99"],
            "runs": lat["runs"],
            "speedup_vs_keras_p50": keras_call["p50"] / lat["p50"],
        }
        for name, lat in table
    ]
    ratios = {
        "litert_float32_vs_keras_call_p50_x": keras_call["p50"] / litert["float32"]["p50"],
        "litert_full_int8_vs_keras_call_p50_x": keras_call["p50"] / litert["full_int8"]["p50"],
        "litert_float32_vs_keras_call_p95_x": keras_call["p95"] / litert["float32"]["p95"],
    }
    met = ratios["litert_float32_vs_keras_call_p50_x"] >= 50
    return {
        "name": "single-sample latency: LiteRT vs Keras model(x)",
        "rows": out_rows,
        "ratios": ratios,
        "notes": f"sensor MLP, {info['params']:,} parameters; one row per call, one thread, "
        f"{runs} timed runs after {warmup} warm-up (predict: {predict_runs}). "
        f"Target LiteRT p50 >= 50x faster than model(x): {'met' if met else 'NOT met'}.",
    }


if __name__ == "__main__":
    import pprint

    pprint.pprint(run(quick=True))
