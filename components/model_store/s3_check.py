"""``kfp-edge s3-check``: does an S3 server honour what the model store relies on?

The store relies on three guarantees: a PUT with ``If-None-Match: *`` fails (412) when the key
exists (a version is never overwritten, the manifest goes last), user metadata is stored and
returned (``x-amz-meta-sha256``), and an object reads back byte for byte. Whether the server
verifies a signed payload sha256 is reported too, but not relied on: pulls verify every file's
sha256 against the signed manifest themselves.
"""

from __future__ import annotations

import hashlib
import io
import os
import uuid


def _put(conn, bucket: str, key: str, data: bytes, digest: str | None = None) -> None:
    digest = digest or hashlib.sha256(data).hexdigest()
    headers = {"If-None-Match": "*", "x-amz-meta-sha256": digest}
    conn.put_stream(bucket, key, io.BytesIO(data), len(data), digest, headers)


def _code(exc: Exception) -> str:
    return str(getattr(exc, "code", type(exc).__name__))


def _create_only(conn, bucket: str, key: str, data: bytes) -> tuple[bool, str]:
    from minio.error import S3Error

    try:
        _put(conn, bucket, key, os.urandom(16))
    except S3Error as exc:
        if _code(exc) == "PreconditionFailed":
            return True, "a second create-only PUT was refused (412)"
        return False, f"a second create-only PUT failed with {_code(exc)}, not 412"
    return False, "a second PUT with If-None-Match: * overwrote the object"


def _payload_hash(conn, bucket: str, key: str) -> tuple[bool, str]:
    from minio.error import S3Error

    try:
        _put(conn, bucket, key, b"payload", hashlib.sha256(b"other").hexdigest())
    except S3Error as exc:
        return True, f"a PUT with a wrong signed sha256 was refused ({_code(exc)})"
    return True, "not verified by the server (not relied on: pulls check every sha256)"


def check_server(conn, bucket: str, prefix: str) -> list[tuple[str, bool, str]]:
    """Probes a server under ``<prefix>/.s3-check-<id>/`` and deletes the probes after.

    Args:
        conn: A ``kfp_edge.s3.S3Connection`` with write access to the prefix.
        bucket: The bucket.
        prefix: The key prefix the store uses.

    Returns:
        ``(guarantee, honoured, detail)`` per guarantee.
    """
    base = "/".join(p for p in (prefix.strip("/"), f".s3-check-{uuid.uuid4().hex[:12]}") if p)
    client = conn.client
    data = os.urandom(4096)
    digest = hashlib.sha256(data).hexdigest()
    key = f"{base}/probe"
    results = []
    try:
        _put(conn, bucket, key, data)
        results.append(("create-only writes", *_create_only(conn, bucket, key, data)))
        stat = client.stat_object(bucket, key)
        meta = {k.lower(): v for k, v in (stat.metadata or {}).items()}
        stored = meta.get("x-amz-meta-sha256") == digest
        results.append(
            ("user metadata", stored, "stored and returned" if stored else "not returned")
        )
        response = client.get_object(bucket, key)
        try:
            same = response.read() == data
        finally:
            response.close()
            response.release_conn()
        results.append(("read back", same, "byte for byte" if same else "content differs"))
        results.append(("signed payload sha256", *_payload_hash(conn, bucket, f"{base}/bad")))
    finally:
        for name in (key, f"{base}/bad"):
            try:
                client.remove_object(bucket, name)
            except Exception:  # noqa: BLE001 (a probe left behind is harmless; say nothing)
                pass
    return results
