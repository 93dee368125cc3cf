"""s3:// input on a real S3-protocol server (moto) on loopback, read through the minio client.

Spark's S3A connector needs the hadoop-aws jars, which cannot be downloaded here, so the ETL
downloads the objects with minio to a staging directory on the workspace volume first.
"""

from __future__ import annotations

import io
import json

import pytest

from kfp_edge import dataset
from kfp_edge.spark_etl.etl import run_etl

SECRET = "etl-test-secret-value"


@pytest.fixture
def s3(monkeypatch):
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    monkeypatch.setenv("KFP_EDGE_S3_ENDPOINT", f"http://{host}:{port}")
    monkeypatch.setenv("KFP_EDGE_S3_ACCESS_KEY", "etl-test-access")
    monkeypatch.setenv("KFP_EDGE_S3_SECRET_KEY", SECRET)
    monkeypatch.setenv("KFP_EDGE_S3_REGION", "us-east-1")
    from kfp_edge.s3 import client_from_env

    client = client_from_env()
    client.make_bucket("raw")
    yield client
    server.stop()


def test_csv_parts_under_an_s3_prefix(spark, tmp_path, s3):
    from sklearn.datasets import load_iris

    iris = load_iris()
    header = "sl,sw,pl,pw,species\n"
    lines = [
        ",".join(map(str, row)) + f",{iris.target_names[t]}"
        for row, t in zip(iris.data, iris.target, strict=True)
    ]
    for i, chunk in enumerate((lines[::2], lines[1::2])):
        data = (header + "\n".join(chunk) + "\n").encode()
        s3.put_object("raw", f"iris/part-{i}.csv", io.BytesIO(data), len(data))
    s3.put_object("raw", "iris-other/x.csv", io.BytesIO(b"a\n1\n"), 4)  # not under the prefix
    out = tmp_path / "out"
    summary = run_etl(str(out), input_path="s3://raw/iris", label_column="species", spark=spark)
    assert summary["rows_good"] == 150
    assert summary["rows_per_split"] == {"train": 90, "validation": 30, "test": 30}
    assert dataset.read_manifest(out)["source"] == "s3://raw/iris"
    written = "".join(p.read_text(errors="ignore") for p in out.rglob("*.json"))
    assert SECRET not in written and SECRET not in json.dumps(summary)
    assert not list(tmp_path.glob(".out-staging-*"))  # the downloaded copy is removed


def test_missing_objects_and_credentials_are_clear_errors(tmp_path, s3, monkeypatch):
    with pytest.raises(FileNotFoundError, match="s3://raw/nothing: no objects found"):
        run_etl(str(tmp_path / "a"), input_path="s3://raw/nothing", label_column="y")
    monkeypatch.delenv("KFP_EDGE_S3_SECRET_KEY")
    with pytest.raises(ValueError, match="KFP_EDGE_S3_SECRET_KEY"):
        run_etl(str(tmp_path / "b"), input_path="s3://raw/iris", label_column="y")
