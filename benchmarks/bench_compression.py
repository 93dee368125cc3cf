"""Compression sweep on the sensor model: every variant against the float reference.

A tf_keras MLP of 6 -> 3 x Dense(256, relu) -> 4 classes (about 134k parameters, the
standardization folded in as its first layer) is trained on synthetic sensor readings of
``kfp_edge.spark_etl.datagen.generate_sensor_data`` (split 70/15/15 and written in the data
contract of ``kfp_edge.dataset``). Every variant is then exported by ``export_variants`` and
measured by ``evaluate_variants`` with the LiteRT interpreter (one thread, 1,000 timed
single-sample runs after warm-up), next to the SavedModel measured in graph mode
(``tf.function``), and the gate chooses among them with its default service levels.

Targets: full-integer int8 at most 0.27x the float32 TFLite size with at most 1 point of
accuracy lost; the pruned int8 model as shipped (gzip level 9, the model store's codec) at least
10x smaller than the float32 model's raw bytes, with at most 1 point lost.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np

SENSOR_WIDTH = 256
SENSOR_DEPTH = 3


def _write_contract(data_dir: Path, splits: dict, columns: list[str], classes: list[str]) -> None:
    """Writes splits ``{name: (x, y)}`` in the data contract (shards, Parquet, manifest)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from kfp_edge.tfrecord import encode_example, frame_record

    x_train = splits["train"][0]
    manifest = {
        "feature_columns": columns,
        "label_column": "fault",
        "classes": classes,
        "num_features": len(columns),
        "num_classes": len(classes),
        "preprocessing": "preprocessing.json",
        "splits": {},
    }
    for split, (x, y) in splits.items():
        (data_dir / split).mkdir(parents=True, exist_ok=True)
        shards = []
        for i, idx in enumerate(np.array_split(np.arange(len(y)), 2)):
            rel = f"{split}/part-{i:05d}.tfrecord"
            blob = b"".join(frame_record(encode_example(x[j].tolist(), int(y[j]))) for j in idx)
            (data_dir / rel).write_bytes(blob)
            shards.append(
                {"path": rel, "rows": int(len(idx)), "sha256": hashlib.sha256(blob).hexdigest()}
            )
        (data_dir / "parquet" / split).mkdir(parents=True, exist_ok=True)
        table = pa.table({**{c: x[:, k] for k, c in enumerate(columns)}, "label_index": y})
        pq.write_table(table, data_dir / "parquet" / split / "part-00000.parquet")
        manifest["splits"][split] = {
            "rows": int(len(y)),
            "shards": shards,
            "parquet": f"parquet/{split}",
        }
    (data_dir / "preprocessing.json").write_text(
        json.dumps(
            {
                "type": "standardize",
                "feature_columns": columns,
                "mean": x_train.mean(0).astype(float).tolist(),
                "std": x_train.std(0).astype(float).tolist(),
            }
        )
    )
    (data_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))


