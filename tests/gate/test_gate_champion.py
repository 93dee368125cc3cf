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


@pytest.fixture
def evaluated(evaluate, iris_data_dir, tmp_path):
    """Evaluates one .tflite as the variant ``challenger``; returns its evaluation.json."""

    def run(path):
        out = tmp_path / "evaluation.json"
        out.write_text(json.dumps(evaluate(tmp_path, iris_data_dir, {"challenger": path})))
        return out

    return run


def _publish(workspace, path, data_dir):
    from kfp_edge.model_store.store import ModelStore

    files = {MODEL_FILE: path, "dataset_manifest.json": str(data_dir / "manifest.json")}
    return ModelStore(models_root(workspace)).publish("iris", files, {})["version"]


def test_a_challenger_worse_than_the_published_model_is_refused(
    models, evaluated, iris_data_dir, tmp_path
):
    good, weak = models
    evaluation = evaluated(weak)
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


def test_a_challenger_as_good_as_the_champion_passes(models, evaluated, iris_data_dir, tmp_path):
    good, _ = models
    workspace = tmp_path / "ws"
    _publish(workspace, good, iris_data_dir)
    evaluation = evaluated(good)
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


def test_the_champion_must_be_scored_on_the_evaluated_rows(
    models, evaluated, iris_data_dir, tmp_path
):
    good, _ = models
    workspace = tmp_path / "ws"
    _publish(workspace, good, iris_data_dir)
    path = evaluated(good)
    evaluation = json.loads(path.read_text())
    evaluation["rows"] = 31
    path.write_text(json.dumps(evaluation))
    with pytest.raises(ValueError, match="has 30 rows but the evaluation scored 31"):
        run_gate(workspace, "r1", path, {}, model_name="iris", data_dir=iris_data_dir)
