"""Malformed input, table-driven: every quarantine reason, counts, errors, no good row lost."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from kfp_edge import dataset
from kfp_edge.spark_etl.etl import REASONS, BadDataError, run_etl

SCHEMA = {
    "columns": [
        {"name": "id", "type": "string"},
        {"name": "a", "type": "double"},
        {"name": "b", "type": "double"},
        {"name": "label", "type": "string"},
    ],
    "label_column": "label",
    "id_column": "id",
    "classes": ["x", "y"],
}
HEADER = "id,a,b,label"

# (case, line, expected reason or None for a good row); ``a`` is unique among good rows.
CASES = [
    *[(f"good {i}", f"g{i},{i}.0,{i % 3}.5,{'xy'[i % 2]}", None) for i in range(1, 21)],
    ("quoted fields", '"g21","21.0","0.5","y"', None),
    ("spaces around a number", "g22, 22.0 ,1.5,x", None),
    ("too few fields", "t1,1.0,x", "wrong_field_count"),
    ("too many fields", "t2,1.0,2.0,x,9", "wrong_field_count"),
    ("delimiter inside quotes counts as one field", 't3,1.0,2.0,"x,y"', "unknown_label"),
    ("empty feature", "m1,,2.0,x", "missing_value"),
    ("empty label", "m2,1.0,2.0,", "missing_value"),
    ("text in a number", "u1,abc,2.0,x", "unparsable"),
    ("two dots", "u2,1.0,1.2.3,y", "unparsable"),
    ("NaN", "n1,NaN,2.0,x", "non_finite"),
    ("inf", "n2,1.0,inf,y", "non_finite"),
    ("-Infinity", "n3,-Infinity,1.0,y", "non_finite"),
    ("unknown label", "l1,1.0,2.0,z", "unknown_label"),
    # xxhash64 (Spark's, seed 42) of this line is larger than that of "g1,1.0,1.5,y"
    ("duplicate id (the copy with the larger row hash goes)", "g1,7.0,9.0,x", "duplicate_id"),
]


@pytest.fixture(scope="module")
def malformed_run(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("malformed")
    src = root / "in"
    src.mkdir()
    lines = [line for _, line, _ in CASES]
    half = len(lines) // 2
    # file 1: UTF-8 BOM and CRLF line ends, a blank line; file 2: plain LF
    (src / "part1.csv").write_bytes(
        ("\ufeff" + "\r\n".join([HEADER, *lines[:half], ""]) + "\r\n").encode("utf-8")
    )
    (src / "part2.csv").write_text("\n".join([HEADER, *lines[half:]]) + "\n")
    (root / "schema.json").write_text(json.dumps(SCHEMA))
    out = root / "out"
    summary = run_etl(
        str(out),
        input_path=str(src),
        schema_path=str(root / "schema.json"),
        max_bad_fraction=0.5,
        seed=1,
        spark=spark,
        min_shards=1,
    )
    return src, out, summary


def test_counts_per_reason(malformed_run):
    _, _, summary = malformed_run
    expected = {r: sum(1 for _, _, reason in CASES if reason == r) for r in REASONS}
    assert summary["bad_by_reason"] == expected
    assert summary["rows_in"] == len(CASES)  # the blank line and the headers are no rows
    assert summary["rows_bad"] == sum(expected.values())


@pytest.mark.parametrize(
    "case,line,reason", [c for c in CASES if c[2]], ids=[c[0] for c in CASES if c[2]]
)
def test_each_bad_row_is_quarantined_with_its_reason_and_file(malformed_run, case, line, reason):
    src, out, _ = malformed_run
    table = pq.read_table(out / "quarantine").to_pylist()
    hits = [r for r in table if r["raw_line"] == line]
    assert len(hits) == 1, case
    assert hits[0]["reason"] == reason
    half = len(CASES) // 2
    index = [c[1] for c in CASES].index(line)
    assert hits[0]["source_file"].endswith("part1.csv" if index < half else "part2.csv")
    assert hits[0]["detail"]


def test_every_good_row_is_kept_once(malformed_run):
    _, out, summary = malformed_run
    good_a = sorted(float(line.split(",")[1].strip(' "')) for _, line, r in CASES if r is None)
    kept = sorted(
        float(v) for s in dataset.SPLITS for v in dataset.load_split(out, s)[0][:, 0].tolist()
    )
    assert kept == good_a  # includes g1's first copy (a=1.0), not the duplicate (a=7.0)
    assert summary["rows_good"] == len(good_a)


def _csv(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "name,make,kwargs,error,match",
    [
        (
            "empty file",
            lambda d: _csv(d / "e.csv", ""),
            {"label_column": "label"},
            BadDataError,
            r"e\.csv: empty file",
        ),
        (
            "header only",
            lambda d: _csv(d / "h.csv", HEADER + "\n"),
            {"label_column": "label"},
            BadDataError,
            r"h\.csv: no data rows \(header-only input\)",
        ),
        (
            "missing label column",
            lambda d: _csv(d / "m.csv", HEADER + "\ng1,1,2,x\n"),
            {"label_column": "species"},
            ValueError,
            r"m\.csv: label column 'species' not found",
        ),
        (
            "no label column given",
            lambda d: _csv(d / "n.csv", HEADER + "\n"),
            {},
            ValueError,
            "needs label_column",
        ),
        (
            "empty directory",
            lambda d: (d / "sub").mkdir() or d / "sub",
            {"label_column": "l"},
            BadDataError,
            "empty input directory",
        ),
        (
            "too many bad rows",
            lambda d: _csv(
                d / "b.csv",
                HEADER
                + "\n"
                + "\n".join([f"g{i},{i},1,x" for i in range(20)] + ["u1,abc,1,x", "u2,1,1"])
                + "\n",
            ),
            {"label_column": "label", "max_bad_fraction": 0.05},
            BadDataError,
            r"b\.csv: 2 of 22 rows are bad \(9\.09% > max_bad_fraction 5\.00%\)",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and " " in v and "\\" not in v else "",
)
def test_clear_errors(spark, tmp_path, name, make, kwargs, error, match):
    path = make(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(error, match=match):
        run_etl(str(out), input_path=str(path), spark=spark, **kwargs)
    assert not (out / "manifest.json").exists()
    if name == "too many bad rows":
        reasons = sorted(r["reason"] for r in pq.read_table(out / "quarantine").to_pylist())
        assert reasons == ["unparsable", "wrong_field_count"]


def test_semicolon_csv_with_inferred_schema_written_out(spark, tmp_path):
    src = _csv(
        tmp_path / "s.csv",
        "f1;f2;kind\n" + "\n".join(f'{i};"{i * 2}";{"ab"[i % 2]}' for i in range(30)) + "\n",
    )
    out = tmp_path / "out"
    summary = run_etl(
        str(out), input_path=str(src), label_column="kind", delimiter=";", spark=spark
    )
    assert summary["rows_good"] == 30 and summary["classes"] == ["a", "b"]
    pinned = json.loads((out / "schema.json").read_text())
    assert [c["type"] for c in pinned["columns"]] == ["double", "double", "string"]
    assert pinned["feature_columns"] == ["f1", "f2"]


def test_headerless_csv_with_declared_yaml_schema_and_numeric_labels(spark, tmp_path):
    src = _csv(
        tmp_path / "n.csv",
        "\n".join(f"id{i}\t{i}\t{i % 7}\t{[10, 2, 1][i % 3]}" for i in range(30)) + "\n",
    )
    (tmp_path / "schema.yaml").write_text(
        "columns:\n"
        "  - {name: id, type: string}\n"
        "  - {name: u, type: double}\n"
        "  - {name: v, type: long}\n"
        "  - {name: target, type: string}\n"
        "label_column: target\n"
        "id_column: id\n"
    )
    summary = run_etl(
        str(tmp_path / "out"),
        input_path=str(src),
        schema_path=str(tmp_path / "schema.yaml"),
        header=False,
        delimiter="\t",
        spark=spark,
    )
    assert summary["rows_good"] == 30
    assert summary["feature_columns"] == ["u", "v"]
    assert summary["classes"] == ["1", "2", "10"]  # numeric labels in numeric order
