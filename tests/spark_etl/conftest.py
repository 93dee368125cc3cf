"""Fixtures of the Spark ETL tests."""

from __future__ import annotations

import os
import sys

import pytest

# Spark's Python workers must be this interpreter (pyarrow, kfp_edge); set before any session.
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


@pytest.fixture(scope="session")
def iris_etl(spark, tmp_path_factory):
    """One ETL run on Iris (seed 42), shared by the tests that only read its output."""
    from kfp_edge.spark_etl.etl import run_etl

    out = tmp_path_factory.mktemp("iris_etl") / "data"
    summary = run_etl(str(out), dataset="iris", seed=42, spark=spark)
    return out, summary
