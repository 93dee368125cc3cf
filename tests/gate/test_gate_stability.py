"""The choice survives re-measuring: the gate runs twice on real, re-timed latencies."""

from __future__ import annotations

import shutil

from kfp_edge.gate.gate import decide


def test_identical_runs_publish_the_same_variant(models, evaluate, iris_data_dir, tmp_path):
    """Two copies of one model: the same shipped bytes and the same predictions, so only
    timing noise tells them apart. Ranked by raw p50, each run would pick whichever copy the
    clock favoured; within the noise they tie and the tie goes to the name."""
    good, _ = models
    paths = {"b_copy": tmp_path / "b.tflite", "a_copy": tmp_path / "a.tflite"}
    for path in paths.values():
        shutil.copy(good, path)
    decisions = [decide(evaluate(tmp_path, iris_data_dir, paths, runs=300), {}) for _ in range(3)]
    assert [d["chosen"] for d in decisions] == ["a_copy"] * 3
    for d in decisions:
        assert "within measurement noise" in d["results"]["b_copy"]["reasons"][0]
