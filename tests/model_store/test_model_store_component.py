"""ModelStoreOp on a real trained model: kfp.local run, S3 upload, pull to a device, LiteRT."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kfp_edge.model_store.publish import publish_run, store_for
from kfp_edge.workspace import read_report, run_dir, update_report


def _litert_predict(model_path: Path, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model_path), num_threads=1)
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(inp["index"], [len(x), x.shape[1]])
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x.astype(np.float32))
    interpreter.invoke()
    return interpreter.get_tensor(out["index"])


def _standardize(x: np.ndarray, spec: dict) -> np.ndarray:
    return (x - np.array(spec["mean"], np.float32)) / np.array(spec["std"], np.float32)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, iris_data_dir):
    """A run on a workspace with a really trained Keras model (SavedModel), two real .tflite
    variants, their LiteRT figures in the report's evaluation section, and a gate section."""
    from kfp_edge.dataset import load_split, read_preprocessing
    from kfp_edge.tf_env import import_tf

    tf, keras = import_tf()
    workspace = tmp_path_factory.mktemp("ws")
    directory = run_dir(workspace, "run-1")
    directory.mkdir(parents=True)
    update_report(directory, "run", {"run_id": "run-1", "parameters": {"epochs": 60}})
    spec = read_preprocessing(iris_data_dir)
    x_train, y_train = load_split(iris_data_dir, "train")
    x_test, y_test = load_split(iris_data_dir, "test")
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.layers.Input((4,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    model.fit(_standardize(x_train, spec), y_train, epochs=60, batch_size=16, verbose=0)
    saved = directory / "training" / "saved_model"
    tf.saved_model.save(model, str(saved))
    variants_dir = directory / "variants"
    variants_dir.mkdir()
    evaluation = {"variants": []}
    for name, optimize in (("float32", False), ("dynamic_int8", True)):
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
        if optimize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        path = variants_dir / f"{name}.tflite"
        path.write_bytes(converter.convert())
        probs = _litert_predict(path, _standardize(x_test, spec))
        evaluation["variants"].append(
            {
                "name": name,
                "size_bytes": path.stat().st_size,
                "accuracy": float(np.mean(probs.argmax(1) == y_test)),
            }
        )
    update_report(directory, "evaluation", evaluation)
    update_report(
        directory,
        "gate",
        {
            "chosen": "float32",
            "results": {
                "float32": {"passed": True, "reasons": []},
                "dynamic_int8": {"passed": False, "reasons": ["size rule for the test"]},
            },
        },
    )
    keras_pred = model.predict(_standardize(x_test, spec), verbose=0).argmax(1)
    return {
        "workspace": workspace,
        "run_dir": directory,
        "saved": saved,
        "variants_dir": variants_dir,
        "data_dir": iris_data_dir,
        "keras_pred": keras_pred,
        "x_test": x_test,
    }


def test_component_publishes_uploads_and_the_device_runs_the_pulled_model(
    trained_run, bucket, tmp_path
):
    from kfp import local

    from kfp_edge.model_store import s3_releases
    from kfp_edge.model_store.component import ModelStoreOp

    client, bucket_name = bucket
    workspace = trained_run["workspace"]
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "kfp-local"),
        raise_on_error=True,
    )
    task = ModelStoreOp(  # env (KFP_EDGE_S3_*) reaches the step like a Secret would in-cluster
        workspace=str(workspace),
        run_id="run-1",
        model_name="iris-edge",
        chosen_variant="float32",
        chosen_path=str(trained_run["variants_dir"] / "float32.tflite"),
        saved_model_dir=str(trained_run["saved"]),
        data_dir=str(trained_run["data_dir"]),
        s3_bucket=bucket_name,
        s3_prefix="fleet",
    )
    assert task.outputs["version"] == 1
    model_dir = Path(task.outputs["model_dir"])
    assert model_dir == workspace / "models" / "iris-edge" / "1"

    publish = read_report(trained_run["run_dir"])["publish"]
    assert publish["version"] == 1 and publish["variant"] == "float32"
    assert publish["s3"] == f"s3://{bucket_name}/fleet/iris-edge/1/manifest.json"
    manifest = store_for(workspace).verify("iris-edge", 1)
    assert {
        "model.tflite",
        "preprocessing.json",
        "dataset_manifest.json",
        "saved_model/saved_model.pb",
    } <= set(manifest["files"])
    dataset_manifest = Path(trained_run["data_dir"]) / "manifest.json"
    assert (
        manifest["lineage"]["dataset_manifest_sha256"]
        == hashlib.sha256(dataset_manifest.read_bytes()).hexdigest()
    )
    assert manifest["lineage"]["run_id"] == "run-1"
    assert manifest["lineage"]["parameters"] == {"epochs": 60}
    assert manifest["metrics"]["name"] == "float32" and manifest["gate"]["chosen"] == "float32"
    assert s3_releases.list_versions(client, bucket_name, "fleet", "iris-edge") == [1]

    # The published SavedModel loads and computes what the trained model computed.
    from kfp_edge.tf_env import import_tf

    tf, _ = import_tf()
    loaded = tf.saved_model.load(str(model_dir / "saved_model"))
    spec = json.loads((model_dir / "preprocessing.json").read_text())
    x = tf.constant(_standardize(trained_run["x_test"], spec))
    np.testing.assert_array_equal(
        np.asarray(
            loaded.signatures["serving_default"](x)[
                next(iter(loaded.signatures["serving_default"].structured_outputs))
            ]
        ).argmax(1),
        trained_run["keras_pred"],
    )

    # The device pulls from S3 with the slim client (own process) and runs the model.
    device = tmp_path / "device"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "kfp_edge.app.cli",
            "pull",
            "--name",
            "iris-edge",
            "--dest",
            str(device),
            "--s3",
            f"s3://{bucket_name}/fleet",
            "--only",
            "model.tflite",
            "--only",
            "preprocessing.json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "pulled iris-edge version 1" in out.stdout
    assert not (device / "current" / "saved_model").exists()  # the device skipped it
    spec = json.loads((device / "current" / "preprocessing.json").read_text())
    probs = _litert_predict(
        device / "current" / "model.tflite", _standardize(trained_run["x_test"], spec)
    )
    np.testing.assert_array_equal(probs.argmax(1), trained_run["keras_pred"])


