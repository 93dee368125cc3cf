"""One real end-to-end local run of the edge pipeline on Iris (kfp.local SubprocessRunner)."""

import json

import numpy as np
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def result(edge_cli_run):
    """The run of ``kfp-edge run --dataset iris --workers 2`` with a forest and a search.

    See ``edge_cli_run`` in tests/conftest.py.
    """
    return edge_cli_run[2]


def test_run_publishes_a_model(result):
    assert result["error"] is None
    assert result["published"], result
    report = result["report"]
    assert set(report) >= {"run", "etl", "training", "compression", "evaluation", "gate", "publish"}
    assert report["etl"]["rows_good"] == 150 and report["etl"]["rows_bad"] == 0
    assert report["gate"]["chosen"] == report["publish"]["variant"]
    names = {v["name"] for v in report["evaluation"]["variants"]}
    assert {"float32", "dynamic_int8", "full_int8", "random_forest_10x4"} <= names


def test_the_gate_chooses_across_model_families(result):
    report = result["report"]
    forest = next(v for v in report["evaluation"]["variants"] if v["name"] == "random_forest_10x4")
    assert forest["technique"] == "random_forest" and forest["accuracy"] >= 0.9
    assert "random_forest_10x4" in report["gate"]["results"]
    assert report["forest_export"]["candidates"][0]["params"]["max_abs_diff_vs_spark"] <= 1e-5


def test_the_search_trained_trials_and_its_best_went_on(result):
    search = result["report"]["training"]["search"]
    assert [t["assignment"]["learning_rate"] for t in search["trials"]] == [0.04, 0.02]
    assert all(t["status"] == "succeeded" for t in search["trials"])
    best = next(t for t in search["trials"] if t["name"] == search["best"])
    assert best["objective"] == max(t["objective"] for t in search["trials"])
    assert result["report"]["training"]["validation"]["accuracy"] == best["validation_accuracy"]


def test_published_model_loads_in_litert_and_is_accurate(result):
    from pathlib import Path

    from ai_edge_litert.interpreter import Interpreter

    from kfp_edge.dataset import load_split

    model_dir = Path(result["model_dir"])
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["version"] == result["report"]["publish"]["version"]
    interpreter = Interpreter(model_path=str(model_dir / "model.tflite"), num_threads=1)
    x, y = load_split(Path(result["run_dir"]) / "data", "test")
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(inp["index"], [1, x.shape[1]])
    interpreter.allocate_tensors()
    predictions = []
    for row in x:
        value = row[None, :]
        if inp["dtype"] != np.float32:  # full-integer model with integer input
            scale, zero = inp["quantization"]
            value = np.round(value / scale + zero).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], value)
        interpreter.invoke()
        predictions.append(int(np.argmax(interpreter.get_tensor(out["index"])[0])))
    accuracy = float(np.mean(np.array(predictions) == y))
    assert accuracy >= 0.9, accuracy


def test_report_file_on_the_workspace(result):
    from pathlib import Path

    report = json.loads((Path(result["run_dir"]) / "report.json").read_text())
    assert report["publish"]["model_name"] == "edge-model"
    assert report["run"]["parameters"]["training_engine"] == "local"


def test_every_browser_ready_variant_of_the_run_runs_in_chromium(result):
    """The run's variants in headless Chromium (LiteRT.js) against ai_edge_litert.

    Skipped without Chromium and the web client's npm packages, except in CI (.ci/run
    installs them), where it fails.
    """
    import os
    from pathlib import Path

    from kfp_edge.app.browser_run import browser_missing, run_in_browser
    from kfp_edge.app.serve_web import WebServer
    from kfp_edge.dataset import load_split
    from kfp_edge.litert import TFLiteModel

    missing = browser_missing()
    if missing and os.environ.get("CI") == "true":
        pytest.fail(missing)
    if missing:
        pytest.skip(missing)
    run_dir = Path(result["run_dir"])
    variants = result["report"]["evaluation"]["variants"]
    ready = {v["name"] for v in variants if v["browser"]["browser_ready"]}
    manifest = json.loads((Path(result["model_dir"]) / "manifest.json").read_text())
    assert (manifest["browser"]["file"] == "model.browser.tflite") == (manifest["variant"] in ready)
    x, _ = load_split(run_dir / "data", "test")
    with WebServer(run_dir / "variants", quiet=True) as server:
        out = run_in_browser(server.url, {"rows": x.tolist(), "runs": 200, "warmup": 50})
    results = {r["name"]: np.asarray(r["outputs"]) for r in out["results"]}
    assert ready and set(results) == ready
    for name, got in results.items():
        expected = TFLiteModel(run_dir / "variants" / f"{name}.tflite").predict(x, batch_size=1)
        np.testing.assert_array_equal(got.argmax(1), expected.argmax(1), err_msg=name)
        assert np.abs(got - expected).max() <= 1e-5, name
