"""Duplicate ids over several files: the smallest row hash stays, the others' own lines go.

The duplicates are found on the cached rows, which keep no raw line for good rows; the
quarantine gets each duplicate's line back by its row tag from a second read of the input.
These tests check that the lines found again are exactly the duplicates' own ones.
"""

from __future__ import annotations

import json

import pyarrow.parquet as pq
from pyspark.sql import functions as F

from kfp_edge import dataset
from kfp_edge.spark_etl.etl import run_etl

SCHEMA = {
    "columns": [
        {"name": "id", "type": "string"},
        {"name": "a", "type": "double"},
        {"name": "label", "type": "string"},
    ],
    "label_column": "label",
    "id_column": "id",
    "classes": ["x", "y"],
}


def _files(root):
    """Two files; ids r0..r499, some repeated with other values, some as identical lines."""
    files = {"one.csv": [], "two.csv": []}
    for i in range(500):
        files["one.csv" if i % 2 else "two.csv"].append(f"r{i},{i}.0,{'xy'[i % 2]}")
    for i in range(0, 500, 7):  # the same id with another value, in the other file
        files["two.csv" if i % 2 else "one.csv"].append(f"r{i},{1000 + i}.5,x")
    for i in range(0, 500, 11):  # an identical copy in the same file
        name = "one.csv" if i % 2 else "two.csv"
        files[name].append(f"r{i},{i}.0,{'xy'[i % 2]}")
    files["one.csv"].append("r3,oops,x")  # a bad row is no duplicate of a good one
    for name, lines in files.items():
        (root / name).write_text("id,a,label\n" + "\n".join(lines) + "\n")
    return files


def test_duplicates_keep_the_smallest_row_hash_and_quarantine_their_own_lines(spark, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    files = _files(src)
    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA))
    out = tmp_path / "out"
    summary = run_etl(
        str(out),
        input_path=str(src),
        schema_path=str(tmp_path / "schema.json"),
        max_bad_fraction=0.5,
        spark=spark,
        min_shards=1,
    )
    good = [(line, name) for name, lines in files.items() for line in lines if "oops" not in line]
    hashes = {
        r["line"]: r["h"]
        for r in spark.createDataFrame([(line,) for line, _ in good], "line string")
        .select("line", F.xxhash64("line").alias("h"))
        .collect()
    }
    by_id: dict[str, list[str]] = {}
    for line, _ in good:
        by_id.setdefault(line.split(",")[0], []).append(line)
    kept = {ident: min(lines, key=lambda line: hashes[line]) for ident, lines in by_id.items()}
    expected_dups = sorted(line for lines in by_id.values() for line in lines)
    for line in kept.values():
        expected_dups.remove(line)

    quarantine = pq.read_table(out / "quarantine").to_pylist()
    dups = [r for r in quarantine if r["reason"] == "duplicate_id"]
    assert sorted(r["raw_line"] for r in dups) == expected_dups
    assert all(r["detail"] == "id" for r in dups)
    for r in dups:  # each from the file that holds that line
        name = r["source_file"].rsplit("/", 1)[-1]
        assert r["raw_line"] in files[name]
    assert [r["raw_line"] for r in quarantine if r["reason"] == "unparsable"] == ["r3,oops,x"]
    assert summary["bad_by_reason"]["duplicate_id"] == len(expected_dups)
    assert summary["rows_good"] == 500
    values = sorted(
        float(v) for s in dataset.SPLITS for v in dataset.load_split(out, s)[0][:, 0].tolist()
    )
    assert values == sorted(float(line.split(",")[1]) for line in kept.values())


def test_the_duplicate_count_skips_the_partial_aggregation(spark):
    """Nearly every id hash is distinct: a map-side partial count would reduce nothing. The tag
    job is planned without it, and the session's own setting is left as it was."""
    from kfp_edge.spark_etl.classify import duplicate_tags
    from kfp_edge.spark_etl.reading import BYPASS_PARTIAL_AGGREGATION, ROW_TAG

    rows = [(i, i * 7, f"r{i % 90}", None) for i in range(100)]  # r0..r9 twice
    frame = spark.createDataFrame(rows, f"{ROW_TAG} long, _rh long, id string, _reason string")
    before = spark.conf.get(BYPASS_PARTIAL_AGGREGATION, None)
    tags = duplicate_tags(frame, "id")
    try:
        plan = tags._jdf.queryExecution().executedPlan().toString()
        assert sorted(r[ROW_TAG] for r in tags.collect()) == list(range(90, 100))
    finally:
        tags.unpersist()
    assert "partial_count" not in plan and "count(1)" in plan
    assert spark.conf.get(BYPASS_PARTIAL_AGGREGATION, None) == before
