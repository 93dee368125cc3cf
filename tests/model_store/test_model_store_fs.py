"""The versioned store on a real filesystem: layout, names, retention, concurrency, crashes."""

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

from kfp_edge.model_store.store import ModelStore
from kfp_edge.model_versions import validate_name, validate_relpath


def _check_store(root: Path, name: str) -> dict[int, str]:
    """Asserts the store's invariants; returns version -> manifest text."""
    store = ModelStore(root)
    model_dir = root / name
    seen = {}
    for entry in model_dir.iterdir():
        if entry.name.startswith("."):
            assert entry.name.startswith((".tmp-", ".trash-")), entry
            continue
        assert entry.name.isdigit(), f"unexpected visible entry {entry}"
        manifest = store.verify(name, int(entry.name))  # complete, every sha256 right
        assert manifest["version"] == int(entry.name) and manifest["name"] == name
        seen[int(entry.name)] = (entry / "manifest.json").read_text()
    assert store.versions(name) == sorted(seen)
    assert store.latest(name) == (max(seen) if seen else None)
    return seen


def test_publish_layout_manifest_and_lookup(tmp_path, model_files):
    store = ModelStore(tmp_path / "models")
    assert store.latest("edge") is None and store.versions("edge") == []
    first = store.publish("edge", model_files, {"metrics": {"accuracy": 0.9}, "lineage": {"r": 1}})
    second = store.publish("edge", model_files, {"metrics": {"accuracy": 0.95}})
    assert (first["version"], second["version"]) == (1, 2)
    assert Path(second["path"]) == tmp_path / "models" / "edge" / "2"
    assert store.get("edge") == store.get("edge", "latest") == store.get("edge", 2)
    assert store.get("edge", "1") == Path(first["path"])

    manifest = store.read_manifest("edge", 1)
    assert manifest["metrics"] == {"accuracy": 0.9} and manifest["lineage"] == {"r": 1}
    assert manifest["created_at"].endswith("+00:00")
    assert set(manifest["files"]) == {
        "model.tflite",
        "saved_model/saved_model.pb",
        "saved_model/variables/variables.data-00000-of-00001",
        "saved_model/variables/variables.index",
    }
    tflite = Path(model_files["model.tflite"])
    entry = manifest["files"]["model.tflite"]
    import gzip
    import hashlib

    shipped = gzip.compress(tflite.read_bytes(), 9, mtime=0)  # what the gate measures
    assert entry == {
        "sha256": hashlib.sha256(tflite.read_bytes()).hexdigest(),
        "size": tflite.stat().st_size,
        "shipped": {
            "file": "model.tflite.gz",
            "encoding": "gzip",
            "sha256": hashlib.sha256(shipped).hexdigest(),
            "size": len(shipped),
        },
    }
    assert (store.get("edge", 1) / "model.tflite").read_bytes() == tflite.read_bytes()
    assert (store.get("edge", 1) / "model.tflite.gz").read_bytes() == shipped
    with pytest.raises(FileNotFoundError, match="no version 7"):
        store.get("edge", 7)
    with pytest.raises(FileNotFoundError, match="no versions"):
        store.get("other")
    with pytest.raises(ValueError, match="invalid model version"):
        store.get("edge", "-1")


def test_verify_names_a_corrupted_or_truncated_file(tmp_path, model_files):
    store = ModelStore(tmp_path / "models")
    path = Path(store.publish("edge", model_files, {})["path"])
    store.verify("edge")
    target = path / "saved_model" / "variables" / "variables.index"
    data = target.read_bytes()
    target.write_bytes(bytes([data[0] ^ 1]) + data[1:])
    with pytest.raises(ValueError, match=r"variables\.index.*corrupted"):
        store.verify("edge")
    target.write_bytes(data[:-10])
    with pytest.raises(ValueError, match=r"variables\.index.*truncated"):
        store.verify("edge")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "../evil",
        "..",
        ".",
        "a/b",
        "/abs",
        "a\\b",
        "tab\there",
        "nl\n",
        "x" * 129,
        ".hidden",
        "a..b",
        "ümlaut",
        "-lead",
        " space",
    ],
)
def test_invalid_model_names_are_rejected(tmp_path, model_files, bad):
    store = ModelStore(tmp_path / "models")
    with pytest.raises(ValueError, match="invalid model name"):
        store.publish(bad, model_files, {})
    with pytest.raises(ValueError, match="invalid model name"):
        store.versions(bad)
    assert not (tmp_path / "evil").exists() and not Path("/abs").exists()


def test_valid_names_and_file_paths():
    for good in ("edge", "edge-2", "Edge_model.v1", "a" * 128):
        assert validate_name(good) == good
    for bad in ("/etc/passwd", "../x", "a/../b", "a//b", "manifest.json", "./a", "a\x00b"):
        with pytest.raises(ValueError, match="invalid file path"):
            validate_relpath(bad)


def test_bad_publish_input_leaves_nothing(tmp_path, model_files):
    store = ModelStore(tmp_path / "models")
    store.publish("edge", model_files, {})
    with pytest.raises(ValueError, match="invalid file path"):
        store.publish("edge", {"../escape": model_files["model.tflite"]}, {})
    with pytest.raises(ValueError, match="manifest's own keys"):
        store.publish("edge", model_files, {"version": 99})
    with pytest.raises(FileNotFoundError, match="missing.tflite"):
        store.publish("edge", {"m": str(tmp_path / "missing.tflite")}, {})
    assert store.versions("edge") == [1]
    assert [p.name for p in (tmp_path / "models" / "edge").iterdir()] == ["1"]
    assert not (tmp_path / "escape").exists()


