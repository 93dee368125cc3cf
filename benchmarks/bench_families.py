"""Random forest against neural network on the same sensor data, like the source talk's table.

Both families are trained on one split of synthetic sensor readings
(``kfp_edge.spark_etl.datagen``): the sensor MLP (tf_keras, as in bench_compression) exported
to float32 and full-integer int8 TFLite, and random forests fitted with Spark MLlib (several
configurations at once in one local session) compiled to TFLite by
``kfp_edge.forest_training``. Every model is then measured by the same
``evaluate_variants`` (LiteRT, one thread, single-sample p50 after warm-up), so the columns
compare like with like: test accuracy, .tflite bytes, gzip bytes (what ships), p50 and the
training time (Keras ``fit`` and MLlib ``fit`` respectively).
"""

from __future__ import annotations

import tempfile
from pathlib import Path


def run(quick: bool = False) -> dict:
    from benchmarks.bench_compression import sensor_setup
    from kfp_edge.compression.export import export_variants
    from kfp_edge.evaluation.evaluate import evaluate_variants
    from kfp_edge.forest_training.candidates import export_forest_candidates, fit_forests

    rows, epochs, runs = (5_000, 2, 200) if quick else (40_000, 10, 1000)
    configs = ["10x6"] if quick else ["20x6", "50x8", "100x10"]
    with tempfile.TemporaryDirectory(prefix="bench-families-") as tmp:
        work = Path(tmp)
        data_dir, saved, info = sensor_setup(work, rows, epochs)
        export_variants(saved, data_dir, work / "variants", ["float32", "full_int8"])
        summaries = fit_forests(data_dir, work / "forests", configs)
        export_forest_candidates(work / "forests", data_dir, work / "variants")
        evaluation = evaluate_variants(
            work / "variants", data_dir, saved, runs=runs, warmup=100, measure_memory=False
        )
    train_s = {s["name"]: s["train_seconds"] for s in summaries}
    out = []
    for v in evaluation["variants"]:
        forest = v["name"].startswith("random_forest")
        out.append(
            {
                "model": v["name"],
                "family": "random forest (MLlib)" if forest else "neural network (Keras)",
                "accuracy": v["accuracy"],
                "size_B": int(v["size_bytes"]),
                "gzip_B": int(v["gzip_bytes"]),
                "p50_us": v["latency_us"]["p50"],
                "train_s": train_s.get(v["name"], info["train_s"]),
            }
        )
    nn = next(r for r in out if r["model"] == "float32")
    best_rf = max((r for r in out if r["family"].startswith("random")), key=lambda r: r["accuracy"])
    return {
        "name": "families",
        "rows": out,
        "ratios": {
            "best_forest_accuracy_minus_nn": best_rf["accuracy"] - nn["accuracy"],
            "best_forest_p50_over_nn_p50": best_rf["p50_us"] / nn["p50_us"],
            "best_forest_gzip_over_nn_gzip": best_rf["gzip_B"] / nn["gzip_B"],
        },
        "notes": f"{rows} rows, NN {info['params']} params trained {epochs} epochs; forests "
        f"{', '.join(configs)} fitted concurrently in one Spark session (local[*]).",
    }
