"""Fixtures of the gate tests: real LiteRT models and their real evaluations."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="session")
def evaluate():
    """A real LiteRT evaluation (no reference, no memory) of ``{name: .tflite path}``."""
    return _evaluate


def _evaluate(tmp_path, data_dir, paths: dict, runs: int = 200) -> dict:
    from kfp_edge.evaluation.evaluate import evaluate_variants

    variants = tmp_path / f"variants-{len(list(tmp_path.glob('variants-*')))}"
    variants.mkdir()
    entries = [{"name": name, "path": str(path)} for name, path in paths.items()]
    (variants / "variants.json").write_text(json.dumps(entries))
    return evaluate_variants(variants, data_dir, runs=runs, warmup=10, measure_memory=False)


@pytest.fixture(scope="session")
def models(iris_saved_model, iris_data_dir, tmp_path_factory):
    """The trained Iris model as float32 .tflite, and a weak one: the same net untrained."""
    from kfp_edge.compression.export import export_variants
    from kfp_edge.dataset import load_split
    from kfp_edge.tf_env import import_tf
    from kfp_edge.tfjob_training.models import build_model

    out = tmp_path_factory.mktemp("champion")
    [good] = export_variants(iris_saved_model, iris_data_dir, out / "good", ["float32"])
    _, keras = import_tf()
    keras.utils.set_random_seed(7)
    x, _ = load_split(iris_data_dir, "train")
    weak = build_model("mlp", 4, 3, x.mean(0).tolist(), x.std(0).tolist(), width=16, depth=1)
    weak.save(str(out / "weak_sm"), save_format="tf")
    [weak] = export_variants(out / "weak_sm", iris_data_dir, out / "weak", ["float32"])
    return good["path"], weak["path"]
