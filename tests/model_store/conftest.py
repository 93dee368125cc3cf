"""Fixtures of the model store tests: signing keys and a small model on disk.

The S3 server and buckets come from ``tests/conftest.py`` (moto, or the server named by the
``KFP_EDGE_TEST_S3_*`` variables).
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def signing_keys(tmp_path_factory):
    """A publisher key pair: ``{"private", "public"}`` PEM paths."""
    from kfp_edge.model_store.signing import generate_keys

    directory = tmp_path_factory.mktemp("keys")
    keys = {"private": str(directory / "private.pem"), "public": str(directory / "public.pem")}
    generate_keys(keys["private"], keys["public"])
    return keys


@pytest.fixture
def signer(signing_keys):
    """A function that signs a manifest with the test publisher's key."""
    from kfp_edge.model_store.signing import load_private_key, sign

    key = load_private_key(signing_keys["private"])
    return lambda manifest: sign(manifest, key)


@pytest.fixture(autouse=True)
def trusted_device(signing_keys, monkeypatch):
    """Publishing steps sign with the test key and devices trust it (as deployed)."""
    monkeypatch.setenv("KFP_EDGE_SIGNING_KEY_FILE", signing_keys["private"])
    monkeypatch.setenv("KFP_EDGE_TRUSTED_KEYS", signing_keys["public"])


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


@pytest.fixture
def signed_store(tmp_path, model_files, signer):
    """A workspace store (``tmp_path/ws/models``) with signed versions 1 and 2 of ``edge``."""
    import os
    from pathlib import Path

    from kfp_edge.model_store.store import ModelStore

    store = ModelStore(tmp_path / "ws" / "models")
    store.publish("edge", model_files, {"variant": "float32"}, signer=signer)
    Path(model_files["model.tflite"]).write_bytes(os.urandom(7000))
    store.publish("edge", model_files, {"variant": "full_int8"}, signer=signer)
    return store
