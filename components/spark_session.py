"""The local SparkSession every Spark stage creates when it is given none."""

from __future__ import annotations

import os
import sys


def create_session(app_name: str, master: str = "local[*]", driver_memory: str = "2g"):
    """Creates (or returns the running) local SparkSession with the project's settings.

    The session time zone is UTC, so timestamps without an offset parse the same on every
    machine; the Python workers are this interpreter (it has pyarrow and kfp_edge).

    Args:
        app_name: Spark application name.
        master: Spark master URL.
        driver_memory: Driver JVM heap (in local mode the only JVM).
    """
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", driver_memory)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(max(4, 2 * (os.cpu_count() or 2))))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return session
