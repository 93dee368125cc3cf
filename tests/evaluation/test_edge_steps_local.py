"""CompressionOp -> EvaluationOp -> GateOp as kfp tasks, run by kfp.local's SubprocessRunner
on a real trained model; then a gate that nothing passes fails the step after recording why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kfp_edge.workspace import read_report, run_dir


def test_compression_evaluation_and_gate_run_as_kfp_tasks(
    iris_saved_model, iris_data_dir, tmp_path
):
    from kfp import local

    from kfp_edge.compression.component import CompressionOp
    from kfp_edge.evaluation.component import EvaluationOp
    from kfp_edge.gate.component import GateOp
    from kfp_edge.litert import TFLiteModel

    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "kfp-local"),
        raise_on_error=True,
    )
    workspace = tmp_path / "ws"
    compression = CompressionOp(
        workspace=str(workspace),
        run_id="r1",
        saved_model_dir=str(iris_saved_model),
        data_dir=str(iris_data_dir),
        variants=["float32", "full_int8"],
    )
    variants_dir = Path(compression.outputs["variants_dir"])
    assert variants_dir == run_dir(workspace, "r1") / "variants"
    assert sorted(p.name for p in variants_dir.iterdir()) == [
        "float32.tflite",
        "float32.variant.json",
        "full_int8.tflite",
        "full_int8.variant.json",
        "variants.json",
    ]

    evaluation = EvaluationOp(
        workspace=str(workspace),
        run_id="r1",
        variants_dir=str(variants_dir),
        data_dir=str(iris_data_dir),
        saved_model_dir=str(iris_saved_model),
        runs=1000,
        warmup=50,
    )
    evaluation_path = Path(evaluation.outputs["evaluation_path"])
    figures = json.loads(evaluation_path.read_text())
    assert [v["name"] for v in figures["variants"]] == ["float32", "full_int8"]
    metrics = evaluation.outputs["metrics"].metadata
    assert metrics["full_int8_accuracy"] == figures["variants"][1]["accuracy"]
    assert metrics["saved_model_latency_p50_us"] > metrics["float32_latency_p50_us"] > 0
    page = Path(evaluation.outputs["report"].path).read_text()
    assert "<svg" in page and "full_int8" in page

    # A published version, the champion every variant is compared with on the same rows.
    from kfp_edge.model_store.store import ModelStore
    from kfp_edge.model_versions import models_root

    ModelStore(models_root(workspace)).publish(
        "edge", {"model.tflite": variants_dir / "float32.tflite"}, {}
    )
    gate = GateOp(
        workspace=str(workspace),
        run_id="r1",
        evaluation_path=str(evaluation_path),
        model_name="edge",
        data_dir=str(iris_data_dir),
        min_accuracy=0.85,
        max_accuracy_drop=0.1,
    )
    chosen = gate.outputs["chosen_variant"]
    assert chosen in {"float32", "full_int8"}
    assert TFLiteModel(gate.outputs["chosen_path"]).num_features == 4
    confusion = gate.outputs["confusion"].metadata["confusionMatrix"]
    assert confusion["annotationSpecs"] == [
        {"displayName": c} for c in ("setosa", "versicolor", "virginica")
    ]
    comparison = gate.outputs["comparison"].metadata
    assert comparison["champion_version"] == 1.0
    assert comparison["champion_accuracy"] == figures["variants"][0]["accuracy"]
    assert comparison["chosen_accuracy_low"] <= comparison["chosen_accuracy"]
    assert {"chosen_recall_setosa", "champion_recall_setosa"} <= set(comparison)
    report = read_report(run_dir(workspace, "r1"))
    assert {"compression", "evaluation", "gate"} <= set(report)
    assert report["gate"]["chosen"] == chosen

    with pytest.raises(RuntimeError):
        GateOp(
            workspace=str(workspace),
            run_id="r1",
            evaluation_path=str(evaluation_path),
            data_dir=str(iris_data_dir),
            max_size_bytes=100,
        )
    gate_section = read_report(run_dir(workspace, "r1"))["gate"]
    assert gate_section["chosen"] is None
    assert all(
        "max_size_bytes 100 B" in " ".join(m["reasons"]) for m in gate_section["nearest_misses"]
    )
