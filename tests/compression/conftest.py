"""Fixtures of the compression tests: a tiny real tf_keras model trained on Iris."""

from __future__ import annotations

import numpy as np
import pytest

from kfp_edge.dataset import load_split

# The options every technique is exported with in these tests: few rows, so more epochs and a
# larger learning rate than the defaults, and 50 % sparsity (a 4-16-3 model has 112 kernel
# weights; 80 % leaves too few to classify Iris).
TEST_OPTIONS = {
    "sparsity": 0.5,
    "clusters": 8,
    "fine_tune_epochs": 5,
    "learning_rate": 0.01,
    "batch_size": 16,
    "distill_epochs": 15,
    "distill_learning_rate": 0.02,
    "student_width": 8,
}


# Every technique once, and each quantization once (pruned_int8, clustered_int8 and distilled
# only combine the same steps differently; they are left out to keep the tests short).
TESTED_VARIANTS = [
    "float32",
    "float16",
    "dynamic_int8",
    "full_int8",
    "pruned",
    "clustered",
    "qat_int8",
    "distilled_int8",
    "pcqat_int8",
]


@pytest.fixture(scope="session")
def all_variants(iris_saved_model, iris_data_dir, tmp_path_factory):
    """The variants of :data:`TESTED_VARIANTS`, exported once: ``(out_dir, entries)``."""
    from kfp_edge.compression.export import export_variants

    out = tmp_path_factory.mktemp("variants")
    entries = export_variants(iris_saved_model, iris_data_dir, out, TESTED_VARIANTS, **TEST_OPTIONS)
    return out, entries


@pytest.fixture(scope="session")
def iris_test_split(iris_data_dir):
    x, y = load_split(iris_data_dir, "test")
    return x, np.asarray(y)
