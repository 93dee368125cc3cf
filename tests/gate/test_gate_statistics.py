"""The gate's statistics on hand-made figures: intervals, class recall floors, latency ties,
peak memory and the champion comparison."""

from __future__ import annotations

import pytest

from kfp_edge.classification import wilson_interval
from kfp_edge.gate.gate import comparison_metrics, decide

CLASSES = ("normal", "bearing_wear", "pressure_leak")


def _variant(name, shipped, accuracy, recalls, p50=2.4, noise=0.01, peak=1_000_000, rows=201):
    right = round(accuracy * rows)
    return {
        "name": name,
        "path": f"/v/{name}.tflite",
        "accuracy": accuracy,
        "accuracy_interval": list(wilson_interval(right, rows)),
        "per_class": {
            c: {"recall": r, "precision": 1.0, "f1": 1.0, "support": 13}
            for c, r in zip(CLASSES, recalls, strict=True)
        },
        "size_bytes": shipped * 4,
        "shipped_bytes": shipped,
        "latency_us": {"p50": p50, "p95": p50 * 1.5, "p99": p50 * 2, "p50_noise": noise},
        "peak_memory_bytes": peak,
        "ops_ok": True,
    }


REFERENCE = _variant("saved_model", 400_000, 0.995, (1.0, 1.0, 1.0))


def test_wilson_interval_of_the_issue_figures():
    low, high = wilson_interval(200, 201)
    assert (round(low, 3), round(high, 3)) == (0.972, 0.999)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(30, 30)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 30)[0] == pytest.approx(0.0)


def test_a_smaller_variant_that_misses_a_class_is_refused():
    evaluation = {
        "reference": REFERENCE,
        "variants": [
            _variant("full_int8", 20_000, 0.99, (1.0, 1.0, 0.92)),
            # 944 B smaller, 7 of 13 pressure_leak rows missed: recall 0.46.
            _variant("pruned_int8", 19_056, 0.96, (1.0, 1.0, 0.46)),
        ],
    }
    decision = decide(evaluation, {"max_accuracy_drop": 0.05})
    assert decision["chosen"] == "full_int8"
    reasons = decision["results"]["pruned_int8"]["reasons"]
    assert reasons == [
        "class 'pressure_leak' recall 0.4600 drops 0.5400 vs reference > "
        "max_class_recall_drop 0.1500"
    ]
    # The floor can be opened on purpose; then the smaller variant wins.
    assert decide(evaluation, {"max_class_recall_drop": 1.0})["chosen"] == "pruned_int8"


def test_min_accuracy_applies_to_the_point_or_to_the_lower_bound():
    evaluation = {"reference": None, "variants": [_variant("v", 10_000, 0.995, (1, 1, 1))]}
    assert decide(evaluation, {"min_accuracy": 0.98})["chosen"] == "v"
    decision = decide(evaluation, {"min_accuracy": 0.98, "accuracy_bound": "lower"})
    assert decision["chosen"] is None
    assert decision["results"]["v"]["reasons"][0].startswith(
        "accuracy lower 95 % bound 0.9724 (accuracy 0.9950) < min_accuracy 0.9800"
    )


def test_latency_within_noise_is_a_tie_and_the_choice_survives_re_measuring():
    def run(p50_a, p50_b):
        evaluation = {
            "reference": REFERENCE,
            "variants": [
                _variant("full_int8", 20_000, 0.99, (1, 1, 1), p50=p50_a),
                _variant("dynamic_int8", 20_000, 0.99, (1, 1, 1), p50=p50_b),
            ],
        }
        return decide(evaluation, {})

    first, second = run(2.40, 2.42), run(2.42, 2.40)  # the same models, timed twice
    assert first["chosen"] == second["chosen"] == "dynamic_int8"  # the tie goes to the name
    assert "within measurement noise" in first["results"]["full_int8"]["reasons"][0]
    # Beyond the noise and the 5 % floor, the faster one wins.
    assert run(2.0, 2.42)["chosen"] == "full_int8"
    assert "faster beyond noise" in run(2.0, 2.42)["results"]["dynamic_int8"]["reasons"][0]


