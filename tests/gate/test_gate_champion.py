"""Champion and challenger on real models: the published version is scored with LiteRT on the
same test rows, and a challenger worse than it is refused."""

from __future__ import annotations

import json

import pytest

from kfp_edge.gate.gate import GateFailed, run_gate
from kfp_edge.model_versions import MODEL_FILE, models_root
from kfp_edge.workspace import read_report, run_dir

# Every other service level wide open: only the champion comparison can refuse.
OPEN = {
    "min_accuracy": 0.0,
    "max_accuracy_drop": 1.0,
    "max_class_recall_drop": 1.0,
    "max_regression": 0.02,
}


@pytest.fixture(scope="module")
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


def _evaluate(path, data_dir, tmp_path):
    """A real LiteRT evaluation of one variant, written where the gate reads it."""
    from kfp_edge.evaluation.evaluate import evaluate_variants

    variants = tmp_path / "variants"
    variants.mkdir()
    (variants / "variants.json").write_text(json.dumps([{"name": "challenger", "path": path}]))
    evaluation = evaluate_variants(variants, data_dir, runs=200, warmup=10, measure_memory=False)
    out = tmp_path / "evaluation.json"
    out.write_text(json.dumps(evaluation))
    return out


def _publish(workspace, path, data_dir):
    from kfp_edge.model_store.store import ModelStore

    files = {MODEL_FILE: path, "dataset_manifest.json": str(data_dir / "manifest.json")}
    return ModelStore(models_root(workspace)).publish("iris", files, {})["version"]


def test_a_challenger_worse_than_the_published_model_is_refused(models, iris_data_dir, tmp_path):
    good, weak = models
    evaluation = _evaluate(weak, iris_data_dir, tmp_path)
    workspace = tmp_path / "ws"
    # Nothing published yet: the weak model passes the open service levels.
    first = run_gate(workspace, "r0", evaluation, OPEN, model_name="iris", data_dir=iris_data_dir)
    assert first["chosen"] == "challenger" and first["champion"] is None

    version = _publish(workspace, good, iris_data_dir)
    with pytest.raises(GateFailed, match=f"regresses .* against the champion v{version}"):
        run_gate(workspace, "r1", evaluation, OPEN, model_name="iris", data_dir=iris_data_dir)
    gate = read_report(run_dir(workspace, "r1"))["gate"]
    champion = gate["champion"]
    assert champion["version"] == version and champion["comparable"] is True
    assert champion["rows"] == 30 and champion["accuracy"] >= 0.9
    low, high = champion["accuracy_interval"]
    assert low < champion["accuracy"] <= high
    assert set(champion["per_class"]) == {"setosa", "versicolor", "virginica"}
    delta = gate["results"]["challenger"]["vs_champion"]["accuracy_delta"]
    assert delta < -0.02


def test_a_challenger_as_good_as_the_champion_passes(models, iris_data_dir, tmp_path):
    good, _ = models
    workspace = tmp_path / "ws"
    _publish(workspace, good, iris_data_dir)
    evaluation = _evaluate(good, iris_data_dir, tmp_path)
    decision = run_gate(workspace, "r1", evaluation, {}, model_name="iris", data_dir=iris_data_dir)
    assert decision["chosen"] == "challenger"
    vs = decision["results"]["challenger"]["vs_champion"]
    assert vs["accuracy_delta"] == 0.0 and set(vs["class_recall_deltas"].values()) == {0.0}
    # The HTML artifact shows the champion, the intervals and the per-class recalls.
    from kfp_edge.report_html import render_html

    page = render_html(json.loads(evaluation.read_text()), decision)
    assert "Champion: iris v1" in page and "recall vs champion" in page
    assert "accuracy [95 % interval]" in page and "setosa 1.00" in page
    assert "<td>challenger</td><td>+0.0000</td>" in page


def test_the_champion_must_be_scored_on_the_evaluated_rows(models, iris_data_dir, tmp_path):
    good, _ = models
    workspace = tmp_path / "ws"
    _publish(workspace, good, iris_data_dir)
    path = _evaluate(good, iris_data_dir, tmp_path)
    evaluation = json.loads(path.read_text())
    evaluation["rows"] = 31
    path.write_text(json.dumps(evaluation))
    with pytest.raises(ValueError, match="has 30 rows but the evaluation scored 31"):
        run_gate(workspace, "r1", path, {}, model_name="iris", data_dir=iris_data_dir)
