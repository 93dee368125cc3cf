"""`kfp-edge drift`, the drift components under kfp.local, and the retraining input."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from kfp_edge.app.cli import main
from kfp_edge.drift_monitor.monitor import monitor_drift
from kfp_edge.drift_monitor.retrain import prepare_retraining_data


def test_cli_exit_status_tells_drift_from_no_drift(workspace, tmp_path, make_drift_stream, capsys):
    stable = tmp_path / "stable.csv"
    make_drift_stream(1000, None, seed=1).to_csv(stable, index=False)
    base = ["drift", "--workspace", str(workspace), "--name", "iris", "--window", "10"]
    code = main([*base, "--input", str(stable)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "no drift" in out and "petal_length: stable" in out
    shifted = tmp_path / "shifted.parquet"
    make_drift_stream(1000, 0, seed=2).to_parquet(shifted)
    code = main([*base, "--input", str(shifted), "--json"])
    decision = json.loads(capsys.readouterr().out)
    assert code == 1 and decision["drifted"] is True
    assert decision["features"]["petal_length"]["detected"]
    assert decision["reservoir"]["seen"] == 2000


def test_cli_reads_csv_lines_from_stdin_and_reports_errors_with_status_2(
    workspace, make_drift_stream
):
    csv_text = make_drift_stream(400, None, seed=3).to_csv(index=False)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kfp_edge.app.cli",
            "drift",
            "--workspace",
            str(workspace),
            "--name",
            "iris",
            "--no-model",
            "--json",
            "-",
        ],
        input=csv_text,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    decision = json.loads(proc.stdout)
    assert decision["observations"] == 400 and decision["error"]["monitored"] is False
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kfp_edge.app.cli",
            "drift",
            "--workspace",
            str(workspace),
            "--name",
            "iris",
            "-",
        ],
        input="sepal_length,sepal_width\n1,2\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "<stdin>: missing feature column(s) ['petal_length', 'petal_width']" in proc.stderr


def test_monitor_reads_stdin_stream_object(workspace, make_drift_stream):
    text = make_drift_stream(300, None, seed=4).to_csv(index=False)
    decision = monitor_drift(workspace, "iris", "-", stdin=io.StringIO(text), save_state=False)
    assert decision["observations"] == 300 and decision["error"]["labelled_rows"] == 300


def test_retraining_input_from_reservoir_and_original_data(workspace, tmp_path, make_drift_stream):
    source = tmp_path / "new.csv"
    make_drift_stream(800, 0, seed=6).to_csv(source, index=False)
    monitor_drift(workspace, "iris", source, bias_rate=0.005, window=10)
    only = prepare_retraining_data(workspace, "iris", "check-1")
    table = pd.read_parquet(only["input_path"])
    test = pd.read_parquet(only["test_path"])
    assert list(table.columns) == [
        "sepal_length",
        "sepal_width",
        "petal_length",
        "petal_width",
        "label",
    ]
    assert len(table) + len(test) == only["reservoir_rows"] <= 200
    assert len(table) == only["rows"] and len(test) == only["test_rows"] > 0
    assert set(table["label"]) <= {"setosa", "versicolor", "virginica"}
    both = prepare_retraining_data(
        workspace, "iris", "check-2", include_original=True, original_share=0.5
    )
    # Iris holds 149 distinct rows; at most as many as the reservoir's (half the table).
    assert both["original_rows"] == min(149, only["rows"])
    assert both["rows"] == only["rows"] + both["original_rows"]
    combined = pd.read_parquet(both["input_path"])
    assert set(combined["label"]) == {"setosa", "versicolor", "virginica"}
    with pytest.raises(FileExistsError, match="exists"):
        prepare_retraining_data(workspace, "iris", "check-1")
    with pytest.raises(ValueError, match="only .* labelled rows"):
        prepare_retraining_data(workspace, "iris", "check-3", min_rows=10_000)


def test_drift_components_run_under_kfp_local(workspace, tmp_path, make_drift_stream):
    """DriftMonitorOp and RetrainDataOp run as real subprocesses under kfp.local."""
    from kfp import local

    from kfp_edge.drift_monitor.component import DriftMonitorOp, RetrainDataOp
    from kfp_edge.workspace import read_report, run_dir

    source = tmp_path / "new.csv"
    make_drift_stream(1500, 700, seed=8).to_csv(source, index=False)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "kfp-local"),
        raise_on_error=True,
    )
    task = DriftMonitorOp(
        workspace=str(workspace),
        run_id="check-a",
        job_id="job-1",
        model_name="iris",
        input_path=str(source),
        bias_rate=0.005,
        window=10,
    )
    assert task.outputs["Output"] is True
    page = Path(task.outputs["report"].path).read_text()
    assert "petal_length" in page and "<svg" in page and "Open alarms" in page
    artifact = task.outputs["metrics"]
    assert artifact.metadata["drifted"] == 1
    assert artifact.metadata["petal_length.detected"] == 1
    assert 700 <= artifact.metadata["petal_length.position"] <= 1200
    assert artifact.metadata["sepal_width.detected"] == 0
    report = read_report(run_dir(workspace, "check-a"))
    assert report["drift"]["drifted"] is True
    decision_file = run_dir(workspace, "check-a") / "drift_decision.json"
    assert json.loads(decision_file.read_text())["observations"] == 1500
    # A run's drift check is never overwritten (the file was read once anyway).
    from kfp_edge.drift_monitor.monitor import run_drift_check

    with pytest.raises(FileExistsError, match="already holds a drift check"):
        run_drift_check(workspace, "check-a", "iris", source)
    data = RetrainDataOp(workspace=str(workspace), run_id="", job_id="check-a", model_name="iris")
    assert data.outputs["train_run_id"] == "check-a-retrain"
    assert pd.read_parquet(data.outputs["input_path"]).shape[1] == 5
    assert pd.read_parquet(data.outputs["test_path"]).shape[1] == 5
    assert "retrain_input" in read_report(run_dir(workspace, "check-a"))


def test_the_model_runs_in_litert_without_importing_tensorflow(
    workspace, tmp_path, make_drift_stream
):
    source = tmp_path / "labelled.csv"
    make_drift_stream(500, None, seed=14).to_csv(source, index=False)
    script = (
        "import sys\n"
        "from kfp_edge.drift_monitor.monitor import monitor_drift\n"
        f"d = monitor_drift({str(workspace)!r}, 'iris', {str(source)!r}, save_state=False)\n"
        "assert d['error']['monitored'] and d['error']['labelled_rows'] == 500, d['error']\n"
        "assert d['error']['error_rate'] < 0.2, d['error']\n"
        "print(sorted(m for m in ('tensorflow', 'tf_keras', 'keras') if m in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
