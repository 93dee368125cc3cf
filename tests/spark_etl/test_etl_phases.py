"""Each ETL phase on a tiny DataFrame: parse once, one CASE, float32 range, exact splits."""

from __future__ import annotations

import numpy as np
import pytest

from kfp_edge.spark_etl import split
from kfp_edge.spark_etl.classify import classify
from kfp_edge.spark_etl.reading import raw_csv
from kfp_edge.spark_etl.schema import BadDataError, infer_csv_schema, schema_from_dict

SCHEMA = schema_from_dict(
    {
        "columns": [
            {"name": "a", "type": "double"},
            {"name": "b", "type": "double"},
            {"name": "label", "type": "string"},
        ],
        "label_column": "label",
        "classes": ["x", "y"],
    }
)


@pytest.fixture()
def classified(spark, tmp_path):
    lines = [
        "a,b,label",
        "1.0,2.0,x",
        "1e39,2.0,x",  # a finite double, but inf as float32
        "-3.5e38,2.0,y",
        "3.4e38,2.0,  y ",  # within float32; the label is trimmed
        '"4.0","5.0",x',
        "1.0,2.0",
    ]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    raw = raw_csv(spark, [tmp_path / "t.csv"], SCHEMA, True, ",", '"')
    frame, _ = classify(raw, SCHEMA)
    return frame


def test_reasons_float32_range_and_trimmed_labels(classified):
    rows = {r["_raw"]: (r["_reason"], r["_detail"], r["label"]) for r in classified.collect()}
    assert rows["1e39,2.0,x"][:2] == ("non_finite", "a")
    assert rows["-3.5e38,2.0,y"][:2] == ("non_finite", "a")
    assert rows["3.4e38,2.0,  y "] == (None, None, "y")
    assert rows['"4.0","5.0",x'] == (None, None, "x")
    assert rows["1.0,2.0"][:2] == ("wrong_field_count", "2 fields, expected 3")


def test_each_field_is_parsed_once(classified):
    """Spark does not share subexpressions across CASE branches: the plan must parse each line
    once (one split, or one from_csv for lines with quotes) and each numeric field once (one
    try_cast), outside the CASE."""
    plan = classified._jdf.queryExecution().executedPlan().toString()
    assert plan.count("from_csv(") == 1
    assert plan.count("split(_raw") == 1
    assert plan.count("try_cast(") == 2  # a and b
    case = plan[plan.index("CASE WHEN") :].split(" END")[0]
    assert "try_cast" not in case and "from_csv" not in case


def test_inference_follows_its_documentation():
    header = ["t", "a", "b", "dev", "label"]
    rows = [
        [f"2026-01-01T00:00:0{i}", str(i), "n/a" if i == 0 else "1", "7", "x"] for i in range(10)
    ]
    schema = infer_csv_schema(
        header, rows, "label", "s.csv", roles={"time_column": "t", "device_column": "dev"}
    )
    types = dict(schema.columns)
    assert types == {
        "t": "timestamp",
        "a": "double",
        "b": "double",
        "dev": "string",
        "label": "string",
    }
    assert schema.feature_columns == ["a", "b"]  # 9 of 10 numbers: numeric, n/a quarantined
    rows[1][2] = "err"
    assert dict(infer_csv_schema(header, rows, "label", "s.csv").columns)["b"] == "string"


def test_row_split_gives_exact_per_class_counts(spark):
    rng = np.random.default_rng(0)
    labels = rng.choice(3, size=3000, p=[0.6, 0.3, 0.1])
    hashes = rng.integers(-(2**63), 2**63 - 1, size=(3000, 2), dtype=np.int64)
    frame = spark.createDataFrame(
        [(int(k), int(h), int(h2)) for k, (h, h2) in zip(labels, hashes, strict=True)],
        "label_index long, _h long, _h2 long",
    ).repartition(5)
    per_class = {k: int(np.sum(labels == k)) for k in range(3)}
    buckets = split.bucket_counts(frame, "label_index")
    assert {k: sum(n for _, n in cells) for k, cells in buckets.items()} == per_class
    assigned, per_split = split.row_split(spark, frame, per_class, (0.6, 0.2, 0.2), buckets)
    result = assigned.collect()
    assert per_split == [sum(1 for r in result if r["_split"] == s) for s in range(3)]
    got = {}
    for r in result:
        got[(r["label_index"], r["_split"])] = got.get((r["label_index"], r["_split"]), 0) + 1
    for k, cuts in split.class_counts(per_class, (0.6, 0.2, 0.2)).items():
        assert tuple(got.get((k, s), 0) for s in range(3)) == cuts
        # and the same rows as ranking by hash within the class
        order = sorted(
            (int(h), int(h2)) for (h, h2), c in zip(hashes, labels, strict=True) if c == k
        )
        train = {(r["_h"], r["_h2"]) for r in result if r["label_index"] == k and r["_split"] == 0}
        assert train == set(order[: cuts[0]])