def test_publish_all_variants_and_retention(trained_run):
    kwargs = dict(
        workspace=str(trained_run["workspace"]),
        run_id="run-1",
        model_name="iris-keep",
        chosen_variant="float32",
        chosen_path=str(trained_run["variants_dir"] / "float32.tflite"),
        saved_model_dir=str(trained_run["saved"]),
        data_dir=str(trained_run["data_dir"]),
    )
    for _ in range(3):
        publish_run(**kwargs)
    result = publish_run(**kwargs, include_all_variants=True, keep_last=1, pinned_versions=[2])
    assert result["version"] == 4 and result["pruned"] == [1, 3]
    assert store_for(trained_run["workspace"]).versions("iris-keep") == [2, 4]
    manifest = store_for(trained_run["workspace"]).verify("iris-keep")
    assert {"variants/float32.tflite", "variants/dynamic_int8.tflite"} <= set(manifest["files"])


def test_publish_refuses_a_variant_the_gate_rejected_or_no_choice(trained_run):
    store = store_for(trained_run["workspace"])
    before = store.versions("iris-rejected")
    kwargs = dict(
        workspace=str(trained_run["workspace"]),
        run_id="run-1",
        model_name="iris-rejected",
        saved_model_dir=str(trained_run["saved"]),
        data_dir=str(trained_run["data_dir"]),
    )
    with pytest.raises(ValueError, match="gate rejected variant 'dynamic_int8'"):
        publish_run(
            **kwargs,
            chosen_variant="dynamic_int8",
            chosen_path=str(trained_run["variants_dir"] / "dynamic_int8.tflite"),
        )
    with pytest.raises(ValueError, match="chose no variant"):
        publish_run(**kwargs, chosen_variant="", chosen_path="")
    with pytest.raises(FileNotFoundError, match="nope.tflite"):
        publish_run(
            **kwargs,
            chosen_variant="float32",
            chosen_path=str(trained_run["variants_dir"] / "nope.tflite"),
        )
    assert store.versions("iris-rejected") == before == []


