"""Single-sample latency: LiteRT against Keras three ways, on the same trained model.

One tf_keras model (the sensor MLP of ``bench_compression``, about 134k parameters) is timed
in the same process, on the same test rows, one row per call, after the same warm-up
(``kfp_edge.evaluation.evaluate.keras_latency_us`` and ``kfp_edge.litert``):

- ``keras model(x)``: the eager tf_keras call a notebook would make;
- ``keras predict``: ``model.predict(x, verbose=0)`` (what people often time by mistake);
- ``keras tf.function``: ``tf.function(model)`` in graph mode, how TensorFlow serves a model:
  the fair comparison with an interpreter;
- ``litert float32`` and ``litert full_int8``: the ``ai_edge_litert`` interpreter with one
  thread, end to end (set, invoke, get) and invoke only, plus cold start (load, allocate,
  first invoke) and the peak memory of one batch-1 interpreter.

TensorFlow is pinned to one intra-op and one inter-op thread, like the interpreter.
"""

from __future__ import annotations

import tempfile
from pathlib import Path


def run(quick: bool = False) -> dict:
    from benchmarks.bench_compression import sensor_setup
    from kfp_edge import litert
    from kfp_edge.compression.export import export_variants
    from kfp_edge.dataset import load_split
    from kfp_edge.evaluation.evaluate import keras_latency_us
    from kfp_edge.tf_env import import_tf, load_keras_model

    tf, _ = import_tf()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # TensorFlow already started in this process (another benchmark ran first)
    rows_total, epochs = (3_000, 1) if quick else (20_000, 5)
    runs, predict_runs, warmup = (200, 20, 50) if quick else (2000, 300, 200)
    table = []
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        work = Path(tmp)
        data_dir, saved, info = sensor_setup(work, rows_total, epochs)
        export_variants(saved, data_dir, work / "variants", ["float32", "full_int8"])
        x, _ = load_split(data_dir, "test")
        model = load_keras_model(saved)
        for mode, n in (("eager", runs), ("predict", predict_runs), ("tf_function", runs)):
            lat = keras_latency_us(model, x, n, min(warmup, n), mode=mode)
            table.append({"engine": f"keras {mode}", "p50_us": lat["p50"], "p95_us": lat["p95"]})
        for name in ("float32", "full_int8"):
            path = work / "variants" / f"{name}.tflite"
            measured = litert.TFLiteModel(path, num_threads=1).measure_latency(x, runs, warmup)
            e2e, invoke = measured["latency_us"], measured["invoke_latency_us"]
            table.append(
                {
                    "engine": f"litert {name}",
                    "p50_us": e2e["p50"],
                    "p95_us": e2e["p95"],
                    "invoke_p50_us": invoke["p50"],
                    "invoke_p95_us": invoke["p95"],
                    "cold_start_us": litert.cold_start_us(path),
                    "peak_memory_B": litert.peak_memory_bytes(path),
                }
            )
    by = {r["engine"]: r for r in table}
    for row in table:
        row["speedup_vs_tf_function_p50"] = by["keras tf_function"]["p50_us"] / row["p50_us"]
    f32 = by["litert float32"]["p50_us"]
    ratios = {
        "litert_float32_vs_keras_eager_p50_x": by["keras eager"]["p50_us"] / f32,
        "litert_float32_vs_keras_predict_p50_x": by["keras predict"]["p50_us"] / f32,
        "litert_float32_vs_keras_tf_function_p50_x": by["keras tf_function"]["p50_us"] / f32,
        "keras_eager_vs_tf_function_p50_x": by["keras eager"]["p50_us"]
        / by["keras tf_function"]["p50_us"],
        "litert_float32_invoke_share_of_e2e_p50": by["litert float32"]["invoke_p50_us"] / f32,
    }
    return {
        "name": "single-sample latency: LiteRT vs Keras eager, predict and tf.function",
        "rows": table,
        "ratios": ratios,
        "notes": f"sensor MLP, {info['params']:,} parameters; one row per call, one thread, "
        f"{runs} timed runs after {warmup} warm-up (predict: {predict_runs}). The fair "
        "comparison is LiteRT against tf.function (graph mode); eager model(x) adds Python "
        "and eager dispatch per call. Shared machine: ratios, not absolute times.",
    }


if __name__ == "__main__":
    import pprint

    pprint.pprint(run(quick=True))
