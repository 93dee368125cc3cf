"""Compression on a tiny real model: every technique converts, loads in LiteRT and keeps its
accuracy; int8 I/O, sparsity and clustering are checked in the .tflite files themselves."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kfp_edge.compression.export import VARIANTS, export_variants
from kfp_edge.litert import TFLiteModel, op_check
from kfp_edge.variants import read_variants

# Stated bound: on Iris's 30 test rows, no variant may lose more than 3 rows (0.1) against
# the float32 TFLite model of the same SavedModel.
ACCURACY_BOUND = 0.1


def _accuracy(path, x, y):
    return float((TFLiteModel(path).predict(x).argmax(1) == y).mean())


def _weight_tensors(path):
    """The 2-D constant weight tensors (the Dense kernels) of a .tflite file, as float."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    inputs = {d["index"] for d in interpreter.get_input_details()}
    kernels = []
    for detail in interpreter.get_tensor_details():
        if len(detail["shape"]) != 2 or detail["index"] in inputs or detail["shape"][0] <= 1:
            continue
        try:
            value = interpreter.get_tensor(detail["index"])
        except ValueError:
            continue
        scale, zero = detail["quantization"]
        value = value.astype(np.float32)
        if scale:
            value = (value - zero) * scale
        kernels.append(value)
    return kernels


def test_every_variant_converts_loads_and_keeps_accuracy(all_variants, iris_test_split):
    out, entries = all_variants
    x, y = iris_test_split
    names = [e["name"] for e in entries]
    # Every technique and every quantization of the registry is among the tested variants.
    assert {VARIANTS[n][0] for n in names} == {v[0] for v in VARIANTS.values()}
    assert {VARIANTS[n][1] for n in names} == {v[1] for v in VARIANTS.values()}
    assert read_variants(out) == json.loads((out / "variants.json").read_text())
    reference = _accuracy(out / "float32.tflite", x, y)
    assert reference >= 0.9
    for entry in entries:
        assert (out / f"{entry['name']}.tflite").exists()
        assert op_check(entry["path"])["ops_ok"], entry["name"]
        accuracy = _accuracy(entry["path"], x, y)
        assert accuracy >= reference - ACCURACY_BOUND, (entry["name"], accuracy, reference)


def test_float_variants_match_the_keras_model(all_variants, iris_saved_model, iris_test_split):
    from kfp_edge.tf_env import load_keras_model

    out, _ = all_variants
    x, _ = iris_test_split
    expected = load_keras_model(iris_saved_model).predict(x, verbose=0)
    np.testing.assert_allclose(TFLiteModel(out / "float32.tflite").predict(x), expected, atol=1e-5)
    np.testing.assert_allclose(TFLiteModel(out / "float16.tflite").predict(x), expected, atol=2e-2)


