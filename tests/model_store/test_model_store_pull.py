"""The edge pull client from the workspace: verification, atomic swap, rollback, crashes, CLI."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kfp_edge.app.cli import main
from kfp_edge.model_store.pull import current_manifest, pull, rollback
from kfp_edge.model_store.store import ModelStore
from kfp_edge.model_versions import verify_directory


@pytest.fixture
def workspace(tmp_path, model_files, signer):
    """A workspace whose store holds signed versions 1 and 2 of ``edge`` (other .tflite bytes)."""
    ws = tmp_path / "ws"
    store = ModelStore(ws / "models")
    store.publish("edge", model_files, {"variant": "float32"}, signer=signer)
    Path(model_files["model.tflite"]).write_bytes(os.urandom(6000))
    store.publish("edge", model_files, {"variant": "dynamic_int8"}, signer=signer)
    return ws


def _current_version(dest: Path) -> int:
    manifest = current_manifest(dest)
    verify_directory(dest / "current", manifest)
    return manifest["version"]


def test_pull_latest_then_older_then_rollback(tmp_path, workspace):
    dest = tmp_path / "device"
    result = pull("edge", dest, workspace=str(workspace))
    assert result["changed"] and result["version"] == 2 and result["previous_version"] is None
    assert (dest / "current" / "model.tflite").read_bytes() == (
        workspace / "models" / "edge" / "2" / "model.tflite"
    ).read_bytes()
    assert _current_version(dest) == 2
    assert pull("edge", dest, "latest", workspace=str(workspace))["changed"] is False

    older = pull("edge", dest, 1, workspace=str(workspace), allow_downgrade=True)
    assert older["previous_version"] == 2
    assert _current_version(dest) == 1
    assert rollback(dest)["version"] == 2
    assert _current_version(dest) == 2
    assert current_manifest(dest, "previous")["version"] == 1
    assert rollback(dest)["version"] == 1  # rollback of a rollback goes forward again
    # Only current and previous are kept on the device.
    assert len([p for p in (dest / "releases").iterdir()]) == 2


def test_rollback_without_previous_is_a_clear_error(tmp_path, workspace):
    dest = tmp_path / "device"
    with pytest.raises(FileNotFoundError, match="no previous model"):
        rollback(dest)
    pull("edge", dest, 1, workspace=str(workspace))
    with pytest.raises(FileNotFoundError, match="no previous model"):
        rollback(dest)
    assert _current_version(dest) == 1


@pytest.mark.parametrize("damage", ["corrupt", "truncate", "delete"])
def test_damaged_source_is_rejected_and_current_model_stays(tmp_path, workspace, damage):
    dest = tmp_path / "device"
    pull("edge", dest, 1, workspace=str(workspace))
    before = sorted(p.name for p in (dest / "releases").iterdir())
    target = workspace / "models" / "edge" / "2" / "saved_model" / "saved_model.pb"
    data = target.read_bytes()
    if damage == "corrupt":
        target.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
        pattern = r"saved_model/saved_model\.pb is corrupted"
    elif damage == "truncate":
        target.write_bytes(data[: len(data) // 2])
        pattern = r"saved_model/saved_model\.pb is truncated"
    else:
        target.unlink()
        pattern = r"saved_model\.pb: missing"
    with pytest.raises(ValueError, match=pattern):
        pull("edge", dest, workspace=str(workspace))
    assert _current_version(dest) == 1
    assert sorted(p.name for p in (dest / "releases").iterdir()) == before  # staging removed


def test_cli_pull_rollback_models_and_errors(tmp_path, workspace, capsys):
    dest = tmp_path / "device"
    assert main(["models", "--workspace", str(workspace)]) == 0
    out = capsys.readouterr().out
    assert "edge" in out and "dynamic_int8" in out
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
                "--workspace",
                str(workspace),
            ]
        )
        == 0
    )
    assert main(["pull", "--name", "edge", "--dest", str(dest), "--workspace", str(workspace)]) == 0
    assert "version 2" in capsys.readouterr().out
    assert main(["rollback", "--dest", str(dest)]) == 0
    assert "version 1 is current" in capsys.readouterr().out
    assert (
        main(["pull", "--name", "../etc", "--dest", str(dest), "--workspace", str(workspace)]) == 2
    )
    assert "invalid model name" in capsys.readouterr().err
    assert (
        main(
            [
                "pull",
                "--name",
                "edge",
                "--version",
                "9",
                "--dest",
                str(dest),
                "--workspace",
                str(workspace),
            ]
        )
        == 2
    )
    assert "no version 9" in capsys.readouterr().err
    assert _current_version(dest) == 1


def test_pull_client_imports_neither_tensorflow_nor_pyspark(tmp_path, workspace):
    dest = tmp_path / "device"
    code = (
        "import sys\n"
        "from kfp_edge.app.cli import main\n"
        f"rc = main(['pull', '--name', 'edge', '--dest', {str(dest)!r}, "
        f"'--workspace', {str(workspace)!r}])\n"
        "import kfp_edge.s3, kfp_edge.model_store.s3_releases\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'tf_keras', 'pyspark', 'keras'))\n"
        "print(rc, heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "0 []"
    assert _current_version(dest) == 2


_LOOPING_PULLER = """
import sys
from cryptography.hazmat.primitives import serialization  # imported before the kills start
from kfp_edge.model_store.pull import pull
dest, ws = sys.argv[1], sys.argv[2]
print("ready", flush=True)
v = 1
while True:
    v = 3 - v
    pull("edge", dest, v, workspace=ws, allow_downgrade=True)