def test_order_is_shipped_size_then_accuracy_then_latency():
    evaluation = {
        "reference": REFERENCE,
        "variants": [
            _variant("fast", 30_000, 0.99, (1, 1, 1), p50=1.0),
            _variant("accurate", 20_000, 0.995, (1, 1, 1), p50=9.0),
            _variant("small", 20_000, 0.99, (1, 1, 1), p50=3.0),
        ],
    }
    decision = decide(evaluation, {})
    assert decision["ranking"] == ["accurate", "small", "fast"]
    assert "ships smaller" in decision["results"]["fast"]["reasons"][0]
    assert "more accurate" in decision["results"]["small"]["reasons"][0]


def test_peak_memory_is_a_service_level():
    evaluation = {
        "reference": None,
        "variants": [_variant("v", 10_000, 0.99, (1, 1, 1), peak=3_000_000)],
    }
    decision = decide(evaluation, {"max_peak_memory_bytes": 2_000_000})
    assert decision["results"]["v"]["reasons"] == [
        "peak memory 3,000,000 B > max_peak_memory_bytes 2,000,000 B"
    ]


def _champion(accuracy, recalls, comparable=True):
    figures = _variant("model.tflite", 20_000, accuracy, recalls)
    return {
        "model_name": "sensor",
        "version": 3,
        "path": "/ws/models/sensor/3/model.tflite",
        "comparable": comparable,
        "reason": "" if comparable else "version 3: it takes 5 features, the data has 6",
        "rows": 201,
        **{k: figures[k] for k in ("accuracy", "accuracy_interval", "per_class")},
    }


def test_a_challenger_worse_than_the_champion_is_refused():
    evaluation = {
        "reference": None,  # the champion alone judges here
        "variants": [_variant("full_int8", 20_000, 0.96, (1.0, 1.0, 0.85))],
    }
    assert decide(evaluation, {})["chosen"] == "full_int8"  # no champion: passes
    evaluation["variants"][0]["per_class"]["pressure_leak"]["recall"] = 0.80
    decision = decide(evaluation, {}, _champion(0.99, (1.0, 1.0, 1.0)))
    assert decision["chosen"] is None
    assert decision["results"]["full_int8"]["reasons"] == [
        "accuracy 0.9600 regresses 0.0300 against the champion v3 (0.9900) > max_regression 0.0200",
        "class 'pressure_leak' recall drops 0.2000 against the champion v3 > "
        "max_class_recall_drop 0.1500",
    ]
    vs = decision["results"]["full_int8"]["vs_champion"]
    assert vs["accuracy_delta"] == pytest.approx(-0.03)
    assert vs["class_recall_deltas"]["pressure_leak"] == pytest.approx(-0.20)
    assert decision["champion"]["version"] == 3


def test_a_champion_within_tolerance_or_not_comparable_does_not_block():
    evaluation = {
        "reference": REFERENCE,
        "variants": [_variant("full_int8", 20_000, 0.985, (1.0, 1.0, 0.95))],
    }
    decision = decide(evaluation, {}, _champion(0.99, (1.0, 1.0, 1.0)))
    assert decision["chosen"] == "full_int8"
    metrics = comparison_metrics(evaluation["variants"][0], decision["champion"])
    assert metrics["champion_version"] == 3.0
    assert metrics["champion_accuracy"] == 0.99 and metrics["chosen_accuracy"] == 0.985
    assert metrics["chosen_recall_pressure_leak"] == 0.95
    assert metrics["chosen_accuracy_low"] < 0.985 < metrics["chosen_accuracy_high"]
    other = _champion(0.999, (1, 1, 1), comparable=False)
    decision = decide(evaluation, {"max_regression": 0.0}, other)
    assert decision["chosen"] == "full_int8" and decision["champion"]["comparable"] is False
    assert decision["results"]["full_int8"]["vs_champion"] is None
