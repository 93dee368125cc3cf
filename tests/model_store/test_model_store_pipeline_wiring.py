"""The S3 credentials reach the publish step from a Secret, never through the compiled YAML."""

import yaml


def test_compiled_publish_step_reads_credentials_from_a_secret(tmp_path):
    from kfp import compiler, dsl

    from kfp_edge.model_store.component import ModelStoreOp, use_s3_credentials

    @dsl.pipeline(name="publish-only")
    def publish_only(workspace: str = "/workspace", s3_bucket: str = "models"):
        task = ModelStoreOp(
            workspace=workspace,
            run_id="r",
            model_name="m",
            chosen_variant="float32",
            chosen_path="/workspace/x.tflite",
            saved_model_dir="/workspace/sm",
            data_dir="/workspace/data",
            s3_bucket=s3_bucket,
        )
        use_s3_credentials(
            task, secret_name="edge-s3", endpoint="http://minio.edge:9000", bucket="edge-models"
        )

    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(publish_only, str(path))
    text = path.read_text()
    docs = list(yaml.safe_load_all(text))
    platform = next(d for d in docs if "platforms" in d)
    executor = next(
        iter(platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"].values())
    )
    env = {
        k["envVar"]: (e.get("secretName") or e["secretNameParameter"], k["secretKey"])
        for e in executor["secretAsEnv"]
        for k in e["keyToEnv"]
    }
    # Required: KFP backends before 2.15 drop `optional`, and kfp-edge supports 2.5.
    assert not any(e.get("optional") for e in executor["secretAsEnv"])
    assert env == {
        "KFP_EDGE_S3_ACCESS_KEY": ("edge-s3", "accesskey"),
        "KFP_EDGE_S3_SECRET_KEY": ("edge-s3", "secretkey"),
    }
    container = next(iter(docs[0]["deploymentSpec"]["executors"].values()))["container"]
    assert {"name": "KFP_EDGE_S3_ENDPOINT", "value": "http://minio.edge:9000"} in container["env"]
    assert {"name": "KFP_EDGE_S3_BUCKET", "value": "edge-models"} in container["env"]
    names = {e["name"] for e in container["env"]}
    assert "KFP_EDGE_S3_ACCESS_KEY" not in names and "KFP_EDGE_S3_SECRET_KEY" not in names
    inputs = docs[0]["components"]["comp-modelstoreop"]["inputDefinitions"]["parameters"]
    assert not {"access_key", "secret_key", "endpoint"} & set(inputs)
