"""LiteRT evaluation on real converted models: predictions, quantized I/O, latency, memory,
the op check and the full evaluation with the SavedModel reference."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kfp_edge.classification import classification_report
from kfp_edge.evaluation.evaluate import evaluate_variants
from kfp_edge.litert import TFLiteModel, cold_start_us, op_check, peak_memory_bytes
from kfp_edge.model_versions import compress_for_shipping, gzip_file
from kfp_edge.report_html import render_html


def test_float32_model_computes_what_keras_computes(
    iris_saved_model, eval_variants, eval_test_split
):
    from kfp_edge.tf_env import load_keras_model

    out, _ = eval_variants
    x, _ = eval_test_split
    model = TFLiteModel(out / "float32.tflite", num_threads=1)
    assert (model.num_features, model.num_classes) == (4, 3)
    expected = load_keras_model(iris_saved_model).predict(x, verbose=0)
    np.testing.assert_allclose(model.predict(x, batch_size=7), expected, atol=1e-5)
    with pytest.raises(ValueError, match=r"float32.tflite: the model takes \[rows, 4\]"):
        model.predict(x[:, :3])


def test_int8_io_model_gets_quantized_inputs(eval_variants, eval_test_split):
    out, _ = eval_variants
    x, y = eval_test_split
    model = TFLiteModel(out / "full_int8.tflite")
    assert model.input_dtype == np.int8 and model.output_dtype == np.int8
    q = model.quantize_input(x)
    assert q.dtype == np.int8
    scale, zero = model.input_quantization
    np.testing.assert_allclose((q.astype(np.float32) - zero) * scale, x, atol=scale)
    probabilities = model.predict(x)
    assert probabilities.dtype == np.float32
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=0.05)
    assert (probabilities.argmax(1) == y).mean() >= 0.85


def test_latency_throughput_and_peak_memory(eval_variants, eval_test_split):
    out, _ = eval_variants
    x, _ = eval_test_split
    model = TFLiteModel(out / "float32.tflite")
    measured = model.measure_latency(x, runs=1000, warmup=50)
    latency, invoke = measured["latency_us"], measured["invoke_latency_us"]
    assert latency["runs"] == 1000 and latency["num_threads"] == 1
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"]
    # invoke alone is part of set + invoke + get, call by call.
    assert 0 < invoke["p50"] < latency["p50"] and invoke["p95"] < latency["p95"]
    assert 0 <= latency["p50_noise"] < latency["p50"]
    assert cold_start_us(out / "float32.tflite") > invoke["p50"]
    assert model.throughput_rows_per_s(x, batch_size=64, min_seconds=0.05) > 0
    peak = peak_memory_bytes(out / "float32.tflite", num_threads=1, batch_size=64)
    assert peak is not None and 0 < peak < 200 * 2**20


def test_op_check_flags_select_tf_ops(eval_variants, flex_model):
    out, _ = eval_variants
    builtin = op_check(out / "full_int8.tflite")
    assert builtin["ops_ok"] and "FULLY_CONNECTED" in builtin["ops"]
    assert builtin["select_tf_ops"] == []
    flex = op_check(flex_model)
    assert not flex["ops_ok"]
    assert flex["select_tf_ops"] == ["FlexMatrixDeterminant"]
    with pytest.raises(ValueError, match="not a loadable .tflite model"):
        TFLiteModel(flex_model)


def test_classification_report_on_hand_made_predictions():
    y = np.array([0, 0, 1, 1, 2, 2])
    probabilities = np.eye(3)[[0, 1, 1, 1, 2, 0]]
    report = classification_report(y, probabilities, ["a", "b", "c"])
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert report["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert report["per_class"]["b"]["recall"] == 1.0
    assert report["per_class"]["c"]["recall"] == 0.5
    low, high = report["accuracy_interval"]
    assert (round(low, 3), round(high, 3)) == (0.3, 0.903)  # Wilson, 4 of 6
    with pytest.raises(ValueError, match="do not fit 6 labels and 2 classes"):
        classification_report(y, probabilities, ["a", "b"])


def test_evaluate_variants_with_reference_and_unrunnable(
    iris_saved_model, eval_variants, flex_model, iris_data_dir, tmp_path
):
    import shutil

    src, entries = eval_variants
    out = tmp_path / "variants"
    shutil.copytree(src, out)
    shutil.copy(flex_model, out / "flex.tflite")
    entries = [{**e, "path": str(out / f"{e['name']}.tflite")} for e in entries]
    entries.append({"name": "flex", "path": "flex.tflite", "technique": "hand-made"})
    (out / "variants.json").write_text(json.dumps(entries))

    evaluation = evaluate_variants(out, iris_data_dir, iris_saved_model, runs=1000, warmup=50)
    assert evaluation["rows"] == 30 and evaluation["split"] == "test"
    assert evaluation["classes"] == ["setosa", "versicolor", "virginica"]
    reference = evaluation["reference"]
    assert reference["accuracy"] >= 0.9 and reference["latency_us"]["runs"] == 1000
    assert reference["size_bytes"] > 0 and reference["peak_memory_bytes"] > 0
    names = [v["name"] for v in evaluation["variants"]]
    assert names == ["float32", "full_int8"]
    for v in evaluation["variants"]:
        assert v["accuracy"] >= reference["accuracy"] - 0.1
        assert sum(map(sum, v["confusion_matrix"])) == 30
        assert set(v["per_class"]) == set(evaluation["classes"])
        assert v["latency_us"]["runs"] == 1000
        assert v["gzip_bytes"] < v["size_bytes"]
        assert v["shipped_bytes"] == len(compress_for_shipping(Path(v["path"]).read_bytes()))
        assert v["invoke_latency_us"]["p50"] < v["latency_us"]["p50"] < v["cold_start_us"]
        low, high = v["accuracy_interval"]
        assert low < v["accuracy"] <= high
        assert v["peak_memory_bytes"] > 0 and v["throughput_rows_per_s"] > 0
        assert v["ops_ok"] is True and v["select_tf_ops"] == []
    float32 = evaluation["variants"][0]
    assert float32["accuracy"] == pytest.approx(reference["accuracy"])
    assert evaluation["variants"][1]["input_dtype"] == "int8"
    # LiteRT beats the Keras model in graph mode (tf.function) on a single sample.
    assert reference["runtime"] == "tf_keras tf.function(model)"
    assert float32["latency_us"]["p50"] < reference["latency_us"]["p50"]
    [flex] = evaluation["unrunnable"]
    assert flex["name"] == "flex" and flex["select_tf_ops"] == ["FlexMatrixDeterminant"]

    page = render_html(evaluation)
    assert page.count("<svg") == 2
    for name in ("saved_model (reference)", "float32", "full_int8"):
        assert name in page


def test_missing_inputs_are_named(eval_variants, iris_data_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="no variants list"):
        evaluate_variants(tmp_path, iris_data_dir)
    (tmp_path / "variants.json").write_text(json.dumps([{"name": "gone", "path": "gone.tflite"}]))
    with pytest.raises(FileNotFoundError, match="variant 'gone'"):
        evaluate_variants(tmp_path, iris_data_dir)


def test_litert_module_runs_without_tensorflow(eval_variants, eval_test_split, tmp_path):
    out, _ = eval_variants
    x, _ = eval_test_split
    np.save(tmp_path / "x.npy", x)
    code = (
        "import sys, numpy as np\n"
        "from kfp_edge.litert import TFLiteModel\n"
        f"m = TFLiteModel({str(out / 'full_int8.tflite')!r})\n"
        f"p = m.predict(np.load({str(tmp_path / 'x.npy')!r}))\n"
        "assert p.shape == (30, 3), p.shape\n"
        "assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_shipped_form_is_deterministic_gzip_that_round_trips(eval_variants):
    from kfp_edge.model_versions import decompress_shipped, shipped_bytes

    out, _ = eval_variants
    raw = (out / "float32.tflite").read_bytes()
    shipped = compress_for_shipping(raw)
    assert shipped == compress_for_shipping(raw)  # no timestamp: the same bytes every time
    assert shipped[:2] == b"\x1f\x8b" and decompress_shipped(shipped) == raw
    assert shipped_bytes(out / "float32.tflite") == len(shipped) < len(raw)
    # the store's streamed gzip writes exactly these bytes: what the gate measured ships
    gzip_file(out / "float32.tflite", out / "float32.tflite.gz")
    assert (out / "float32.tflite.gz").read_bytes() == shipped
