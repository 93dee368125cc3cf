"""Every browser-ready variant of a real run, in headless Chromium with LiteRT.js.

Real Chromium (the system's ``/usr/bin/chromium``, driven over the DevTools protocol by
playwright-core), the real LiteRT.js wasm runtime from ``web/node_modules`` served by
``kfp-edge serve-web``'s server, and ``ai_edge_litert`` in Python as the reference.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from kfp_edge.app.browser_run import run_in_browser
from kfp_edge.app.serve_web import WebServer
from kfp_edge.dataset import load_split
from kfp_edge.litert import TFLiteModel

pytestmark = pytest.mark.usefixtures("browser_available")


def test_every_browser_ready_variant_matches_litert(
    browser_variants, iris_data_dir, capsys, record_property
):
    variants_dir, entries = browser_variants
    x, _ = load_split(iris_data_dir, "test")
    rows = x[:12]
    with WebServer(variants_dir, quiet=True) as server:
        served = {m["name"]: m for m in server.models}
        out = run_in_browser(server.url, {"rows": rows.tolist(), "runs": 1000, "warmup": 100})
    # Threads and fine timers need the COOP/COEP headers: the page must be isolated.
    assert out["isolated"] is True, out["status"]
    results = {r["name"]: r for r in out["results"]}
    assert sorted(results) == sorted(e["name"] for e in entries)
    figures = {}
    for name, result in results.items():
        python = TFLiteModel(variants_dir / f"{name}.tflite")
        expected = python.predict(rows, batch_size=1)
        got = np.asarray(result["outputs"], dtype=np.float32)
        assert got.shape == expected.shape, name
        np.testing.assert_array_equal(got.argmax(1), expected.argmax(1), err_msg=name)
        assert np.abs(got - expected).max() <= 1e-5, (name, np.abs(got - expected).max())
        latency = result["latency_us"]
        assert latency["runs"] == 1000 and 0 < latency["p50"] <= latency["p95"], name
        python_latency = python.latency_us(rows, runs=1000, warmup=100)
        figures[name] = {
            "browser_p50_us": latency["p50"],
            "browser_p95_us": latency["p95"],
            "python_p50_us": python_latency["p50"],
            "python_p95_us": python_latency["p95"],
        }
        assert served[name]["browser_ready"] and served[name]["url"], name
    record_property("browser_latency_us", figures)
    with capsys.disabled():
        print("\nbrowser vs ai_edge_litert per call (µs):", json.dumps(figures, indent=1))


def test_int8_io_variant_is_listed_but_not_run(browser_variants, int8_io_model, tmp_path):
    variants_dir, _ = browser_variants
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    (model_dir / "float32.tflite").write_bytes((variants_dir / "float32.tflite").read_bytes())
    (model_dir / "int8_io.tflite").write_bytes(int8_io_model.read_bytes())
    with WebServer(model_dir, quiet=True) as server:
        out = run_in_browser(server.url, {"rows": [[5.1, 3.5, 1.4, 0.2]], "runs": 5, "warmup": 1})
        listed = {m["name"]: m for m in server.models}
    assert [r["name"] for r in out["results"]] == ["float32"]
    assert listed["int8_io"]["browser_ready"] is False
    assert "input 0 is INT8" in "; ".join(listed["int8_io"]["reasons"])


def test_page_predicts_a_form_row_and_pasted_csv(browser_variants, iris_data_dir):
    variants_dir, _ = browser_variants
    x, _ = load_split(iris_data_dir, "test")
    python = TFLiteModel(variants_dir / "float32.tflite").predict(x[:3], batch_size=1)
    csv = "sepal_length,sepal_width,petal_length,petal_width\n" + "\n".join(
        ",".join(repr(float(v)) for v in row) for row in x[:3]
    )
    with WebServer(variants_dir / "float32.tflite", quiet=True) as server:
        pasted = run_in_browser(server.url, {"ui": {"csv": csv, "expectRows": 3}})
        typed = run_in_browser(server.url, {"ui": {"row": x[0].tolist(), "expectRows": 1}})
        bad = run_in_browser(server.url, {"ui": {"csv": "1,2,3,x"}})
    assert pasted["header"][1:4] == ["class 0", "class 1", "class 2"]
    assert pasted["header"][-1] == "latency (µs)"
    shown = np.array([[float(c) for c in row[1:4]] for row in pasted["table"]])
    np.testing.assert_allclose(shown, python, atol=1e-4)  # the page rounds to 4 decimals
    assert [row[4] for row in pasted["table"]] == [f"class {k}" for k in python.argmax(1)]
    assert all(float(row[5]) > 0 for row in pasted["table"])
    assert typed["table"][0][1:4] == pasted["table"][0][1:4]
    assert bad["table"] == []
    assert bad["error"] == 'CSV line 1, field 4: "x" is not a number'
