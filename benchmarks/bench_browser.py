"""Per-call latency in the browser against Python, on the same variants and the same rows.

The sensor MLP of ``bench_compression`` (about 134k parameters) is exported as float32,
dynamic_int8 and full_int8 (float input and output) and timed one row per call, after the
same warm-up, four ways in one run:

- ``python litert``: ``ai_edge_litert`` with one thread (``TFLiteModel.latency_us``);
- ``browser litert.js``: the browser-ready copy (batch 1) in headless Chromium, LiteRT.js
  2.5.3 on its wasm (XNNPACK) CPU backend with one thread (``web/litert_client.js``);
- ``browser tf.js``: the same network (the Keras weights, handed over as JSON because TF.js's
  Python converter does not install next to TensorFlow 2.21) in TF.js 4.22 on its wasm
  backend with one thread (``web/bench_tfjs.js``).

A browser call counts building the input tensor, the run, reading the output and deleting the
tensors; a Python call counts set_tensor, invoke and get_tensor. Needs Chromium and
``npm ci`` in ``web/``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np


def keras_network(saved_model_dir) -> list[dict]:
    """The Normalization and Dense layers of a tf_keras model, as ``web/bench_tfjs.js`` takes.

    Raises:
        ValueError: On a layer the TF.js replica does not build (named).
    """
    from kfp_edge.tf_env import load_keras_model

    network = []
    for layer in load_keras_model(saved_model_dir).layers:
        kind = type(layer).__name__
        if kind == "Normalization":
            mean, variance = (
                np.asarray(v).reshape(-1).tolist() for v in (layer.mean, layer.variance)
            )
            network.append({"op": "normalize", "mean": mean, "variance": variance})
        elif kind == "Dense":
            kernel, bias = (w.tolist() for w in layer.get_weights())
            activation = layer.activation.__name__
            network.append(
                {"op": "dense", "kernel": kernel, "bias": bias, "activation": activation}
            )
        elif kind not in ("InputLayer", "Dropout"):
            raise ValueError(f"layer {layer.name!r} ({kind}) has no TF.js replica here")
    return network


def _row(kind: str, name: str, latency: dict, max_diff: float | None) -> dict:
    return {
        "runtime": kind,
        "variant": name,
        "p50_us": latency["p50"],
        "p95_us": latency["p95"],
        "max_abs_diff_vs_python": max_diff,
    }


def run(quick: bool = False) -> dict:
    from benchmarks.bench_compression import sensor_setup
    from kfp_edge.app.browser_run import run_in_browser
    from kfp_edge.app.serve_web import WebServer
    from kfp_edge.compression.export import export_variants
    from kfp_edge.dataset import load_split
    from kfp_edge.litert import TFLiteModel

    rows_total, epochs = (3_000, 1) if quick else (20_000, 5)
    runs, warmup = (300, 50) if quick else (2000, 200)
    names = ["float32", "dynamic_int8", "full_int8"]
    with tempfile.TemporaryDirectory(prefix="bench-browser-") as tmp:
        work = Path(tmp)
        data_dir, saved, info = sensor_setup(work, rows_total, epochs)
        variants = work / "variants"
        export_variants(saved, data_dir, variants, names)
        x, _ = load_split(data_dir, "test")
        x = x[:64]
        python = {n: TFLiteModel(variants / f"{n}.tflite") for n in names}
        expected = {n: model.predict(x, batch_size=1) for n, model in python.items()}
        job = {"rows": x.tolist(), "runs": runs, "warmup": warmup}
        with WebServer(variants, quiet=True) as server:
            litert_js = run_in_browser(server.url, job)["results"]
            tfjs_job = {**job, "models": ["float32"], "script": "/bench_tfjs.js"}
            tfjs = run_in_browser(server.url, {**tfjs_job, "network": keras_network(saved)})
        rows = []
        for n in names:
            rows.append(_row("python litert", n, python[n].latency_us(x, runs, warmup), None))
        for result in litert_js:
            diff = float(np.abs(np.asarray(result["outputs"]) - expected[result["name"]]).max())
            rows.append(_row("browser litert.js", result["name"], result["latency_us"], diff))
        (tf_result,) = tfjs["results"]
        diff = float(np.abs(np.asarray(tf_result["outputs"]) - expected["float32"]).max())
        rows.append(_row("browser tf.js", "float32", tf_result["latency_us"], diff))
    by = {(r["runtime"], r["variant"]): r["p50_us"] for r in rows}
    ratios = {
        f"litert.js / python p50 ({n})": by[("browser litert.js", n)] / by[("python litert", n)]
        for n in names
    }
    ratios["tf.js / litert.js p50 (float32)"] = (
        by[("browser tf.js", "float32")] / by[("browser litert.js", "float32")]
    )
    return {
        "name": "browser latency: LiteRT.js and TF.js in Chromium vs ai_edge_litert",
        "rows": rows,
        "ratios": ratios,
        "notes": (
            f"sensor MLP, {info.get('params', '?')} parameters; one thread everywhere; "
            f"{runs} timed single-row calls after {warmup} warm-up calls; headless Chromium, "
            "cross-origin isolated page (fine timers)"
        ),
    }