"""


def test_pulls_killed_at_random_points_leave_a_complete_current_model(tmp_path, workspace):
    """SIGKILLs a pull loop 12 times; ``current`` must always be a complete, verified version."""
    dest = tmp_path / "device"
    pull("edge", dest, 1, workspace=str(workspace))
    rng = random.Random(99)
    interrupted = 0
    for _ in range(12):
        proc = subprocess.Popen(
            [sys.executable, "-c", _LOOPING_PULLER, str(dest), str(workspace)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        assert _current_version(dest) in (1, 2)
        interrupted += any(p.name.startswith(".staging-") for p in (dest / "releases").iterdir())
    assert interrupted, "no kill landed inside a pull"
    # The device still pulls and rolls back normally after the crashes.
    pull("edge", dest, 2, workspace=str(workspace))
    pull("edge", dest, 1, workspace=str(workspace), allow_downgrade=True)
    assert rollback(dest)["version"] == 2
    assert not any(p.name.startswith(".staging-") for p in (dest / "releases").iterdir())
    assert json.loads((dest / "current" / "manifest.json").read_text())["version"] == 2


def test_cli_lists_the_edge_commands():
    from kfp_edge.app.cli import build_parser

    text = build_parser().format_help()
    for command in ("pull", "push", "rollback", "models"):
        assert command in text


_ONE_PULL = """
import sys
from kfp_edge.model_store.pull import pull
print(pull("edge", sys.argv[1], int(sys.argv[2]), workspace=sys.argv[3],
           allow_downgrade=True)["version"])
"""


def test_concurrent_pulls_on_one_device_are_serialised(tmp_path, workspace):
    dest = tmp_path / "device"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _ONE_PULL, str(dest), str(v), str(workspace)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for v in (1, 2, 1, 2)
    ]
    for p in procs:
        p.communicate(timeout=60)
        assert p.returncode == 0
    assert _current_version(dest) in (1, 2)
    previous = current_manifest(dest, "previous")
    verify_directory(dest / "previous", previous)
    assert sorted(p.name[:7] for p in (dest / "releases").iterdir()) == ["edge-v1", "edge-v2"]


def test_pull_only_some_files_for_a_small_device(tmp_path, workspace, capsys):
    dest = tmp_path / "device"
    argv = ["pull", "--name", "edge", "--dest", str(dest), "--workspace", str(workspace)]
    assert main([*argv, "--only", "model.tflite", "--only", "*.index"]) == 0
    manifest = current_manifest(dest)
    assert set(manifest["files"]) == {"model.tflite", "saved_model/variables/variables.index"}
    assert "saved_model/saved_model.pb" in manifest["omitted_files"]
    assert not (dest / "current" / "saved_model" / "saved_model.pb").exists()
    verify_directory(dest / "current", manifest)
    assert main([*argv]) == 0  # the full version is a different release: it swaps in
    assert (dest / "current" / "saved_model" / "saved_model.pb").is_file()
    assert rollback(dest)["version"] == 2
    assert main([*argv, "--only", "weights.bin"]) == 2
    assert "'weights.bin' matches no file" in capsys.readouterr().err


def test_pulling_the_installed_version_downloads_nothing(tmp_path, workspace):
    dest = tmp_path / "device"
    pull("edge", dest, workspace=str(workspace))
    installed = os.readlink(dest / "current")
    # Removing the store's files shows that nothing is read when the version is installed.
    (workspace / "models" / "edge" / "2" / "model.tflite").unlink()
    result = pull("edge", dest, workspace=str(workspace))
    assert result["changed"] is False and os.readlink(dest / "current") == installed
    assert _current_version(dest) == 2


def test_pull_module_needs_only_the_standard_library_and_minio(tmp_path, workspace):
    code = (
        "import sys\n"
        "from kfp_edge.model_store.pull import pull\n"
        f"pull('edge', {str(tmp_path / 'device')!r}, workspace={str(workspace)!r})\n"
        "import kfp_edge.s3, kfp_edge.model_store.s3_releases, minio\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'numpy', 'kfp', 'tensorflow', 'pyspark', 'pandas', 'pyarrow', 'yaml'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
