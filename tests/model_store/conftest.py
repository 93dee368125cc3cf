"""Fixtures of the model store tests: a real S3-protocol server (moto) on loopback."""

from __future__ import annotations

import uuid

import pytest

ACCESS_KEY = "kfp-edge-test-access"
SECRET_KEY = "kfp-edge-test-secret"


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on 127.0.0.1 (a free port), for the whole session; yields its URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """Sets the KFP_EDGE_S3_* variables for the loopback server and returns them."""
    env = {
        "KFP_EDGE_S3_ENDPOINT": s3_server,
        "KFP_EDGE_S3_ACCESS_KEY": ACCESS_KEY,
        "KFP_EDGE_S3_SECRET_KEY": SECRET_KEY,
        "KFP_EDGE_S3_REGION": "us-east-1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def bucket(s3_env):
    """A fresh bucket on the loopback server; returns ``(client, bucket_name)``."""
    from kfp_edge.s3 import client_from_env

    client = client_from_env()
    name = f"models-{uuid.uuid4().hex[:12]}"
    client.make_bucket(name)
    return client, name


@pytest.fixture
def model_files(tmp_path):
    """A small model on disk: a SavedModel-shaped directory and a .tflite file (random bytes)."""
    import os

    saved = tmp_path / "src" / "saved_model"
    (saved / "variables").mkdir(parents=True)
    (saved / "saved_model.pb").write_bytes(os.urandom(3000))
    (saved / "variables" / "variables.data-00000-of-00001").write_bytes(os.urandom(20000))
    (saved / "variables" / "variables.index").write_bytes(os.urandom(200))
    tflite = tmp_path / "src" / "model.tflite"
    tflite.write_bytes(os.urandom(5000))
    return {"saved_model": str(saved), "model.tflite": str(tflite)}
