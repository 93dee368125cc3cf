"""Fixtures of the evaluation tests: variants of the shared Iris model and a Flex model."""

from __future__ import annotations

import numpy as np
import pytest

from kfp_edge.dataset import load_split


@pytest.fixture(scope="session")
def eval_variants(iris_saved_model, iris_data_dir, tmp_path_factory):
    """float32 and full_int8 (int8 inputs and outputs) variants: ``(dir, entries)``."""
    from kfp_edge.compression.export import export_variants

    out = tmp_path_factory.mktemp("eval_variants")
    entries = export_variants(
        iris_saved_model, iris_data_dir, out, ["float32", "full_int8"], int8_io=True
    )
    return out, entries


@pytest.fixture(scope="session")
def flex_model(tmp_path_factory):
    """A [1, 4] -> [1, 1] model converted with SELECT_TF_OPS (a Flex MatrixDeterminant op)."""
    from kfp_edge.tf_env import import_tf

    tf, _ = import_tf()

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    def f(x):
        return tf.nn.softmax(tf.linalg.det(tf.reshape(x, [1, 2, 2]))[:, None])

    converter = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS,
        tf.lite.OpsSet.SELECT_TF_OPS,
    ]
    path = tmp_path_factory.mktemp("flex") / "flex.tflite"
    path.write_bytes(converter.convert())
    return path


@pytest.fixture(scope="session")
def eval_test_split(iris_data_dir):
    x, y = load_split(iris_data_dir, "test")
    return x, np.asarray(y)
