"""The technique and conversion registries: pre- and post-validation, the teacher's logits,
and the random calibration sample."""

from __future__ import annotations

import numpy as np
import pytest

from kfp_edge.compression.conversions import CONVERSIONS, FullInt8
from kfp_edge.compression.export import VARIANTS, export_variants, representative_features
from kfp_edge.compression.optimize import logits_model
from kfp_edge.compression.techniques import TECHNIQUES


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_every_variant_names_a_registered_technique_and_conversion():
    assert {t for t, _ in VARIANTS.values()} == set(TECHNIQUES)
    assert {c for _, c in VARIANTS.values()} == set(CONVERSIONS)


def test_distillation_reads_the_teachers_logits_before_the_softmax():
    """Logits of 0, -20 and -30 give probabilities below the old 1e-7 clip for two classes;
    log(clip(p)) made them equal, and the soft targets at T=4 lost their order."""
    from kfp_edge.tf_env import import_tf

    _, keras = import_tf()
    teacher = keras.Sequential([keras.Input(shape=(1,)), keras.layers.Dense(3, "softmax")])
    teacher.layers[-1].set_weights([np.zeros((1, 3), np.float32), np.array([0, -20, -30], "f")])
    x = np.zeros((2, 1), np.float32)
    logits = logits_model(teacher).predict(x, verbose=0)
    np.testing.assert_allclose(logits, [[0, -20, -30]] * 2, atol=1e-5)
    np.testing.assert_allclose(_softmax(logits), teacher.predict(x, verbose=0), atol=1e-6)
    soft = _softmax(logits / 4.0)[0]
    clipped = _softmax(np.log(np.clip(teacher.predict(x, verbose=0), 1e-7, 1)) / 4.0)[0]
    assert soft[1] > 10 * soft[2]  # the teacher's ranking of the wrong classes survives
    assert clipped[1] == pytest.approx(clipped[2])  # ... which the clip had erased

    linear = keras.Sequential([keras.Input(shape=(1,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="distillation needs a softmax output layer"):
        logits_model(linear)


def test_a_technique_is_refused_before_any_training_and_checked_after(
    iris_saved_model, iris_data_dir, tmp_path
):
    from kfp_edge.tf_env import import_tf

    _, keras = import_tf()
    linear = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(3, name="out")])
    linear.save(str(tmp_path / "linear"), save_format="tf")
    with pytest.raises(ValueError, match="model .* distillation needs a softmax output layer"):
        export_variants(tmp_path / "linear", iris_data_dir, tmp_path / "a", ["distilled"])
    weightless = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Softmax()])
    weightless.save(str(tmp_path / "weightless"), save_format="tf")
    with pytest.raises(ValueError, match="prune needs weight layers"):
        export_variants(tmp_path / "weightless", iris_data_dir, tmp_path / "a", ["pruned"])
    # A "student" wider than the 4-16-3 teacher is no compression: post-validation says so.
    with pytest.raises(ValueError, match="distill: the student has .* not fewer than"):
        export_variants(
            iris_saved_model,
            iris_data_dir,
            tmp_path / "b",
            ["distilled"],
            student_width=64,
            distill_epochs=1,
        )
    assert not list((tmp_path / "b").glob("*.tflite"))


def test_a_conversion_that_does_not_answer_like_keras_is_refused(iris_saved_model, iris_data_dir):
    from kfp_edge.dataset import load_split
    from kfp_edge.tf_env import load_keras_model

    model = load_keras_model(iris_saved_model)
    x, _ = load_split(iris_data_dir, "test")
    float32 = CONVERSIONS["float32"]
    content = float32.convert(model, {})
    float32.validate(content, model, x)  # the model's own flatbuffer passes
    other = load_keras_model(iris_saved_model)
    other.layers[-1].set_weights([w * 0 for w in other.layers[-1].get_weights()])
    with pytest.raises(ValueError, match="float32: the converted model differs from Keras"):
        float32.validate(content, other, x)
    with pytest.raises(ValueError, match="full_int8 needs calibration rows"):
        CONVERSIONS["full_int8"].check(model, {})
    assert FullInt8.per_channel(model, {"int8_scales": "auto"}) is False  # dense: per tensor
    assert FullInt8.per_channel(model, {"int8_scales": "per_channel"}) is True


def test_calibration_rows_are_a_seeded_random_sample_of_every_shard(iris_data_dir):
    from kfp_edge.dataset import load_split

    x, _ = load_split(iris_data_dir, "train")  # the training rows, shard 0 then shard 1
    first = representative_features(iris_data_dir, 20, seed=0)
    assert first.shape == (20, 4)
    np.testing.assert_array_equal(first, representative_features(iris_data_dir, 20, seed=0))
    assert not np.array_equal(first, representative_features(iris_data_dir, 20, seed=1))
    positions = sorted(int(np.flatnonzero((x == row).all(axis=1))[0]) for row in first)
    assert positions[0] < 45 <= positions[-1]  # both shards (45 rows each) contribute
    assert positions != list(range(10)) + list(range(45, 55))  # not the first rows of each
    assert positions[-1] > 55 and max(np.diff(positions)) > 1
    assert len(representative_features(iris_data_dir, 1000)) == len(x)  # all, when fewer


def test_post_validation_catches_a_technique_that_did_not_do_its_job(iris_saved_model):
    from kfp_edge.tf_env import load_keras_model

    unclustered = load_keras_model(iris_saved_model)  # the float model: 64 distinct weights
    with pytest.raises(ValueError, match="cluster: layer .* distinct weights, more than 8"):
        TECHNIQUES["cluster"].validate(unclustered, {"clusters": 8}, {})
    with pytest.raises(ValueError, match="prune: reached sparsity 0.500, target 0.800"):
        TECHNIQUES["prune"].validate(unclustered, {"sparsity": 0.5, "target_sparsity": 0.8}, {})
