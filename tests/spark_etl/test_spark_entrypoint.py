"""docker/spark/entrypoint.sh: what the Spark Operator's driver and executor pods run.

The driver test runs the real entrypoint with the real ``spark-submit`` of the installed pyspark
on the SparkApplication's own arguments (``--master local[1]`` instead of the cluster, which
does not exist here); test_etl_sparkapp.py ties the main file to the Dockerfile. Two fakes
stand in for what only the image has: ``tini`` (a shim that drops its options and execs the
command, as tini does) and, for the executor, a ``java`` that prints its arguments (an
executor needs a live driver to talk to).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyspark

from kfp_edge.app.golden import ROOT
from kfp_edge.spark_etl import sparkapp

ENTRYPOINT = ROOT / "docker" / "spark" / "entrypoint.sh"


def _bin(tmp_path: Path, name: str, body: str) -> Path:
    directory = tmp_path / "bin"
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return directory


def _env(tmp_path: Path, **extra) -> dict:
    # Fake tini: `tini -s -- cmd...` runs cmd (the real one also reaps zombies).
    shim = _bin(tmp_path, "tini", '[ "$1" = -s ] && shift; [ "$1" = -- ] && shift; exec "$@"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARK_")}
    env.update(
        PATH=f"{shim}:{env['PATH']}",
        SPARK_HOME=str(Path(pyspark.__file__).parent),
        PYSPARK_PYTHON=sys.executable,
        **extra,
    )
    return env


def test_driver_mode_submits_the_application_file_with_the_manifest_arguments(tmp_path):
    """Through the real spark-submit; the application is a stand-in that records what it got.

    (The ETL's own entry point on these arguments is run in test_etl_sparkapp.py; starting a
    full Spark session here would double the cost of that test.)
    """
    manifest = sparkapp.build_spark_application(
        name="kfp-edge-etl-r1",
        namespace="ns",
        image="img",
        output_dir=str(tmp_path / "data"),
        options={"dataset": "iris", "seed": 3},
        workspace_pvc="pvc",
    )
    app = tmp_path / "app.py"
    record = tmp_path / "argv.json"
    app.write_text(
        "import json, sys\n"
        "seen = {'argv': sys.argv[1:], 'python': sys.executable}\n"
        f"json.dump(seen, open({str(record)!r}, 'w'))\n"
    )
    result = subprocess.run(
        [str(ENTRYPOINT), "driver", "--master", "local[1]", str(app)]
        + manifest["spec"]["arguments"],
        env=_env(tmp_path, SPARK_DRIVER_BIND_ADDRESS="127.0.0.1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(record.read_text())
    assert seen["argv"] == manifest["spec"]["arguments"]
    assert json.loads(seen["argv"][3]) == {"dataset": "iris", "seed": 3}
    assert Path(seen["python"]).resolve() == Path(sys.executable).resolve()  # PYSPARK_PYTHON


def test_executor_mode_starts_the_kubernetes_executor_backend(tmp_path):
    java_home = tmp_path / "jdk"
    (java_home / "bin").mkdir(parents=True)
    java = java_home / "bin" / "java"
    java.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    java.chmod(0o755)
    env = _env(
        tmp_path,
        JAVA_HOME=str(java_home),
        SPARK_JAVA_OPT_1="-Dsecond=2",
        SPARK_JAVA_OPT_0="-Dfirst=1",
        SPARK_EXECUTOR_MEMORY="1g",
        SPARK_DRIVER_URL="spark://CoarseGrainedScheduler@driver-svc:7078",
        SPARK_EXECUTOR_ID="3",
        SPARK_EXECUTOR_CORES="2",
        SPARK_APPLICATION_ID="spark-app-1",
        SPARK_EXECUTOR_POD_IP="10.0.0.7",
        SPARK_EXECUTOR_POD_NAME="kfp-edge-etl-r1-exec-3",
    )
    result = subprocess.run(
        [str(ENTRYPOINT), "executor"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    args = result.stdout.splitlines()
    assert args[:4] == ["-Dfirst=1", "-Dsecond=2", "-Xms1g", "-Xmx1g"]
    classpath = args[args.index("-cp") + 1]
    assert f"{env['SPARK_HOME']}/jars/*" in classpath
    backend = args.index("org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend")
    flags = dict(zip(args[backend + 1 :: 2], args[backend + 2 :: 2], strict=True))
    assert flags["--executor-id"] == "3" and flags["--hostname"] == "10.0.0.7"
    assert flags["--driver-url"].startswith("spark://")
    assert list(Path(env["SPARK_HOME"], "jars").glob("spark-kubernetes_*.jar"))


def test_other_commands_run_as_given(tmp_path):
    result = subprocess.run(
        [str(ENTRYPOINT), "sh", "-c", "echo kfp step"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout == "kfp step\n"
