"""Model store: the cost of safety (hashing, fsync, atomic rename, verification) side by side.

Measured in one run on the same files:

- ``copytree``: a plain ``shutil.copytree`` of the model (the baseline: no hashes, no fsync);
- ``copy + sha256``: read, hash and write every file, without fsync (isolates the hashing);
- ``publish (unsigned)``: ``ModelStore.publish`` (copy + sha256 + gzip of the .tflite + fsync +
  manifest + rename);
- ``publish (signed)``: the same with the Ed25519 signature of the manifest (target: the
  signature costs less than 5 %);
- ``pull (workspace)``: ``pull`` from the PV (signature check + copy + verify + atomic swap);
- ``signature check`` / ``signing``: ``signing.verify`` / ``signing.sign`` of one manifest alone,
  to set against a pull / a publish (target: less than 5 % of it);
- ``plain PUT``: ``Minio.put_object`` of every file to a loopback S3 server (moto);
- ``upload_version``: our upload (streamed signed PUTs with If-None-Match, manifest last);
- ``pull (s3)``: ``pull --s3`` (download + verify + decompress + atomic swap).
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import time
from pathlib import Path


def _model(root: Path, total_mb: int) -> dict:
    """A SavedModel-shaped tree: one large variables file, a few small ones, one .tflite."""
    saved = root / "saved_model"
    (saved / "variables").mkdir(parents=True)
    (saved / "saved_model.pb").write_bytes(os.urandom(200_000))
    (saved / "variables" / "variables.index").write_bytes(os.urandom(4_000))
    (saved / "variables" / "variables.data-00000-of-00001").write_bytes(
        os.urandom(total_mb * 1024 * 1024 * 3 // 4)
    )
    (root / "model.tflite").write_bytes(os.urandom(total_mb * 1024 * 1024 // 4))
    return {"saved_model": str(saved), "model.tflite": str(root / "model.tflite")}


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def run(quick: bool = False) -> dict:
    """Runs the benchmark; ``quick`` uses an 8 MB model and one repeat."""
    import logging

    from minio import Minio
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise

    from kfp_edge import s3
    from kfp_edge.model_store import s3_releases, signing
    from kfp_edge.model_store.pull import pull
    from kfp_edge.model_store.store import ModelStore

    total_mb, repeats = (8, 1) if quick else (64, 3)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = _model(tmp / "src", total_mb)
        size = sum(p.stat().st_size for p in (tmp / "src").rglob("*") if p.is_file())
        store = ModelStore(tmp / "ws" / "models")
        counter = iter(range(10_000))
        signing.generate_keys(tmp / "key.pem", tmp / "key.pub")
        key = signing.load_private_key(tmp / "key.pem")
        trusted = signing.load_public_keys([tmp / "key.pub"])
        os.environ[signing.ENV_TRUSTED_KEYS] = str(tmp / "key.pub")

        def copytree():
            shutil.copytree(tmp / "src", tmp / f"copy-{next(counter)}")

        def copy_and_hash():
            import hashlib

            out = tmp / f"hashed-{next(counter)}"
            for src in sorted((tmp / "src").rglob("*")):
                if src.is_file():
                    dst = out / src.relative_to(tmp / "src")
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    data = src.read_bytes()
                    hashlib.sha256(data).hexdigest()
                    dst.write_bytes(data)

        def publish_unsigned():
            store.publish("bench-unsigned", files, {})

        def publish():
            store.publish("bench", files, {}, signer=lambda m: signing.sign(m, key))

        def check_signature():
            signing.verify(store.read_manifest("bench", 1), trusted, "bench")

        def sign():
            signing.sign(store.read_manifest("bench", 1), key)

        def pull_ws():
            pull("bench", tmp / f"dev-{next(counter)}", workspace=str(tmp / "ws"))

        timings = {
            "copytree": _best(copytree, repeats),
            "copy + sha256 (no fsync)": _best(copy_and_hash, repeats),
            "publish (unsigned)": _best(publish_unsigned, repeats),
            "publish (signed)": _best(publish, repeats),
            "pull (workspace)": _best(pull_ws, repeats),
            "signature check": _best(check_signature, repeats),
            "signing": _best(sign, repeats),
        }

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            env = {
                s3.ENV_ENDPOINT: f"http://{host}:{port}",
                s3.ENV_ACCESS_KEY: "bench",
                s3.ENV_SECRET_KEY: "bench-secret",
            }
            os.environ.update(env)
            conn = s3.connect_from_env()
            client: Minio = conn.client
            client.make_bucket("bench")
            version_dir = store.get("bench", 1)
            manifest_files = store.read_manifest("bench", 1)["files"]

            def plain_put():
                n = next(counter)
                for rel in manifest_files:
                    data = (version_dir / rel).read_bytes()
                    client.put_object("bench", f"plain/{n}/{rel}", io.BytesIO(data), len(data))

            versions = iter(store.versions("bench"))

            def upload():
                s3_releases.upload_version(
                    conn, "bench", "fleet", store.get("bench", next(versions))
                )

            def pull_s3():
                pull("bench", tmp / f"dev-{next(counter)}", s3_uri="s3://bench/fleet")

            timings["plain PUT"] = _best(plain_put, repeats)
            timings["upload_version"] = _best(upload, repeats)
            timings["pull (s3)"] = _best(pull_s3, repeats)
        finally:
            server.stop()
            for name in (*env, signing.ENV_TRUSTED_KEYS):
                os.environ.pop(name, None)

    for name, seconds in timings.items():
        rows.append(
            {
                "operation": name,
                "MB": round(size / 1e6, 1),
                "seconds": seconds,
                "MB/s": size / 1e6 / seconds,
            }
        )
    return {
        "name": "model_store",
        "rows": rows,
        "ratios": {
            "publish / copytree": timings["publish (signed)"] / timings["copytree"],
            "publish / copy_sha256": timings["publish (signed)"]
            / timings["copy + sha256 (no fsync)"],
            "publish signed / unsigned (target < 1.05)": timings["publish (signed)"]
            / timings["publish (unsigned)"],
            "signing / publish (target < 0.05)": timings["signing"] / timings["publish (signed)"],
            "signature check / pull_workspace (target < 0.05)": timings["signature check"]
            / timings["pull (workspace)"],
            "signature check / pull_s3 (target < 0.05)": timings["signature check"]
            / timings["pull (s3)"],
            "pull_workspace / copytree": timings["pull (workspace)"] / timings["copytree"],
            "upload_version / plain_put": timings["upload_version"] / timings["plain PUT"],
        },
        "notes": (
            f"{total_mb} MB model, best of {repeats}; the loopback S3 server is moto (in-process "
            "threads), so S3 figures compare client overheads, not a real MinIO."
        ),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick=True), indent=2))