def test_colliding_names_stay_apart(tmp_path, model_files):
    store = ModelStore(tmp_path / "models")
    store.publish("name", model_files, {"who": "name"})
    for _ in range(3):
        store.publish("name-2", model_files, {"who": "name-2"})
    store.publish("name2", model_files, {"who": "name2"})
    assert store.names() == ["name", "name-2", "name2"]
    assert store.versions("name") == [1] and store.versions("name-2") == [1, 2, 3]
    assert store.read_manifest("name")["who"] == "name"
    assert store.read_manifest("name-2")["who"] == "name-2"


def test_prune_keeps_last_pinned_and_latest(tmp_path, model_files):
    store = ModelStore(tmp_path / "models")
    for _ in range(6):
        store.publish("edge", model_files, {})
    assert store.prune("edge", keep_last=2, pinned=[1, "3"]) == [2, 4]
    assert store.versions("edge") == [1, 3, 5, 6]
    with pytest.raises(ValueError, match="at least 1"):
        store.prune("edge", keep_last=0)
    assert store.prune("edge", keep_last=1) == [1, 3, 5]
    assert store.latest("edge") == 6
    # Numbers are never reused after pruning.
    assert store.publish("edge", model_files, {})["version"] == 7
    assert not any(p.name.startswith(".") for p in (tmp_path / "models" / "edge").iterdir())


def test_clean_removes_only_stale_leftovers(tmp_path, model_files):
    store = ModelStore(tmp_path / "models")
    store.publish("edge", model_files, {})
    model_dir = tmp_path / "models" / "edge"
    fresh, stale, trash = model_dir / ".tmp-1-a", model_dir / ".tmp-2-b", model_dir / ".trash-1-c"
    for d in (fresh, stale, trash):
        d.mkdir()
    old = time.time() - 7200
    os.utime(stale, (old, old))
    assert store.clean("edge") == [".tmp-2-b", ".trash-1-c"]
    assert fresh.exists() and store.versions("edge") == [1]


_PUBLISHER = """
import json, sys, time
from pathlib import Path
from kfp_edge.model_store.store import ModelStore
root, files, tag = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
count, go = int(sys.argv[4]), Path(sys.argv[5])
while not go.exists():
    time.sleep(0.005)
store = ModelStore(root)
for i in range(count):
    r = store.publish("edge", files, {"writer": tag, "seq": i})
    print(r["version"], flush=True)
"""


def test_concurrent_publishers_in_processes_never_share_a_version(tmp_path, model_files):
    root = tmp_path / "models"
    go = tmp_path / "go"
    writers, per_writer = 4, 6
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _PUBLISHER,
                str(root),
                json.dumps(model_files),
                f"w{k}",
                str(per_writer),
                str(go),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for k in range(writers)
    ]
    time.sleep(0.3)
    go.touch()  # all start at once
    reported = []
    for p in procs:
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0
        reported += [int(v) for v in out.split()]
    total = writers * per_writer
    assert sorted(reported) == list(range(1, total + 1))  # no version given twice
    manifests = _check_store(root, "edge")
    assert sorted(manifests) == list(range(1, total + 1))
    written = {(json.loads(m)["writer"], json.loads(m)["seq"]) for m in manifests.values()}
    assert written == {(f"w{k}", i) for k in range(writers) for i in range(per_writer)}


_LOOPING_PUBLISHER = """
import json, sys
from kfp_edge.model_store.store import ModelStore
store = ModelStore(sys.argv[1])
files = json.loads(sys.argv[2])
print("ready", flush=True)
while True:
    store.publish("edge", files, {"writer": "killed"})
"""


def test_publishes_killed_at_random_points_leave_old_or_complete_versions(tmp_path):
    """SIGKILLs a publisher 25 times at random moments; the store is checked after each."""
    src = tmp_path / "src"
    (src / "saved_model" / "variables").mkdir(parents=True)
    for i in range(24):  # many files so that kills land at many different points
        (src / "saved_model" / "variables" / f"part-{i:02d}").write_bytes(os.urandom(40_000))
    (src / "model.tflite").write_bytes(os.urandom(60_000))
    files = {"saved_model": str(src / "saved_model"), "model.tflite": str(src / "model.tflite")}
    root = tmp_path / "models"
    # Kill within ~3 publish durations measured now, so the kills land before, inside and
    # after publishes whatever the machine's load.
    start = time.perf_counter()
    ModelStore(tmp_path / "probe").publish("probe", files, {})
    window = 3 * (time.perf_counter() - start)
    rng = random.Random(1234)
    history: dict[int, str] = {}
    leftovers = 0
    for _ in range(25):
        proc = subprocess.Popen(
            [sys.executable, "-c", _LOOPING_PUBLISHER, str(root), json.dumps(files)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, window))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        if not (root / "edge").exists():
            continue
        seen = _check_store(root, "edge")
        for version, text in history.items():  # nothing complete is ever changed or lost
            assert seen[version] == text
        history = seen
        leftovers = max(
            leftovers, sum(p.name.startswith(".tmp-") for p in (root / "edge").iterdir())
        )
    assert history, "no publish ever completed: the kills were too early to test anything"
    assert leftovers > 0, "no kill landed inside a publish"
    # A killed publish never consumes a number: complete versions are exactly 1..n.
    assert sorted(history) == list(range(1, len(history) + 1))
    # After the crashes a normal publish still gets the next number, and cleanup works.
    store = ModelStore(root)
    assert store.publish("edge", files, {})["version"] == max(history) + 1
    store.clean("edge", older_than_s=0)
    assert not any(p.name.startswith(".") for p in (root / "edge").iterdir())