def test_publish_uploads_to_the_bucket_named_in_the_environment(trained_run, bucket, monkeypatch):
    from kfp_edge.model_store import s3_releases

    client, bucket_name = bucket
    kwargs = dict(
        workspace=str(trained_run["workspace"]),
        run_id="run-1",
        model_name="iris-env",
        chosen_variant="float32",
        chosen_path=str(trained_run["variants_dir"] / "float32.tflite"),
        saved_model_dir=str(trained_run["saved"]),
        data_dir=str(trained_run["data_dir"]),
    )
    monkeypatch.delenv("KFP_EDGE_S3_BUCKET", raising=False)
    assert publish_run(**kwargs)["s3"] is None  # no bucket anywhere: no upload
    monkeypatch.setenv("KFP_EDGE_S3_BUCKET", bucket_name)
    result = publish_run(**kwargs, s3_prefix="")
    assert result["s3"]["manifest_key"] == "iris-env/2/manifest.json"
    assert s3_releases.list_versions(client, bucket_name, "", "iris-env") == [2]


def test_failed_upload_keeps_the_local_version_and_push_retries_it(
    trained_run, bucket, monkeypatch, capsys
):
    from kfp_edge.app.cli import main
    from kfp_edge.model_store import s3_releases

    client, bucket_name = bucket
    workspace = str(trained_run["workspace"])
    kwargs = dict(
        workspace=workspace,
        run_id="run-1",
        model_name="iris-push",
        chosen_variant="float32",
        chosen_path=str(trained_run["variants_dir"] / "float32.tflite"),
        saved_model_dir=str(trained_run["saved"]),
        data_dir=str(trained_run["data_dir"]),
    )
    with pytest.raises(ValueError, match="s3://no-such-bucket: the bucket does not exist"):
        publish_run(**kwargs, s3_bucket="no-such-bucket")
    assert store_for(workspace).versions("iris-push") == []  # checked before publishing
    # Another store already put an object where version 1 goes: the upload fails after the
    # local publish, which stays and is recorded; push retries once the conflict is gone.
    client.put_object(bucket_name, "p/iris-push/1/model.tflite.gz", io.BytesIO(b"x"), 1)
    with pytest.raises(RuntimeError, match="kfp-edge push --workspace .* --version 1"):
        publish_run(**kwargs, s3_bucket=bucket_name, s3_prefix="p")
    assert store_for(workspace).versions("iris-push") == [1]
    assert read_report(trained_run["run_dir"])["publish"]["model_name"] == "iris-push"
    client.remove_object(bucket_name, "p/iris-push/1/model.tflite.gz")
    argv = [
        "push",
        "--workspace",
        workspace,
        "--name",
        "iris-push",
        "--s3",
        f"s3://{bucket_name}/p",
    ]
    assert main(argv) == 0
    assert "uploaded iris-push version 1" in capsys.readouterr().out
    assert s3_releases.list_versions(client, bucket_name, "p", "iris-push") == [1]
    assert main(argv) == 2  # never overwritten
    assert "already exists" in capsys.readouterr().err


def test_publish_signs_with_the_mounted_key_and_reports_raw_and_shipped_sizes(
    trained_run, signing_keys, monkeypatch, capsys
):
    import gzip

    from kfp_edge.model_store import signing

    kwargs = _publish_kwargs(trained_run, "iris-signed")
    result = publish_run(**kwargs)
    store = store_for(kwargs["workspace"])
    manifest = store.read_manifest("iris-signed", result["version"])
    trusted = signing.load_public_keys([signing_keys["public"]])
    signing.verify(manifest, trusted, "test")  # signed with the key the Secret would mount
    raw = Path(kwargs["chosen_path"]).read_bytes()
    section = read_report(trained_run["run_dir"])["publish"]
    assert section["model_bytes"] == len(raw)
    assert section["shipped_bytes"] == len(gzip.compress(raw, 9, mtime=0)) < len(raw)
    private = Path(signing_keys["private"]).read_text()
    body = private.splitlines()[1]
    seen = json.dumps(manifest) + json.dumps(section) + capsys.readouterr().out
    assert body not in seen and "PRIVATE KEY" not in seen  # the key never leaks
    monkeypatch.setenv("KFP_EDGE_SIGNING_KEY_FILE", str(trained_run["run_dir"] / "report.json"))
    with pytest.raises(ValueError, match="not an unencrypted PEM private key"):
        publish_run(**kwargs)  # a wrong key fails before anything is published
    assert store.versions("iris-signed") == [result["version"]]


def _publish_kwargs(trained_run, model_name: str) -> dict:
    return dict(
        workspace=str(trained_run["workspace"]),
        run_id="run-1",
        model_name=model_name,
        chosen_variant="float32",
        chosen_path=str(trained_run["variants_dir"] / "float32.tflite"),
        saved_model_dir=str(trained_run["saved"]),
        data_dir=str(trained_run["data_dir"]),
    )
