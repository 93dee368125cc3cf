"""The gate's choice on hand-made figures: service levels, ranking, the no-pass case."""

from __future__ import annotations

import json

import pytest

from kfp_edge.gate.gate import DEFAULT_SLO, GateFailed, decide, run_gate
from kfp_edge.workspace import read_report, run_dir


def _variant(name, accuracy, size, p50, p95=None, ops_ok=True):
    return {
        "name": name,
        "path": f"/v/{name}.tflite",
        "accuracy": accuracy,
        "size_bytes": size * 3,
        "shipped_bytes": size,
        "latency_us": {"p50": p50, "p95": p95 or p50 * 2, "p99": 0},
        "ops_ok": ops_ok,
        "select_tf_ops": [] if ops_ok else ["FlexMatrixDeterminant"],
    }


EVALUATION = {
    "reference": {"accuracy": 0.95},
    "variants": [
        _variant("float32", 0.95, 40_000, 30.0),
        _variant("full_int8", 0.94, 12_000, 25.0),
        _variant("dynamic_int8", 0.95, 12_000, 20.0),  # same size as full_int8, more accurate
        _variant("pruned_int8", 0.85, 5_000, 20.0),  # smallest, but loses 10 points
        _variant("flexy", 0.96, 3_000, 10.0, ops_ok=False),  # smallest of all, needs Flex
    ],
}


def test_picks_the_smallest_shipped_then_most_accurate_passing_variant():
    decision = decide(EVALUATION, {"min_accuracy": 0.9, "max_accuracy_drop": 0.02})
    assert decision["chosen"] == "dynamic_int8"
    assert decision["chosen_path"] == "/v/dynamic_int8.tflite"
    results = decision["results"]
    assert results["dynamic_int8"] == {"passed": True, "reasons": [], "vs_champion": None}
    assert results["full_int8"]["passed"] and "'dynamic_int8'" in results["full_int8"]["reasons"][0]
    assert not results["pruned_int8"]["passed"]
    assert any(
        "accuracy 0.8500 < min_accuracy 0.9000" in r for r in results["pruned_int8"]["reasons"]
    )
    assert any("accuracy drop 0.1000" in r for r in results["pruned_int8"]["reasons"])
    assert results["flexy"] == {
        "passed": False,
        "reasons": ["not builtin-only: needs FlexMatrixDeterminant"],
        "vs_champion": None,
    }
    assert decision["slo"]["max_size_bytes"] == DEFAULT_SLO["max_size_bytes"]


def test_each_service_level_can_reject():
    one = {"reference": {"accuracy": 0.95}, "variants": [_variant("v", 0.93, 50_000, 100.0)]}
    assert decide(one, {})["chosen"] == "v"
    cases = {
        "min_accuracy": ({"min_accuracy": 0.94}, "accuracy 0.9300 < min_accuracy"),
        "max_accuracy_drop": ({"max_accuracy_drop": 0.01}, "accuracy drop 0.0200"),
        "max_size_bytes": (
            {"max_size_bytes": 49_999},
            "shipped size 50,000 B > max_size_bytes 49,999 B",
        ),
        "max_latency_p50_us": ({"max_latency_p50_us": 99.0}, "latency p50 100.0 µs"),
        "max_latency_p95_us": ({"max_latency_p95_us": 150.0}, "latency p95 200.0 µs"),
    }
    for key, (slo, reason) in cases.items():
        decision = decide(one, slo)
        assert decision["chosen"] is None, key
        assert any(reason in r for r in decision["results"]["v"]["reasons"]), (key, decision)


def test_no_pass_lists_the_nearest_misses_in_order():
    evaluation = {
        "reference": {"accuracy": 0.95},
        "variants": [
            _variant("far", 0.50, 10_000, 20.0),
            _variant("near", 0.89, 10_000, 20.0),
            _variant("big", 0.95, 2_000_000, 20.0),
        ],
    }
    decision = decide(evaluation, {"min_accuracy": 0.9, "max_size_bytes": 1_000_000})
    assert decision["chosen"] is None and decision["chosen_path"] is None
    assert [m["name"] for m in decision["nearest_misses"]] == ["near", "far", "big"]


def test_run_gate_records_the_decision_before_failing(tmp_path):
    evaluation_path = tmp_path / "evaluation.json"
    evaluation_path.write_text(json.dumps(EVALUATION))
    with pytest.raises(GateFailed) as failure:
        run_gate(tmp_path, "r1", evaluation_path, {"min_accuracy": 0.99})
    message = str(failure.value)
    assert "no variant meets the service levels" in message
    assert "float32: accuracy 0.9500 < min_accuracy 0.9900" in message
    gate = read_report(run_dir(tmp_path, "r1"))["gate"]
    assert gate["chosen"] is None and len(gate["nearest_misses"]) == 3

    decision = run_gate(tmp_path, "r1", evaluation_path, {"max_accuracy_drop": 0.02})
    assert decision["chosen"] == "dynamic_int8"
    assert read_report(run_dir(tmp_path, "r1"))["gate"]["chosen"] == "dynamic_int8"


def test_unrunnable_variants_lose_with_a_reason():
    evaluation = {
        "reference": {"accuracy": 0.9},
        "variants": [_variant("ok", 0.9, 100, 5.0)],
        "unrunnable": [{"name": "flex", "select_tf_ops": ["FlexErf"], "size_bytes": 1}],
    }
    decision = decide(evaluation, {})
    assert decision["chosen"] == "ok"
    assert "FlexErf" in decision["results"]["flex"]["reasons"][0]


def test_bad_service_levels_and_evaluations_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown service level 'max_latency_us'"):
        decide(EVALUATION, {"max_latency_us": 5})
    with pytest.raises(ValueError, match="min_accuracy: 1.5 is above 1"):
        decide(EVALUATION, {"min_accuracy": 1.5})
    with pytest.raises(ValueError, match="max_size_bytes: expected a number"):
        decide(EVALUATION, {"max_size_bytes": "big"})
    with pytest.raises(ValueError, match="no variants to gate"):
        decide({"variants": []}, {})
    with pytest.raises(ValueError, match="variant 'x' has no 'latency_us'"):
        decide({"variants": [{"name": "x", "accuracy": 1, "shipped_bytes": 1}]}, {})
    with pytest.raises(ValueError, match="accuracy_bound: 'median' is not one of"):
        decide(EVALUATION, {"accuracy_bound": "median"})
    with pytest.raises(FileNotFoundError, match="no evaluation"):
        run_gate(tmp_path, "r1", tmp_path / "missing.json", {})
