"""The retraining pipeline: compiled DAG, a recurring run through kfp.Client, a local run."""

from __future__ import annotations

import json

import pytest
import yaml


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    from kfp_edge.pipelines.compile import compile_pipeline

    path = compile_pipeline("retrain", tmp_path_factory.mktemp("retrain") / "retrain.yaml")
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return path, docs[0], docs[-1]


def test_compiled_retrain_pipeline_branches_on_the_drift_decision(compiled):
    path, spec, platform = compiled
    root = spec["root"]["dag"]["tasks"]
    assert len(root) == 2 and "driftmonitorop" in root
    condition = next(t for name, t in root.items() if name.startswith("condition"))
    assert "driftmonitorop" in condition["triggerPolicy"]["condition"]
    assert "== true" in condition["triggerPolicy"]["condition"]
    inner = spec["components"][condition["componentRef"]["name"]]["dag"]["tasks"]
    assert "retraindataop" in inner
    sub = next(t for name, t in inner.items() if name != "retraindataop")
    edge = spec["components"][sub["componentRef"]["name"]]["dag"]["tasks"]
    assert {"sparketlop", "tfjobtrainingop", "gateop", "modelstoreop"} <= set(edge)
    # The retraining run trains on the retraining input, under its own run id.
    args = sub["inputs"]["parameters"]
    assert args["input_path"]["taskOutputParameter"]["producerTask"] == "retraindataop"
    assert args["run_id"]["taskOutputParameter"]["outputParameterKey"] == "train_run_id"
    # ... and is tested on the recent held-out rows, which the gate compares models on.
    assert args["test_path"]["taskOutputParameter"]["outputParameterKey"] == "test_path"
    # Every step of ours mounts the workspace PVC, with caching off.
    text = path.read_text()
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name in ("exec-driftmonitorop", "exec-retraindataop"):
        assert executors[name]["pvcMount"][0]["mountPath"] == "/workspace"
    assert not root["driftmonitorop"]["cachingOptions"].get("enableCache")
    assert not inner["retraindataop"]["cachingOptions"].get("enableCache")
    assert "kfp-edge-retrain" in text


def test_recurring_run_is_created_through_kfp_client(fake_kfp, monkeypatch):
    """Fake KFP API: no KFP server on this machine."""
    import importlib.util
    from pathlib import Path

    monkeypatch.delenv("KF_PIPELINES_TOKEN", raising=False)
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", "/nonexistent/token")
    script = Path(__file__).resolve().parents[2] / "examples" / "create_recurring_run.py"
    spec = importlib.util.spec_from_file_location("create_recurring_run_example", script)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    code = example.main(
        [
            "--host",
            fake_kfp.url,
            "--input",
            "/workspace/incoming",
            "--model-name",
            "sensor-model",
            "--cron",
            "0 3 * * *",
            "--param",
            "include_original=true",
            "--param",
            "epochs=20",
        ]
    )
    assert code == 0
    (job,) = fake_kfp.recurring_runs
    assert job["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * *"
    assert job["max_concurrency"] in ("1", 1) and job["no_catchup"] is True
    params = job["runtime_config"]["parameters"]
    assert params["input_path"] == "/workspace/incoming"
    assert params["include_original"] is True and params["epochs"] == 20
    sent = job["pipeline_spec"]
    assert sent["pipeline_spec"]["pipelineInfo"]["name"] == "kfp-edge-retrain"
    assert "platform_spec" in sent  # the PVC mounts travel with the spec
    assert fake_kfp.experiments[0]["display_name"] == "kfp-edge"
    bad = example.main(["--host", fake_kfp.url, "--input", "/x", "--param", "nope=1"])
    assert bad == 2 and len(fake_kfp.recurring_runs) == 1


@pytest.mark.slow
def test_retraining_branch_runs_end_to_end_locally(workspace, tmp_path, make_drift_stream):
    """Drift in new observations -> retraining input from the reservoir -> the edge pipeline
    (Spark ETL, local TFJob, compression, LiteRT evaluation, gate) -> version 2 in the store;
    then a stable batch for the new version leaves the store alone."""
    from kfp_edge.app.run_local import run_retrain_local
    from kfp_edge.model_store.store import ModelStore

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    stream = make_drift_stream(1200, 200, seed=21)
    stream.to_csv(incoming / "batch-0001.csv", index=False)
    small = dict(
        model_name="iris",
        bias_rate=0.004,
        window=10,
        epochs=40,
        workers=1,
        variants=["float32"],
        min_accuracy=0.7,
        max_accuracy_drop=0.2,
    )
    result = run_retrain_local(incoming, workspace=str(workspace), run_id="check-1", **small)
    assert result["error"] is None, result["error"]
    assert result["drift"]["drifted"] is True and result["retrained"]
    assert result["published"] and result["version"] == 2
    store = ModelStore(workspace / "models")
    assert store.versions("iris") == [1, 2]
    manifest = store.read_manifest("iris", 2)
    assert manifest["lineage"]["run_id"] == "check-1-retrain"
    # The retraining ETL's test split is exactly the recent held-out table, no training row.
    from kfp_edge import dataset

    data = workspace / "runs" / "check-1-retrain" / "data"
    split = dataset.read_manifest(data)["split"]
    held_out = workspace / "runs" / "check-1" / "retrain_input" / "test.parquet"
    assert split["test_path"] == str(held_out)
    etl = json.loads((data / "etl_summary.json").read_text())
    import pyarrow.parquet as pq

    assert etl["rows_per_split"]["test"] == pq.read_table(held_out).num_rows > 0
    # The new model runs in LiteRT and fits the drifted world better than version 1 did.
    from kfp_edge.drift_monitor.monitor import monitor_drift

    after = make_drift_stream(600, 0, seed=22)
    after.to_csv(tmp_path / "after.csv", index=False)
    new = monitor_drift(workspace, "iris", tmp_path / "after.csv", version=2, save_state=False)
    old = monitor_drift(workspace, "iris", tmp_path / "after.csv", version=1, save_state=False)
    assert new["error"]["error_rate"] < old["error"]["error_rate"]
    quiet = tmp_path / "quiet"
    quiet.mkdir()
    after.to_csv(quiet / "batch-0002.csv", index=False)
    second = run_retrain_local(quiet, workspace=str(workspace), run_id="check-2", **small)
    assert second["error"] is None and second["drift"]["drifted"] is False
    assert not second["retrained"] and store.versions("iris") == [1, 2]
    report = json.loads((workspace / "runs" / "check-2" / "report.json").read_text())
    assert report["drift"]["model"]["version"] == 2
