"""The browser copy in a release, the evaluation's browser check, the gate and the report.

A real compression run's variants, the real evaluation (LiteRT), the real publish step and,
for the latency, real headless Chromium (skipped without it, failing in CI).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from kfp_edge.app.cli import main
from kfp_edge.app.serve_web import WebServer, default_model_dir
from kfp_edge.browser_model import BROWSER_MODEL_FILE
from kfp_edge.evaluation.evaluate import evaluate_variants
from kfp_edge.gate.gate import decide
from kfp_edge.litert import TFLiteModel
from kfp_edge.model_store.publish import publish_run, store_for
from kfp_edge.report_html import render_html
from kfp_edge.workspace import EVALUATION_FILE, run_dir, update_report, write_json_atomic


@pytest.fixture
def run(browser_variants, int8_io_model, iris_data_dir, iris_saved_model, tmp_path):
    """A run directory: the variants (plus an int8-I/O one), the data and a gated evaluation."""
    variants_dir, entries = browser_variants
    directory = run_dir(tmp_path / "ws", "run-1")
    shutil.copytree(variants_dir, directory / "variants")
    shutil.copy(int8_io_model, directory / "variants" / "int8_io.tflite")
    entries = [*entries, {"name": "int8_io", "technique": "none", "path": "int8_io.tflite"}]
    (directory / "variants" / "variants.json").write_text(json.dumps(entries))
    shutil.copytree(iris_data_dir, directory / "data")
    evaluation = evaluate_variants(
        directory / "variants", directory / "data", runs=20, warmup=5, measure_memory=False
    )
    write_json_atomic(directory / EVALUATION_FILE, evaluation)
    update_report(directory, "evaluation", evaluation)
    decision = decide(evaluation, {"min_accuracy": 0.5, "max_accuracy_drop": 1.0})
    update_report(directory, "gate", decision)
    return {"workspace": tmp_path / "ws", "dir": directory, "saved": iris_saved_model}


def _publish(run, variant):
    return publish_run(
        workspace=str(run["workspace"]),
        run_id="run-1",
        model_name="iris",
        chosen_variant=variant,
        chosen_path=str(run["dir"] / "variants" / f"{variant}.tflite"),
        saved_model_dir=str(run["saved"]),
        data_dir=str(run["dir"] / "data"),
    )


def test_evaluation_and_gate_say_which_variant_runs_in_the_browser(run):
    evaluation = json.loads((run["dir"] / EVALUATION_FILE).read_text())
    browser = {v["name"]: v["browser"] for v in evaluation["variants"]}
    assert {n for n, b in browser.items() if b["browser_ready"]} == {
        "float32",
        "float16",
        "dynamic_int8",
        "full_int8",
    }
    assert browser["int8_io"]["reasons"][0].startswith("input 0 is INT8")
    gate = json.loads((run["dir"] / "report.json").read_text())["gate"]["results"]
    assert gate["int8_io"]["browser_ready"] is False and gate["float32"]["browser_ready"] is True
    page = render_html(evaluation, decide(evaluation, {"min_accuracy": 0.5}))
    assert "in browser" in page and "NO: input 0 is INT8" in page and "not measured" in page


def test_release_carries_the_browser_copy_and_serve_web_opens_it(run, capsys):
    published = _publish(run, "full_int8")
    manifest = store_for(run["workspace"]).verify("iris")  # sha256 and size of every file
    assert manifest["files"][BROWSER_MODEL_FILE]["size"] > 0
    assert manifest["browser"] == {
        "file": BROWSER_MODEL_FILE,
        "browser_ready": True,
        "reasons": [],
        "input_dtypes": ["FLOAT32"],
        "output_dtypes": ["FLOAT32"],
    }
    version_dir = default_model_dir(str(run["workspace"]), None)
    assert str(version_dir) == published["model_dir"]
    x = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    np.testing.assert_array_equal(
        TFLiteModel(version_dir / BROWSER_MODEL_FILE).predict(x, batch_size=1),
        TFLiteModel(version_dir / "model.tflite").predict(x, batch_size=1),
    )
    with WebServer(version_dir, quiet=True) as server:
        (entry,) = server.models
    assert entry["browser_file"] == str(version_dir / BROWSER_MODEL_FILE)  # the signed copy
    assert entry["classes"] == ["setosa", "versicolor", "virginica"]
    assert entry["feature_columns"][0] == "sepal_length"


def test_release_of_an_int8_io_model_says_why_it_has_no_browser_copy(run):
    _publish(run, "int8_io")
    manifest = store_for(run["workspace"]).verify("iris")
    assert BROWSER_MODEL_FILE not in manifest["files"]
    assert manifest["browser"]["file"] is None and manifest["browser"]["browser_ready"] is False
    assert "LiteRT.js takes only FLOAT32, INT32, UINT8" in manifest["browser"]["reasons"][0]


@pytest.mark.usefixtures("browser_available")
def test_measured_browser_latency_goes_next_to_pythons(run, capsys):
    assert main(["serve-web", str(run["dir"] / "variants"), "--measure", "200"]) == 0
    printed = capsys.readouterr().out
    assert "float32: browser p50 " in printed and "; python p50 " in printed
    assert "int8_io" not in printed
    evaluation = json.loads((run["dir"] / EVALUATION_FILE).read_text())
    browser = {v["name"]: v["browser"] for v in evaluation["variants"]}
    assert browser["float32"]["latency_us"]["runs"] == 200
    assert "latency_us" not in browser["int8_io"]
    page = render_html(evaluation)
    p50, p95 = browser["float32"]["latency_us"]["p50"], browser["float32"]["latency_us"]["p95"]
    assert f"{p50:.1f} / {p95:.1f}" in page