def test_row_split_counts_follow_identical_lines_at_a_threshold(spark):
    """Identical lines share their hash: at a threshold they move together, and the counts the
    shard plan is built from say so (the split's own counts, not the wanted ones)."""
    keys = [(0, i, i) for i in range(6)] + [(0, 6, 6)] * 3 + [(0, i, i) for i in range(7, 10)]
    frame = spark.createDataFrame(keys, "label_index long, _h long, _h2 long")
    per_class = {0: len(keys)}  # 12: wanted 8 train (ranks 0-7), 2 validation, 2 test
    buckets = split.bucket_counts(frame, "label_index")
    assigned, per_split = split.row_split(spark, frame, per_class, (0.6, 0.2, 0.2), buckets)
    result = assigned.collect()
    assert [sum(1 for r in result if r["_split"] == s) for s in range(3)] == per_split
    assert per_split == [6, 4, 2]  # the three copies at ranks 6-8 all fall to validation
    assert {r["_split"] for r in result if r["_h"] == 6} == {1}


def test_groups_are_dealt_whole_and_stratified():
    counts = {f"d{i}": {0: 100 + i, 1: 20 if i % 2 else 5} for i in range(10)}
    assignment = split.assign_groups(counts, (0.6, 0.2, 0.2), seed=1)
    assert sorted(assignment) == sorted(counts)
    per_split = [sum(1 for s in assignment.values() if s == k) for k in range(3)]
    assert per_split[0] >= 5 and per_split[1] >= 1 and per_split[2] >= 1
    for k in (0, 1):
        total = sum(c[k] for c in counts.values())
        train = sum(c[k] for g, c in counts.items() if assignment[g] == 0)
        assert 0.45 < train / total < 0.75
    assert split.assign_groups(counts, (0.6, 0.2, 0.2), seed=1) == assignment
    assert set(split.assign_groups({"a": {0: 5}, "b": {0: 1}}, (0.6, 0.2, 0.2), 0).values()) == {
        0,
        2,
    }
    with pytest.raises(BadDataError, match="at least 2 devices"):
        split.assign_groups({"only": {0: 10}}, (0.6, 0.2, 0.2), 0)


def test_split_method_defaults():
    assert split.resolve_method("auto", "device") == "group"
    assert split.resolve_method("auto", "") == "row"
    with pytest.raises(ValueError, match="needs a device column"):
        split.resolve_method("group", "")
    with pytest.raises(ValueError, match="split_by must be"):
        split.resolve_method("random", "d")


def test_every_phase_the_etl_times_is_a_named_progress_phase():
    """The progress bar counts ETL_PHASES: each phase the orchestrator closes must be in it."""
    import re
    from pathlib import Path

    from kfp_edge.spark_etl import etl

    source = Path(etl.__file__).read_text()
    assert re.findall(r'phases\.done\("(\w+)"\)', source) == list(etl.ETL_PHASES)


def _reduce_tasks(spark, conf: dict) -> int:
    """Partitions after a grouped count of 200k ids, with ``conf`` set on the shared session."""
    from pyspark.sql import functions as F

    keys = [k for k in conf if k.startswith("spark.sql.") and "timeZone" not in k]
    old = {k: spark.conf.get(k, None) for k in keys}
    try:
        for k in keys:
            spark.conf.set(k, conf[k])
        counted = spark.range(200_000, numPartitions=8).groupBy(F.col("id") % 50_000).count()
        return counted.rdd.getNumPartitions()
    finally:
        for k, v in old.items():
            spark.conf.unset(k) if v is None else spark.conf.set(k, v)


def test_the_etl_session_keeps_its_shuffle_partitions_for_the_cores(spark):
    from kfp_edge.spark_etl.reading import session_conf

    conf = session_conf(cores=2)
    # the old settings (4 partitions, AQE coalescing on) fall below the cores' waves
    assert _reduce_tasks(spark, {"spark.sql.shuffle.partitions": "4"}) < 4
    assert _reduce_tasks(spark, conf) == int(conf["spark.sql.shuffle.partitions"]) == 8


def test_the_etl_session_collects_garbage_with_the_throughput_collector(tmp_path):
    """A new ETL session's JVM runs the parallel collector (not G1: see session_conf). Its own
    process: the shared test session's JVM is already running with its options."""
    import subprocess
    import sys

    code = (
        "from kfp_edge.spark_etl.reading import create_session\n"
        "s = create_session('local[1]')\n"
        "beans = s.sparkContext._jvm.java.lang.management.ManagementFactory"
        ".getGarbageCollectorMXBeans()\n"
        "print('GC:', sorted(b.getName() for b in beans))\n"
        "s.stop()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=180, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr[-2000:]
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("GC:"))
    assert "PS Scavenge" in line and "PS MarkSweep" in line and "G1" not in line
