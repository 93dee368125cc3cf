"""The attacks of issue #16, each against the real client: local store, loopback S3, LiteRT.

Each test failed on the code before the issue: an attacker's model installed "verified", a
deleted manifest moved devices back, a silent server hung ``pull`` for minutes, and so on.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kfp_edge import s3
from kfp_edge.app.cli import main
from kfp_edge.model_store import s3_releases, signing
from kfp_edge.model_store.pull import current_manifest, pull, rollback
from kfp_edge.model_store.store import ModelStore
from kfp_edge.model_versions import MAX_MANIFEST_BYTES, verify_directory


@pytest.fixture
def store(signed_store):
    """A workspace store with signed versions 1 and 2 of ``edge`` (tests/model_store/conftest)."""
    return signed_store


def _ws(store) -> str:
    return str(store.root.parent)


def _put_json(client, bucket: str, key: str, value) -> None:
    data = json.dumps(value).encode()
    client.put_object(bucket, key, io.BytesIO(data), len(data))


def _attacker_signer(tmp_path):
    private, public = tmp_path / "evil.pem", tmp_path / "evil.pub"
    signing.generate_keys(private, public)
    key = signing.load_private_key(private)
    return lambda manifest: signing.sign(manifest, key)


# -- 1. authenticity ------------------------------------------------------------------------------


def test_a_model_pushed_by_anyone_with_bucket_write_access_is_refused(tmp_path, bucket, store):
    client, name = bucket
    conn = s3.connect_from_env()
    s3_releases.upload_version(conn, name, "", store.get("edge", 1))
    dest = tmp_path / "device"
    assert pull("edge", dest, s3_uri=f"s3://{name}")["version"] == 1
    # The attacker publishes version 2: their own model, unsigned, with a matching manifest.
    evil = ModelStore(tmp_path / "evil" / "models")
    (tmp_path / "evil.tflite").write_bytes(b"attacker model" * 100)
    for _ in range(2):
        evil.publish("edge", {"model.tflite": str(tmp_path / "evil.tflite")}, {})
    s3_releases.upload_version(conn, name, "", evil.get("edge", 2))
    with pytest.raises(ValueError, match="unsigned; refused"):
        pull("edge", dest, s3_uri=f"s3://{name}")
    # Signed with a key of their own: not trusted.
    signed = ModelStore(tmp_path / "evil2" / "models")
    attacker = _attacker_signer(tmp_path)
    for _ in range(3):
        signed.publish("edge", {"model.tflite": str(tmp_path / "evil.tflite")}, {}, attacker)
    s3_releases.upload_version(conn, name, "", signed.get("edge", 3))
    with pytest.raises(ValueError, match="not trusted; refused"):
        pull("edge", dest, s3_uri=f"s3://{name}")
    # A genuine manifest with the model's sha256 swapped (man in the middle): tampered.
    manifest = store.read_manifest("edge", 2)
    manifest["version"] = 4
    manifest["files"]["model.tflite"]["sha256"] = hashlib.sha256(b"evil").hexdigest()
    _put_json(client, name, "edge/4/manifest.json", manifest)
    with pytest.raises(ValueError, match="tampered"):
        pull("edge", dest, s3_uri=f"s3://{name}")
    assert current_manifest(dest)["version"] == 1
    verify_directory(dest / "current", current_manifest(dest))


def test_device_without_a_trusted_key_installs_nothing(tmp_path, store, monkeypatch, capsys):
    monkeypatch.delenv("KFP_EDGE_TRUSTED_KEYS")
    dest = tmp_path / "device"
    argv = ["pull", "--name", "edge", "--dest", str(dest), "--workspace", _ws(store)]
    assert main(argv) == 2
    assert "no trusted public key" in capsys.readouterr().err
    other = tmp_path / "other.pub"
    signing.generate_keys(tmp_path / "other.pem", other)
    assert main([*argv, "--trusted-key", str(other)]) == 2
    assert "not trusted" in capsys.readouterr().err
    assert current_manifest(dest) is None


def test_keys_generate_never_overwrites_and_keeps_the_private_key_private(tmp_path, capsys):
    private, public = tmp_path / "k.pem", tmp_path / "k.pub"
    assert main(["keys", "generate", "--private", str(private), "--public", str(public)]) == 0
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    out = capsys.readouterr().out
    assert "PRIVATE KEY" not in out and "key id" in out
    assert len(signing.load_public_keys([public])) == 1
    before = private.read_bytes()
    assert main(["keys", "generate", "--private", str(private), "--public", str(public)]) == 2
    assert "never overwritten" in capsys.readouterr().err
    assert private.read_bytes() == before


# -- 2. anti-rollback -----------------------------------------------------------------------------


def test_deleting_the_newest_manifest_does_not_move_devices_back(tmp_path, bucket, store):
    client, name = bucket
    conn = s3.connect_from_env()
    for version in (1, 2):
        s3_releases.upload_version(conn, name, "", store.get("edge", version))
    dest = tmp_path / "device"
    assert pull("edge", dest, s3_uri=f"s3://{name}")["version"] == 2
    client.remove_object(name, "edge/2/manifest.json")
    with pytest.raises(ValueError, match="older than version 2, already installed"):
        pull("edge", dest, s3_uri=f"s3://{name}")
    assert current_manifest(dest)["version"] == 2
    # Old content re-uploaded as a new version: the signature covers the version number.
    old = store.read_manifest("edge", 1)
    old["version"] = 3
    _put_json(client, name, "edge/3/manifest.json", old)
    with pytest.raises(ValueError, match="tampered"):
        pull("edge", dest, s3_uri=f"s3://{name}")
    # An operator may still go back on purpose; rollback stays local.
    assert pull("edge", dest, 1, s3_uri=f"s3://{name}", allow_downgrade=True)["version"] == 1
    assert rollback(dest)["version"] == 2


def test_the_record_survives_a_rollback_and_a_lost_current_link(tmp_path, store):
    dest = tmp_path / "device"
    pull("edge", dest, workspace=_ws(store))
    pull("edge", dest, 1, workspace=_ws(store), allow_downgrade=True)
    (dest / "current").unlink()
    with pytest.raises(ValueError, match="older than version 2"):
        pull("edge", dest, 1, workspace=_ws(store))


# -- 4. never hang --------------------------------------------------------------------------------


@pytest.fixture
def silent_server():
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""
    sock = socket.create_server(("127.0.0.1", 0))
    held, stop = [], threading.Event()

    def accept():
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    sock.close()


def test_a_server_that_never_answers_fails_the_pull_in_seconds(
    tmp_path, silent_server, monkeypatch, capsys
):
    monkeypatch.setenv("KFP_EDGE_S3_ENDPOINT", silent_server)
    monkeypatch.setenv("KFP_EDGE_S3_ACCESS_KEY", "device")
    monkeypatch.setenv("KFP_EDGE_S3_SECRET_KEY", "device-secret")
    monkeypatch.setenv("KFP_EDGE_S3_READ_TIMEOUT", "1")
    start = time.monotonic()
    argv = ["pull", "--name", "edge", "--dest", str(tmp_path / "d"), "--s3", "s3://bkt/m"]
    assert main(argv) == 2
    assert time.monotonic() - start < 15  # was more than 10 minutes
    err = capsys.readouterr().err
    assert "cannot talk to S3" in err and "timed out" in err.lower() and len(err.splitlines()) == 1


_HANGING_PULL = """
import sys
from kfp_edge.model_store.pull import pull
print("ready", flush=True)
pull("edge", sys.argv[1], s3_uri="s3://bkt/m")
"""


def test_rollback_does_not_wait_behind_a_hanging_pull(tmp_path, store, silent_server):
    dest = tmp_path / "device"
    pull("edge", dest, workspace=_ws(store))
    pull("edge", dest, 1, workspace=_ws(store), allow_downgrade=True)
    env = dict(
        os.environ,
        KFP_EDGE_S3_ENDPOINT=silent_server,
        KFP_EDGE_S3_ACCESS_KEY="a",
        KFP_EDGE_S3_SECRET_KEY="b",
        KFP_EDGE_S3_READ_TIMEOUT="30",
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", _HANGING_PULL, str(dest)], env=env, stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(0.5)
        start = time.monotonic()
        assert rollback(dest)["version"] == 2
        assert time.monotonic() - start < 5 and proc.poll() is None  # the pull still hangs
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_lock_waits_are_bounded(tmp_path, store):
    dest = tmp_path / "device"
    pull("edge", dest, workspace=_ws(store))
    with open(dest / ".lock", "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # a stuck process holding the lock
        with pytest.raises(TimeoutError, match="held the lock for over 0.3 s"):
            rollback(dest, lock_timeout_s=0.3)


# -- 5. bounded input -----------------------------------------------------------------------------


def test_an_object_is_read_only_up_to_its_declared_size(tmp_path, bucket):
    client, name = bucket
    big = os.urandom(3 * 1024 * 1024)
    client.put_object(name, "big", io.BytesIO(big), len(big))
    out = tmp_path / "out"
    digest, size = s3_releases.download_file(client, name, "big", out, 10, time.monotonic() + 60)
    assert size == 11 and out.stat().st_size == 11  # one byte more proves "too long"


def test_oversized_objects_and_manifests_and_empty_releases_are_refused(tmp_path, bucket, store):
    client, name = bucket
    conn = s3.connect_from_env()
    s3_releases.upload_version(conn, name, "", store.get("edge", 1))
    key = "edge/1/saved_model/saved_model.pb"
    big = os.urandom(2 * 1024 * 1024)
    client.put_object(name, key, io.BytesIO(big), len(big))
    dest = tmp_path / "device"
    with pytest.raises(ValueError, match=r"saved_model\.pb is too long: more than the 3000"):
        pull("edge", dest, s3_uri=f"s3://{name}")
    huge = b" " * (MAX_MANIFEST_BYTES + 10)
    client.put_object(name, "edge/7/manifest.json", io.BytesIO(huge), len(huge))
    with pytest.raises(ValueError, match="manifest larger than"):
        pull("edge", dest, 7, s3_uri=f"s3://{name}")
    empty = {**store.read_manifest("edge", 1), "version": 8, "files": {}}
    _put_json(client, name, "edge/8/manifest.json", empty)
    with pytest.raises(ValueError, match=r"lacks model\.tflite"):
        pull("edge", dest, 8, s3_uri=f"s3://{name}")
    assert current_manifest(dest) is None


def test_smoke_load_rejects_a_model_litert_cannot_load(tmp_path, store):
    dest = tmp_path / "device"
    with pytest.raises(ValueError, match="does not load in LiteRT"):  # random bytes
        pull("edge", dest, workspace=_ws(store), smoke_load=True)
    assert current_manifest(dest) is None
    assert pull("edge", dest, workspace=_ws(store))["changed"]


# -- 6. self-repair -------------------------------------------------------------------------------


def test_verify_repairs_a_damaged_install_and_a_torn_manifest_is_not_installed(
    tmp_path, store, capsys
):
    dest = tmp_path / "device"
    pull("edge", dest, 1, workspace=_ws(store))
    pull("edge", dest, workspace=_ws(store))
    model = dest / "current" / "model.tflite"
    good = model.read_bytes()
    model.write_bytes(b"\0" * len(good))
    argv = ["pull", "--name", "edge", "--dest", str(dest), "--workspace", _ws(store)]
    assert main(argv) == 0 and "already current" in capsys.readouterr().out  # not checked
    assert main([*argv, "--verify"]) == 0
    assert "repaired edge version 2" in capsys.readouterr().out
    assert model.read_bytes() == good
    assert current_manifest(dest, "previous")["version"] == 1  # previous kept
    (dest / "current" / "manifest.json").write_text('{"name": "edge", "vers')  # torn
    assert current_manifest(dest) is None
    assert main(argv) == 0
    verify_directory(dest / "current", current_manifest(dest))


# -- 7. symlinks ----------------------------------------------------------------------------------


def test_publishing_refuses_symlinks_anywhere_in_a_directory(tmp_path, model_files):
    secret = tmp_path / "credentials"
    secret.write_text("aws_secret_access_key=hunter2")
    saved = Path(model_files["saved_model"])
    store = ModelStore(tmp_path / "models")
    (saved / "assets").mkdir()
    (saved / "assets" / "vocab.txt").symlink_to(secret)
    with pytest.raises(ValueError, match=r"vocab\.txt: is a symlink"):
        store.publish("edge", model_files, {})
    (saved / "assets" / "vocab.txt").unlink()
    (saved / "extra").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(ValueError, match="extra: is a symlink"):
        store.publish("edge", model_files, {})
    assert store.versions("edge") == []
    assert "hunter2" not in "".join(
        p.read_text(errors="ignore") for p in store.root.rglob("*") if p.is_file()
    )


# -- 8. errors ------------------------------------------------------------------------------------


def test_os_errors_exit_2_with_one_line(tmp_path, store, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    argv = ["pull", "--name", "edge", "--dest", str(blocker / "device"), "--workspace", _ws(store)]
    assert main(argv) == 2  # NotADirectoryError: a traceback and exit 1 before
    err = capsys.readouterr().err
    assert err.startswith("kfp-edge pull: error: ") and len(err.splitlines()) == 1


def test_s3_errors_without_a_message_are_explained():
    from minio.error import S3Error

    exc = S3Error(None, "AccessDenied", None, "r", "i", "h")
    assert "read-only" in s3.explain(exc)
    assert s3.explain(S3Error(None, "403", None, "r", "i", "h")).startswith("403: HTTP status")


def test_s3_check_reports_what_the_server_honours(bucket, capsys):
    _, name = bucket
    assert main(["s3-check", "--s3", f"s3://{name}/models"]) == 0
    out = capsys.readouterr().out
    for guarantee in ("create-only writes", "user metadata", "read back"):
        assert f"ok    {guarantee}" in out
    client = s3.client_from_env()
    assert list(client.list_objects(name, recursive=True)) == []  # probes removed


def test_a_download_past_its_deadline_is_abandoned(tmp_path, bucket):
    client, name = bucket
    client.put_object(name, "obj", io.BytesIO(b"x" * 1000), 1000)
    with pytest.raises(TimeoutError, match="exceeded its deadline"):
        s3_releases.download_file(client, name, "obj", tmp_path / "o", 1000, time.monotonic() - 1)


def test_the_shipped_copy_is_checked_before_and_after_decompression(tmp_path, bucket, store):
    import gzip

    client, name = bucket
    s3_releases.upload_version(s3.connect_from_env(), name, "", store.get("edge", 1))
    dest = tmp_path / "device"
    key = "edge/1/model.tflite.gz"
    shipped = client.get_object(name, key).read()
    bad = shipped[:-9] + bytes([shipped[-9] ^ 1]) + shipped[-8:]
    client.put_object(name, key, io.BytesIO(bad), len(bad))
    with pytest.raises(ValueError, match=r"model\.tflite\.gz is corrupted"):
        pull("edge", dest, s3_uri=f"s3://{name}")
    # A gzip that is genuine per the manifest but holds other bytes cannot exist without the
    # signing key; the raw check after decompression is what catches a wrong decoder.
    raw = gzip.decompress(shipped)
    assert (store.get("edge", 1) / "model.tflite").read_bytes() == raw
    client.put_object(name, key, io.BytesIO(shipped), len(shipped))
    assert pull("edge", dest, s3_uri=f"s3://{name}")["version"] == 1
    assert (dest / "current" / "model.tflite").read_bytes() == raw
    assert not (dest / "current" / "model.tflite.gz").exists()  # the device keeps raw bytes


def test_only_must_keep_the_model(tmp_path, store, capsys):
    argv = ["pull", "--name", "edge", "--dest", str(tmp_path / "d"), "--workspace", _ws(store)]
    assert main([*argv, "--only", "saved_model/*"]) == 2
    assert "--only must keep model.tflite" in capsys.readouterr().err
