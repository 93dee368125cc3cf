"""S3 distribution against a real S3 server on loopback (moto, or Ceph RGW), real minio client."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kfp_edge import s3
from kfp_edge.app.cli import main
from kfp_edge.model_store import s3_releases
from kfp_edge.model_store.pull import current_manifest, pull, rollback
from kfp_edge.model_store.store import ModelStore
from kfp_edge.model_versions import verify_directory


@pytest.fixture
def store(signed_store, model_files, signer):
    """A local store with signed versions 1 and 2 of ``edge`` and version 1 of ``edge-2``."""
    signed_store.publish("edge-2", model_files, {"variant": "other"}, signer=signer)
    return signed_store


def _keys(client, bucket):
    return sorted(o.object_name for o in client.list_objects(bucket, recursive=True))


def test_client_from_env_names_missing_variables_without_values(monkeypatch):
    monkeypatch.setenv("KFP_EDGE_S3_ENDPOINT", "http://127.0.0.1:1")
    monkeypatch.setenv("KFP_EDGE_S3_ACCESS_KEY", "visible-access")
    monkeypatch.delenv("KFP_EDGE_S3_SECRET_KEY", raising=False)
    with pytest.raises(ValueError, match="KFP_EDGE_S3_SECRET_KEY") as info:
        s3.client_from_env()
    assert "visible-access" not in str(info.value)
    assert s3.parse_s3_uri("s3://bkt/a/b/") == ("bkt", "a/b")
    with pytest.raises(ValueError, match="expected s3://"):
        s3.parse_s3_uri("http://bkt/x")


def test_upload_layout_checksums_and_listing(bucket, store):
    client, name = bucket
    result = s3_releases.upload_version(
        s3.connect_from_env(), name, "fleet/models", store.get("edge", 1)
    )
    assert result["manifest_key"] == "fleet/models/edge/1/manifest.json"
    s3_releases.upload_version(s3.connect_from_env(), name, "fleet/models", store.get("edge", 2))
    s3_releases.upload_version(s3.connect_from_env(), name, "fleet/models", store.get("edge-2", 1))
    keys = _keys(client, name)
    manifest = store.read_manifest("edge", 1)
    shipped = {
        f"fleet/models/edge/1/{e.get('shipped', {}).get('file', r)}"
        for r, e in manifest["files"].items()
    }
    assert shipped | {"fleet/models/edge/1/manifest.json"} <= set(keys)
    assert "fleet/models/edge/1/model.tflite" not in keys  # only its gzip copy is shipped
    assert s3_releases.list_names(client, name, "fleet/models") == ["edge", "edge-2"]
    assert s3_releases.list_versions(client, name, "fleet/models", "edge") == [1, 2]
    assert s3_releases.list_versions(client, name, "fleet/models", "edge-2") == [1]  # no collision
    # Each object carries its sha256 as user metadata (what the store relies on).
    key = "fleet/models/edge/1/model.tflite.gz"
    stat = client.stat_object(name, key)
    digest = manifest["files"]["model.tflite"]["shipped"]["sha256"]
    assert {k.lower(): v for k, v in stat.metadata.items()}["x-amz-meta-sha256"] == digest


def test_existing_version_is_never_overwritten(bucket, store):
    client, name = bucket
    s3_releases.upload_version(s3.connect_from_env(), name, "", store.get("edge", 1))
    before = client.get_object(name, "edge/1/manifest.json").read()
    with pytest.raises(FileExistsError, match="version 1 of 'edge' already exists"):
        s3_releases.upload_version(s3.connect_from_env(), name, "", store.get("edge", 1))
    # A second store that also has an 'edge' version 1 (other content) cannot replace it,
    # even when it skips the existence check and races straight to the conditional PUT.
    from minio.error import S3Error

    conn = s3.connect_from_env()
    for key in ("edge/1/manifest.json", "edge/1/model.tflite.gz"):
        with pytest.raises(S3Error) as info:
            other = b"{}"
            digest = hashlib.sha256(other).hexdigest()
            conn.put_stream(name, key, io.BytesIO(other), 2, digest, {"If-None-Match": "*"})
        assert info.value.code == "PreconditionFailed"
    assert client.get_object(name, "edge/1/manifest.json").read() == before


def test_object_left_by_another_publisher_blocks_the_version(tmp_path, bucket, store):
    client, name = bucket
    client.put_object(name, "edge/2/model.tflite.gz", io.BytesIO(b"someone else"), 12)
    with pytest.raises(FileExistsError, match="exists with other content"):
        s3_releases.upload_version(s3.connect_from_env(), name, "", store.get("edge", 2))
    assert s3_releases.list_versions(client, name, "", "edge") == []  # no manifest: not a version
    s3_releases.upload_version(s3.connect_from_env(), name, "", store.get("edge", 1))
    # latest skips the higher number that has objects but no manifest
    assert s3_releases.latest_version(client, name, "", "edge") == 1
    assert pull("edge", tmp_path / "device", s3_uri=f"s3://{name}")["version"] == 1


def test_pull_from_s3_verifies_and_swaps_and_rolls_back(tmp_path, bucket, store):
    client, name = bucket
    for version in (1, 2):
        s3_releases.upload_version(s3.connect_from_env(), name, "m", store.get("edge", version))
    dest = tmp_path / "device"
    assert pull("edge", dest, s3_uri=f"s3://{name}/m")["version"] == 2
    verify_directory(dest / "current", current_manifest(dest))
    assert (dest / "current" / "model.tflite").read_bytes() == (
        store.get("edge", 2) / "model.tflite"
    ).read_bytes()
    assert (
        main(
            [
                "pull",
                "--name",
                "edge",
                "--version",
                "1",
                "--dest",
                str(dest),
                "--s3",
                f"s3://{name}/m",
                "--allow-downgrade",
            ]
        )
        == 0
    )
    assert current_manifest(dest)["version"] == 1
    assert rollback(dest)["version"] == 2


@pytest.mark.parametrize("damage", ["corrupt", "truncate", "missing"])
def test_damaged_objects_are_rejected_and_current_model_stays(tmp_path, bucket, store, damage):
    client, name = bucket
    s3_releases.upload_version(s3.connect_from_env(), name, "m", store.get("edge", 1))
    s3_releases.upload_version(s3.connect_from_env(), name, "m", store.get("edge", 2))
    dest = tmp_path / "device"
    pull("edge", dest, 1, s3_uri=f"s3://{name}/m")
    key = "m/edge/2/saved_model/variables/variables.data-00000-of-00001"
    data = client.get_object(name, key).read()
    if damage == "corrupt":
        bad = data[:500] + bytes([data[500] ^ 0x55]) + data[501:]
        pattern = "is corrupted"
    elif damage == "truncate":
        bad = data[:1000]
        pattern = "is truncated"
    else:
        bad = None
        pattern = "NoSuchKey"
    if bad is None:
        client.remove_object(name, key)
    else:
        client.put_object(name, key, io.BytesIO(bad), len(bad))
    with pytest.raises(ValueError, match=pattern):
        pull("edge", dest, s3_uri=f"s3://{name}/m")
    assert current_manifest(dest)["version"] == 1
    verify_directory(dest / "current", current_manifest(dest))
    assert not any(p.name.startswith(".staging-") for p in (dest / "releases").iterdir())


def test_manifest_naming_another_version_is_rejected(tmp_path, bucket, store):
    client, name = bucket
    s3_releases.upload_version(s3.connect_from_env(), name, "", store.get("edge", 1))
    data = json.dumps(store.read_manifest("edge", 1)).encode()  # version 1's, copied to 5
    client.put_object(name, "edge/5/manifest.json", io.BytesIO(data), len(data))
    with pytest.raises(ValueError, match="another model or version"):
        pull("edge", tmp_path / "device", 5, s3_uri=f"s3://{name}")
    bad_relpath = store.read_manifest("edge", 1)
    bad_relpath["files"] = {"../../escape": {"sha256": "0" * 64, "size": 1}}
    data = json.dumps(bad_relpath).encode()
    client.put_object(name, "edge/1/manifest.json", io.BytesIO(data), len(data))
    with pytest.raises(ValueError, match="invalid file path"):
        pull("edge", tmp_path / "device", 1, s3_uri=f"s3://{name}")
    assert not (tmp_path / "escape").exists()
    no_size = store.read_manifest("edge", 1)
    no_size["files"]["model.tflite"] = {"sha256": "f" * 64}
    data = json.dumps(no_size).encode()
    client.put_object(name, "edge/1/manifest.json", io.BytesIO(data), len(data))
    with pytest.raises(ValueError, match="entry of 'model.tflite' needs sha256 and size"):
        pull("edge", tmp_path / "device", 1, s3_uri=f"s3://{name}")


_UPLOADER = """
import sys
from kfp_edge import s3
from kfp_edge.model_store import s3_releases
client = s3.client_from_env()
print("ready", flush=True)
s3_releases.upload_version(s3.connect_from_env(), sys.argv[1], "fleet", sys.argv[2])