def sensor_setup(work: Path, rows: int, epochs: int, seed: int = 0) -> tuple[Path, Path, dict]:
    """Generates sensor data, writes it in the data contract and trains the sensor model.

    Returns:
        ``(data_dir, saved_model_dir, info)`` with the parameter count and training time.
    """
    import time

    import pandas as pd

    from kfp_edge.spark_etl.datagen import CHANNELS, CLASSES, generate_sensor_data
    from kfp_edge.tf_env import import_tf
    from kfp_edge.tfjob_training.models import build_model

    raw = work / "sensor.parquet"
    generate_sensor_data(raw, rows, seed=seed, fmt="parquet")
    frame = pd.read_parquet(raw)
    x = frame[list(CHANNELS)].to_numpy(np.float32)
    y = frame["fault"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    x, y = x[order], y[order]
    a, b = int(0.7 * len(y)), int(0.85 * len(y))
    data_dir = work / "data"
    _write_contract(
        data_dir,
        {"train": (x[:a], y[:a]), "validation": (x[a:b], y[a:b]), "test": (x[b:], y[b:])},
        list(CHANNELS),
        list(CLASSES),
    )
    tf, keras = import_tf()
    keras.utils.set_random_seed(seed)
    model = build_model(
        "mlp",
        len(CHANNELS),
        len(CLASSES),
        x[:a].mean(0).tolist(),
        x[:a].std(0).tolist(),
        width=SENSOR_WIDTH,
        depth=SENSOR_DEPTH,
    )
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", ["accuracy"])
    started = time.perf_counter()
    model.fit(
        x[:a], y[:a], epochs=epochs, batch_size=128, verbose=0, validation_data=(x[a:b], y[a:b])
    )
    saved = work / "saved_model"
    model.save(str(saved), save_format="tf", include_optimizer=False)
    return (
        data_dir,
        saved,
        {
            "params": int(model.count_params()),
            "train_rows": a,
            "test_rows": len(y) - b,
            "train_s": round(time.perf_counter() - started, 1),
        },
    )


def run(quick: bool = False) -> dict:
    from kfp_edge.compression.export import VARIANTS, export_variants
    from kfp_edge.evaluation.evaluate import evaluate_variants
    from kfp_edge.gate.gate import decide

    if quick:
        rows, epochs, runs = 5_000, 2, 200
        variants = ["float32", "dynamic_int8", "full_int8", "pruned_int8"]
        options = {"fine_tune_epochs": 1, "batch_size": 256}
    else:
        rows, epochs, runs = 60_000, 12, 1000
        variants = list(VARIANTS)
        options = {
            "fine_tune_epochs": 6,
            "batch_size": 256,
            "distill_epochs": 12,
            "distill_learning_rate": 3e-3,
            "student_width": 64,
            "student_depth": 2,
        }
    with tempfile.TemporaryDirectory(prefix="bench-compression-") as tmp:
        work = Path(tmp)
        data_dir, saved, info = sensor_setup(work, rows, epochs)
        entries = export_variants(
            saved, data_dir, work / "variants", variants, sparsity=0.8, **options
        )
        evaluation = evaluate_variants(
            work / "variants", data_dir, saved, runs=runs, warmup=100, measure_memory=not quick
        )
    reference = evaluation["reference"]
    by_name = {v["name"]: v for v in evaluation["variants"]}
    f32 = by_name["float32"]
    out_rows = []
    for v in [reference, *evaluation["variants"]]:
        out_rows.append(
            {
                "variant": v["name"],
                "size_B": int(v["size_bytes"]),
                "size_vs_f32": v["size_bytes"] / f32["size_bytes"],
                "shipped_B": int(v["shipped_bytes"]),
                "f32_raw_over_shipped": f32["size_bytes"] / v["shipped_bytes"],
                "accuracy": v["accuracy"],
                "acc_loss_pts": 100 * (reference["accuracy"] - v["accuracy"]),
                "p50_us": v["latency_us"]["p50"],
                "p95_us": v["latency_us"]["p95"],
                "peak_mem_B": v.get("peak_memory_bytes"),
            }
        )
    ratios = {
        "full_int8_size_vs_float32": by_name["full_int8"]["size_bytes"] / f32["size_bytes"],
        "full_int8_accuracy_loss_pts": 100
        * (reference["accuracy"] - by_name["full_int8"]["accuracy"]),
        "pruned_int8_shipped_reduction_x": f32["size_bytes"]
        / by_name["pruned_int8"]["shipped_bytes"],
        "pruned_int8_accuracy_loss_pts": 100
        * (reference["accuracy"] - by_name["pruned_int8"]["accuracy"]),
        "litert_float32_vs_tf_function_p50_speedup_x": reference["latency_us"]["p50"]
        / f32["latency_us"]["p50"],
    }
    met = {
        "full_int8 <= 0.27x size": ratios["full_int8_size_vs_float32"] <= 0.27,
        "full_int8 <= 1 pt lost": ratios["full_int8_accuracy_loss_pts"] <= 1.0,
        "pruned int8 shipped >= 10x": ratios["pruned_int8_shipped_reduction_x"] >= 10.0,
        "prune+int8 <= 1 pt lost": ratios["pruned_int8_accuracy_loss_pts"] <= 1.0,
    }
    decision = decide(evaluation, {})
    notes = (
        f"sensor MLP 6-{SENSOR_DEPTH}x{SENSOR_WIDTH}-4, {info['params']:,} parameters, trained "
        f"{epochs} epochs on {info['train_rows']:,} rows; test split {info['test_rows']:,} rows; "
        f"pruning to 80 % sparsity; LiteRT 1 thread, {runs} timed runs after 100 warm-up. "
        "Targets: "
        + ", ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in met.items())
        + f". The gate (default service levels) chooses {decision['chosen']!r}, ranking "
        + ", ".join(decision["ranking"])
        + ". Params per variant: "
        + json.dumps(
            {
                e["name"]: {
                    k: v
                    for k, v in e["params"].items()
                    if k in ("sparsity", "clusters", "student_params")
                }
                for e in entries
            }
        )
    )
    return {
        "name": "compression sweep (sensor model)",
        "rows": out_rows,
        "ratios": ratios,
        "notes": notes,
    }


if __name__ == "__main__":
    import pprint

    pprint.pprint(run(quick=True))
