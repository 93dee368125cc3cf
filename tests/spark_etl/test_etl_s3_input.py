"""s3:// input on a real S3-protocol server on loopback (moto, or Ceph RGW in .ci/run).

The objects are read through the minio client.

Spark's S3A connector needs the hadoop-aws jars, which cannot be downloaded here, so the ETL
downloads the objects with minio to a staging directory on the workspace volume first.
"""

from __future__ import annotations

import io
import json
import os

import pytest

from kfp_edge import dataset
from kfp_edge.spark_etl.etl import run_etl


def test_csv_parts_under_an_s3_prefix(spark, tmp_path, bucket):
    s3, raw = bucket  # the shared test S3 server (tests/conftest.py)
    from sklearn.datasets import load_iris

    iris = load_iris()
    header = "sl,sw,pl,pw,species\n"
    lines = [
        ",".join(map(str, row)) + f",{iris.target_names[t]}"
        for row, t in zip(iris.data, iris.target, strict=True)
    ]
    for i, chunk in enumerate((lines[::2], lines[1::2])):
        data = (header + "\n".join(chunk) + "\n").encode()
        s3.put_object(raw, f"iris/part-{i}.csv", io.BytesIO(data), len(data))
    s3.put_object(raw, "iris-other/x.csv", io.BytesIO(b"a\n1\n"), 4)  # not under the prefix
    out = tmp_path / "out"
    summary = run_etl(str(out), input_path=f"s3://{raw}/iris", label_column="species", spark=spark)
    assert summary["rows_good"] == 150
    secret = os.environ["KFP_EDGE_S3_SECRET_KEY"]
    assert summary["rows_per_split"] == {"train": 90, "validation": 30, "test": 30}
    assert dataset.read_manifest(out)["source"] == f"s3://{raw}/iris"
    written = "".join(p.read_text(errors="ignore") for p in out.rglob("*.json"))
    assert secret not in written and secret not in json.dumps(summary)
    assert not list(tmp_path.glob(".out-staging-*"))  # the downloaded copy is removed


def test_missing_objects_and_credentials_are_clear_errors(tmp_path, bucket, monkeypatch):
    _, raw = bucket
    with pytest.raises(FileNotFoundError, match=f"s3://{raw}/nothing: no objects found"):
        run_etl(str(tmp_path / "a"), input_path=f"s3://{raw}/nothing", label_column="y")
    monkeypatch.delenv("KFP_EDGE_S3_SECRET_KEY")
    with pytest.raises(ValueError, match="KFP_EDGE_S3_SECRET_KEY"):
        run_etl(str(tmp_path / "b"), input_path=f"s3://{raw}/iris", label_column="y")