"""


def test_uploads_killed_at_random_points_never_show_a_partial_version(tmp_path, bucket, signer):
    """SIGKILLs 10 uploads (one new version each) at random moments: a reader sees no version
    or a complete one, and re-running an interrupted upload completes it."""
    client, name = bucket
    src = tmp_path / "src"
    src.mkdir()
    for i in range(30):
        (src / f"part-{i:02d}.bin").write_bytes(os.urandom(2000))
    (tmp_path / "model.tflite").write_bytes(os.urandom(3000))
    store = ModelStore(tmp_path / "models")
    files = {"shards": str(src), "model.tflite": str(tmp_path / "model.tflite")}
    # Kill within 1.5 upload durations measured now, whatever the machine's load.
    probe = store.publish("edge", files, {}, signer=signer)["path"]
    start = time.perf_counter()
    s3_releases.upload_version(s3.connect_from_env(), name, "probe", probe)
    window = 1.5 * (time.perf_counter() - start)
    rng = random.Random(7)
    device = tmp_path / "device"
    partial_seen, interrupted = 0, []
    for i in range(10):
        version_dir = store.publish("edge", files, {"attempt": i}, signer=signer)["path"]
        version = int(Path(version_dir).name)
        proc = subprocess.Popen(
            [sys.executable, "-c", _UPLOADER, name, version_dir],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, window))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        if version in s3_releases.list_versions(client, name, "fleet", "edge"):
            pull("edge", device, version, s3_uri=f"s3://{name}/fleet")  # complete: verifies
            assert current_manifest(device)["version"] == version
        else:
            partial_seen += any(k.startswith(f"fleet/edge/{version}/") for k in _keys(client, name))
            with pytest.raises(FileNotFoundError, match=f"no version {version}"):
                pull("edge", device, version, s3_uri=f"s3://{name}/fleet")
            interrupted.append(version_dir)
    assert partial_seen, "no kill landed inside an upload"
    for version_dir in interrupted:  # resumes over the objects it had already written
        s3_releases.upload_version(s3.connect_from_env(), name, "fleet", version_dir)
    assert s3_releases.list_versions(client, name, "fleet", "edge") == list(range(2, 12))
    assert pull("edge", device, s3_uri=f"s3://{name}/fleet")["version"] == 11
    verify_directory(device / "current", current_manifest(device))
    assert (device / "current" / "shards" / "part-07.bin").read_bytes() == (
        src / "part-07.bin"
    ).read_bytes()


def test_cli_models_over_s3_and_readable_errors(tmp_path, bucket, store, capsys, monkeypatch):
    client, name = bucket
    s3_releases.upload_version(s3.connect_from_env(), name, "fleet", store.get("edge", 1))
    s3_releases.upload_version(s3.connect_from_env(), name, "fleet", store.get("edge-2", 1))
    assert main(["models", "--s3", f"s3://{name}/fleet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines[1:]] == [["edge", "1"], ["edge-2", "1"]]
    assert main(["models", "--s3", f"s3://{name}/fleet", "--name", "edge-2"]) == 0
    assert "other" in capsys.readouterr().out

    dest = str(tmp_path / "device")
    assert main(["pull", "--name", "edge", "--dest", dest, "--s3", "s3://no-such-bucket/x"]) == 2
    assert "S3 error NoSuchBucket" in capsys.readouterr().err
    monkeypatch.setenv("KFP_EDGE_S3_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    # The client retries twice with a short backoff; no need to wait for it here.
    monkeypatch.setattr("urllib3.util.retry.Retry.get_backoff_time", lambda self: 0.0)
    assert main(["pull", "--name", "edge", "--dest", dest, "--s3", f"s3://{name}/fleet"]) == 2
    err = capsys.readouterr().err
    assert "cannot talk to S3 at http://127.0.0.1:9" in err
    assert "kfp-edge-test-secret" not in err
    assert current_manifest(dest) is None