def _weight_dtypes(path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    return {
        np.dtype(d["dtype"]).name
        for d in interpreter.get_tensor_details()
        if len(d["shape"]) == 2 and d["shape"][0] > 1
    }


def test_quantized_variants_hold_quantized_weights(all_variants):
    # On a model of a few KB the files do not shrink (the added quantize ops weigh more than
    # the saved weight bytes), so the tensors' types are checked instead of the sizes.
    out, entries = all_variants
    sizes = {e["name"]: e["params"]["size_bytes"] for e in entries}
    assert "float16" in _weight_dtypes(out / "float16.tflite")
    assert "float16" not in _weight_dtypes(out / "float32.tflite")
    # dynamic_int8 is not checked here: the converter's dynamic-range quantization leaves
    # tensors under 1024 elements in float, and this model has none larger (the benchmark's
    # sensor model has).
    for name in ("full_int8", "qat_int8", "pcqat_int8", "distilled_int8"):
        assert "int8" in _weight_dtypes(out / f"{name}.tflite"), name
        ops = op_check(out / f"{name}.tflite")["ops"]
        assert "QUANTIZE" in ops, (name, ops)
    # The student of distillation is really smaller than its teacher.
    distilled = next(e for e in entries if e["name"] == "distilled_int8")["params"]
    assert distilled["student_params"] < distilled["teacher_params"]
    assert sizes["distilled_int8"] < sizes["full_int8"]


def test_pruned_models_have_the_asked_sparsity_after_stripping(all_variants):
    out, entries = all_variants
    params = next(e for e in entries if e["name"] == "pruned")["params"]
    assert params["sparsity"] == pytest.approx(0.5, abs=0.01)
    kernels = _weight_tensors(out / "pruned.tflite")
    assert kernels, "no weight tensors found in pruned.tflite"
    zeros = sum(int((k == 0).sum()) for k in kernels)
    total = sum(k.size for k in kernels)
    assert zeros / total == pytest.approx(0.5, abs=0.01)
    float_kernels = _weight_tensors(out / "float32.tflite")
    assert sum(int((k == 0).sum()) for k in float_kernels) < 0.05 * total
    gz = {e["name"]: e["params"]["gzip_bytes"] for e in entries}
    assert gz["pruned"] < gz["float32"]
    # PCQAT keeps the zeros through clustering and QAT.
    pcqat = next(e for e in entries if e["name"] == "pcqat_int8")["params"]
    assert pcqat["sparsity_after_clustering"] == pytest.approx(0.5, abs=0.01)


def test_clustered_models_have_at_most_the_asked_distinct_weights(all_variants):
    out, _ = all_variants
    kernels = _weight_tensors(out / "clustered.tflite")
    clustered = [k for k in kernels if k.size >= 16]
    assert clustered
    for kernel in clustered:
        assert len(np.unique(kernel)) <= 8


def test_full_int8_takes_int8_inputs_when_asked(
    iris_saved_model, iris_data_dir, tmp_path, iris_test_split
):
    from ai_edge_litert.interpreter import Interpreter

    x, y = iris_test_split
    entries = export_variants(
        iris_saved_model, iris_data_dir, tmp_path, ["full_int8", "dynamic_int8"], int8_io=True
    )
    assert entries[0]["params"]["int8_io"] is True
    assert entries[1]["params"]["int8_io"] is False  # only full-integer variants get int8 I/O
    interpreter = Interpreter(model_path=str(tmp_path / "full_int8.tflite"))
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    assert inp["dtype"] == np.int8 and out["dtype"] == np.int8
    assert inp["quantization"][0] > 0
    with pytest.raises(ValueError):
        interpreter.set_tensor(inp["index"], x[:1])  # float32 is refused
    model = TFLiteModel(tmp_path / "full_int8.tflite")
    assert (model.predict(x).argmax(1) == y).mean() >= 0.85
    default = TFLiteModel(
        export_variants(iris_saved_model, iris_data_dir, tmp_path / "f", ["full_int8"])[0]["path"]
    )
    assert default.input_dtype == np.float32


def test_bad_requests_name_the_problem(iris_saved_model, iris_data_dir, tmp_path):
    with pytest.raises(ValueError, match="unknown variant 'int4'"):
        export_variants(iris_saved_model, iris_data_dir, tmp_path, ["float32", "int4"])
    with pytest.raises(ValueError, match="sparsity"):
        export_variants(iris_saved_model, iris_data_dir, tmp_path, ["pruned"], sparsity=1.5)
    with pytest.raises(ValueError, match="unknown compression option 'sparsty'"):
        export_variants(iris_saved_model, iris_data_dir, tmp_path, ["pruned"], sparsty=0.5)
    with pytest.raises(FileNotFoundError, match="no saved_model.pb"):
        export_variants(tmp_path / "missing", iris_data_dir, tmp_path, ["float32"])
    assert not list(tmp_path.glob("*.tflite"))


def test_a_model_that_does_not_fit_the_dataset_is_refused(iris_data_dir, tmp_path):
    from kfp_edge.tf_env import import_tf

    _, keras = import_tf()
    model = keras.Sequential([keras.Input(shape=(5,)), keras.layers.Dense(3, activation="softmax")])
    model.save(str(tmp_path / "sm"), save_format="tf")
    with pytest.raises(ValueError, match="takes 5 features but the dataset"):
        export_variants(tmp_path / "sm", iris_data_dir, tmp_path / "out", ["float32"])


def _max_scales_of_a_weight_tensor(path):
    """The largest number of quantization scales of one int8 constant tensor of a model."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    return max(
        len(d["quantization_parameters"]["scales"])
        for d in interpreter.get_tensor_details()
        if d["dtype"] == np.int8 and len(d["shape"]) >= 2
    )


def test_full_int8_keeps_features_of_very_different_scales(tmp_path):
    """One int8 scale for the raw input would erase a 0.01-range feature next to a 1000-range
    one; full_int8 keeps the standardization in float, so the small feature still decides."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from conftest import write_dataset

    from kfp_edge.dataset import load_split
    from kfp_edge.tf_env import import_tf
    from kfp_edge.tfjob_training.models import build_model

    rng = np.random.default_rng(0)
    n = 600
    y = rng.integers(0, 2, n)
    small = (y * 0.02 + rng.normal(0, 0.003, n)).astype(np.float32)  # decides the class
    large = rng.normal(500, 300, n).astype(np.float32)  # pure noise of large range
    x = np.stack([small, large], axis=1)
    data = write_dataset(
        tmp_path / "data",
        {
            "train": (x[:400], y[:400]),
            "validation": (x[400:500], y[400:500]),
            "test": (x[500:], y[500:]),
        },
        ["small", "large"],
        ["a", "b"],
    )
    tf, keras = import_tf()
    keras.utils.set_random_seed(0)
    model = build_model(
        "mlp", 2, 2, x[:400].mean(0).tolist(), x[:400].std(0).tolist(), width=8, depth=1
    )
    model.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy")
    model.fit(x[:400], y[:400], epochs=15, batch_size=32, verbose=0)
    model.save(str(tmp_path / "sm"), save_format="tf", include_optimizer=False)
    [entry] = export_variants(tmp_path / "sm", data, tmp_path / "v", ["full_int8"])
    x_test, y_test = load_split(data, "test")
    keras_accuracy = float((model.predict(x_test, verbose=0).argmax(1) == y_test).mean())
    assert keras_accuracy >= 0.95
    assert _accuracy(entry["path"], x_test, y_test) >= keras_accuracy - 0.02
    # The scenario discriminates: with int8 inputs (one scale for both raw features) the small
    # feature is lost, which is why int8_io is an option and not the default.
    [int8_io] = export_variants(tmp_path / "sm", data, tmp_path / "io", ["full_int8"], int8_io=True)
    assert _accuracy(int8_io["path"], x_test, y_test) <= 0.75


def test_tasks_writing_one_directory_lose_no_variant(iris_saved_model, iris_data_dir, tmp_path):
    """Two compression tasks (as under dsl.ParallelFor) export into the same directory."""
    export_variants(iris_saved_model, iris_data_dir, tmp_path, ["float16"])
    export_variants(iris_saved_model, iris_data_dir, tmp_path, ["float32"])
    assert [e["name"] for e in json.loads((tmp_path / "variants.json").read_text())] == ["float32"]
    assert [e["name"] for e in read_variants(tmp_path)] == ["float32", "float16"]
    with pytest.raises(FileNotFoundError, match="no variants list"):
        read_variants(tmp_path / "empty")


def test_qat_and_pcqat_on_the_registry_cnn(iris_data_dir, tmp_path, iris_test_split):
    """cnn1d has Conv1D (no tfmot 8-bit config: trained in float, quantized by the converter)
    and, after 80 % pruning, kernels with fewer non-zero weights than k-means++ needs."""
    from kfp_edge.dataset import load_split
    from kfp_edge.tf_env import import_tf
    from kfp_edge.tfjob_training.models import build_model

    _, keras = import_tf()
    keras.utils.set_random_seed(3)
    x, y = load_split(iris_data_dir, "train")
    model = build_model("cnn1d", 4, 3, x.mean(0).tolist(), x.std(0).tolist())
    model.compile(keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=40, batch_size=16, verbose=0)
    model.save(str(tmp_path / "sm"), save_format="tf", include_optimizer=False)
    x_test, y_test = iris_test_split
    keras_accuracy = float((model.predict(x_test, verbose=0).argmax(1) == y_test).mean())
    entries = export_variants(
        tmp_path / "sm",
        iris_data_dir,
        tmp_path / "v",
        ["qat_int8", "pcqat_int8"],
        fine_tune_epochs=3,
        learning_rate=0.01,
        batch_size=16,
    )
    for entry in entries:
        assert _accuracy(entry["path"], x_test, y_test) >= keras_accuracy - 0.15, entry["name"]
        assert "CONV_2D" in op_check(entry["path"])["ops"]
        # A convolution model gets one int8 weight scale per output channel by default.
        assert entry["params"]["per_channel"] is True
        assert _max_scales_of_a_weight_tensor(entry["path"]) > 1
    [dense] = export_variants(
        tmp_path / "sm", iris_data_dir, tmp_path / "t", ["full_int8"], int8_scales="per_tensor"
    )
    assert dense["params"]["per_channel"] is False
    assert _max_scales_of_a_weight_tensor(dense["path"]) == 1


def test_a_damaged_training_shard_is_named(iris_saved_model, iris_data_dir, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(iris_data_dir, data)
    shard = data / "train" / "part-00001.tfrecord"
    shard.write_bytes(shard.read_bytes()[:-7])  # cut inside the last record
    with pytest.raises(ValueError, match="part-00001.tfrecord: unreadable training shard"):
        export_variants(
            iris_saved_model, data, tmp_path / "out", ["full_int8"], representative_samples=1000
        )
    assert not (tmp_path / "out" / "full_int8.tflite").exists()
