"""Distribution of model versions through an S3-compatible object store (MinIO in the cluster).

Layout in the bucket: ``<prefix>/<name>/<version>/<file>`` and
``<prefix>/<name>/<version>/manifest.json``. The manifest is uploaded last and only with
``If-None-Match: *``, so a version exists for readers exactly when its manifest does, and an
existing version is never overwritten. A file with a shipped copy (``model.tflite``) is uploaded
as that compressed copy (``model.tflite.gz``) only. Every object is streamed from its file in one
PUT whose payload sha256 is signed, and carries its sha256 in the user metadata ``sha256``.

Reads are bounded: a manifest is read up to ``MAX_MANIFEST_BYTES`` and an object only up to the
size its manifest declares (plus one byte, to tell that it is too long); a whole download stops at
the connection's deadline. Endpoint, bucket and credentials: see ``kfp_edge.s3``.

Uses the ``minio`` client only (``pip install kfp-edge[s3]``); never TensorFlow or PySpark.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from kfp_edge.model_versions import (
    MANIFEST_FILE,
    MAX_MANIFEST_BYTES,
    parse_version,
    read_json_bounded,
    sha256_file,
    validate_name,
    validate_relpath,
)

_MAX_SINGLE_PUT = 5 * 1024**3
_CHUNK = 1 << 16


def _key(prefix: str, *parts: str) -> str:
    prefix = prefix.strip("/")
    return "/".join([prefix, *parts] if prefix else list(parts))


def version_prefix(prefix: str, name: str, version: int) -> str:
    """Returns the key prefix of one version: ``<prefix>/<name>/<version>/``."""
    return _key(prefix, validate_name(name), str(version)) + "/"


def _is_code(exc: Exception, *codes: str) -> bool:
    return getattr(exc, "code", None) in codes


def _put_file(conn, bucket: str, key: str, path: Path, digest: str, content_type: str) -> None:
    """Streams one file to a new object (``If-None-Match: *``) with its signed sha256."""
    size = path.stat().st_size
    if size > _MAX_SINGLE_PUT:
        raise ValueError(f"{path}: larger than 5 GiB, too large to publish")
    headers = {"Content-Type": content_type, "If-None-Match": "*", "x-amz-meta-sha256": digest}
    with open(path, "rb") as body:
        conn.put_stream(bucket, key, body, size, digest, headers)


def object_sha256(client, bucket: str, key: str) -> str | None:
    """Returns the sha256 recorded in an object's metadata, or None if there is no object."""
    from minio.error import S3Error

    try:
        stat = client.stat_object(bucket, key)
    except S3Error as exc:
        if _is_code(exc, "NoSuchKey", "NoSuchObject", "ResourceNotFound"):
            return None
        raise
    meta = {k.lower(): v for k, v in (stat.metadata or {}).items()}
    return meta.get("x-amz-meta-sha256", "")


def _upload_plan(version_dir: Path, manifest: dict) -> list[tuple[str, dict]]:
    """Returns ``(relative path, entry)`` of the objects to upload: shipped copies for raw."""
    plan = []
    for relpath, entry in sorted(manifest["files"].items()):
        validate_relpath(relpath)
        shipped = entry.get("shipped")
        plan.append((shipped["file"], shipped) if shipped else (relpath, entry))
    for relpath, entry in plan:
        digest, size = sha256_file(version_dir / relpath)
        if digest != entry["sha256"] or size != entry["size"]:
            raise ValueError(f"{version_dir / relpath}: does not match its manifest; not uploaded")
    return plan


def upload_version(conn, bucket: str, prefix: str, version_dir: str | os.PathLike) -> dict:
    """Uploads one store version (a directory with its manifest) to the bucket.

    Files go first, each created only if absent (an object left by an interrupted upload of
    this same version is accepted when its sha256 matches); the manifest goes last, created
    only if absent. A version that already has a manifest in the bucket is never touched.

    Args:
        conn: An ``kfp_edge.s3.S3Connection``.
        bucket: The bucket (must exist).
        prefix: Key prefix (may be empty).
        version_dir: The local version directory, e.g. ``ModelStore.get(name, v)``.

    Returns:
        ``{"bucket", "prefix", "name", "version", "manifest_key", "objects"}``.

    Raises:
        FileExistsError: If the version already exists in the bucket, or one of its objects
            exists with different content.
        ValueError: If a local file does not match the manifest.
        TimeoutError: If the upload takes longer than the connection's deadline.
    """
    from minio.error import S3Error

    version_dir = Path(version_dir)
    manifest = read_json_bounded(version_dir / MANIFEST_FILE)
    name, version = validate_name(manifest["name"]), int(manifest["version"])
    base = version_prefix(prefix, name, version)
    manifest_key = base + MANIFEST_FILE
    location = f"s3://{bucket}/{manifest_key}"
    client, deadline = conn.client, conn.deadline()
    if object_sha256(client, bucket, manifest_key) is not None:
        raise FileExistsError(f"{location}: version {version} of {name!r} already exists")
    plan = _upload_plan(version_dir, manifest)
    for relpath, entry in plan:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{location}: upload exceeded {conn.deadline_s:g} s; retry")
        key = base + relpath
        try:
            _put_file(conn, bucket, key, version_dir / relpath, entry["sha256"], _TYPE)
        except S3Error as exc:
            if not _is_code(exc, "PreconditionFailed"):
                raise
            if object_sha256(client, bucket, key) != entry["sha256"]:
                raise FileExistsError(
                    f"s3://{bucket}/{key}: exists with other content; another publisher is "
                    f"writing version {version} of {name!r}"
                ) from exc
    manifest_path = version_dir / MANIFEST_FILE
    try:
        digest, _ = sha256_file(manifest_path)
        _put_file(conn, bucket, manifest_key, manifest_path, digest, "application/json")
    except S3Error as exc:
        if _is_code(exc, "PreconditionFailed"):
            raise FileExistsError(
                f"{location}: version {version} of {name!r} already exists"
            ) from exc
        raise
    return {
        "bucket": bucket,
        "prefix": prefix.strip("/"),
        "name": name,
        "version": version,
        "manifest_key": manifest_key,
        "objects": len(plan) + 1,
    }


_TYPE = "application/octet-stream"


def _candidates(client, bucket: str, prefix: str, name: str) -> list[int]:
    """Version numbers that have any object under them, descending (manifest not checked)."""
    base = _key(prefix, validate_name(name)) + "/"
    numbers = []
    for obj in client.list_objects(bucket, prefix=base, recursive=False):
        if not obj.is_dir:
            continue
        segment = obj.object_name[len(base) :].strip("/")
        try:
            number = parse_version(segment)
        except ValueError:
            continue
        if number is not None:
            numbers.append(number)
    return sorted(numbers, reverse=True)


def _has_manifest(client, bucket: str, prefix: str, name: str, number: int) -> bool:
    key = version_prefix(prefix, name, number) + MANIFEST_FILE
    return object_sha256(client, bucket, key) is not None


def list_versions(client, bucket: str, prefix: str, name: str) -> list[int]:
    """Returns the versions of a model in the bucket that have a manifest, ascending.

    Listing ``<prefix>/<name>/`` with the trailing slash keeps ``name`` and ``name-2`` apart.
    """
    return sorted(
        n
        for n in _candidates(client, bucket, prefix, name)
        if _has_manifest(client, bucket, prefix, name, n)
    )


def latest_version(client, bucket: str, prefix: str, name: str) -> int | None:
    """Returns the highest version with a manifest (checking from the top down), or None."""
    for number in _candidates(client, bucket, prefix, name):
        if _has_manifest(client, bucket, prefix, name, number):
            return number
    return None


def list_names(client, bucket: str, prefix: str) -> list[str]:
    """Returns the model names under a prefix of the bucket."""
    base = _key(prefix, "x")[:-1]
    names = []
    for obj in client.list_objects(bucket, prefix=base, recursive=False):
        segment = obj.object_name[len(base) :].strip("/")
        if obj.is_dir and segment:
            try:
                names.append(validate_name(segment))
            except ValueError:
                continue
    return sorted(names)


def read_manifest(client, bucket: str, prefix: str, name: str, version: int | str) -> dict:
    """Downloads and parses the manifest of a version (``latest``: the highest with one).

    Raises:
        FileNotFoundError: If the version (or any version) does not exist in the bucket.
        ValueError: If the manifest is not valid JSON or names another model or version.
    """
    from minio.error import S3Error

    number = parse_version(version)
    if number is None:
        number = latest_version(client, bucket, prefix, name)
        if number is None:
            raise FileNotFoundError(f"s3://{bucket}/{_key(prefix, name)}/: no versions of {name!r}")
    key = version_prefix(prefix, name, number) + MANIFEST_FILE
    try:
        response = client.get_object(bucket, key)
        try:
            data = response.read(MAX_MANIFEST_BYTES + 1)
        finally:
            response.close()
            response.release_conn()
    except S3Error as exc:
        if _is_code(exc, "NoSuchKey", "NoSuchObject"):
            raise FileNotFoundError(
                f"s3://{bucket}/{key}: no version {number} of {name!r}"
            ) from exc
        raise
    if len(data) > MAX_MANIFEST_BYTES:
        raise ValueError(f"s3://{bucket}/{key}: manifest larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        manifest = json.loads(data)
    except ValueError as exc:
        raise ValueError(f"s3://{bucket}/{key}: manifest is not valid JSON ({exc})") from exc
    if manifest.get("name") != name or manifest.get("version") != number:
        raise ValueError(f"s3://{bucket}/{key}: manifest describes another model or version")
    return manifest


def download_file(
    client, bucket: str, key: str, dest: Path, max_size: int, deadline: float
) -> tuple[str, int]:
    """Streams one object to a new local file, at most ``max_size + 1`` bytes of it.

    Args:
        client: A ``minio.Minio`` client.
        bucket: The bucket.
        key: The object key.
        dest: The new local file.
        max_size: The size the manifest declares; one byte more proves the object too long.
        deadline: ``time.monotonic()`` value after which the download is abandoned.

    Returns:
        The sha256 and size of what was written.

    Raises:
        TimeoutError: If the deadline passes.
    """
    digest = hashlib.sha256()
    size = 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    response = client.get_object(bucket, key)
    try:
        with open(dest, "xb") as f:
            for chunk in response.stream(_CHUNK):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"s3://{bucket}/{key}: download exceeded its deadline")
                chunk = chunk[: max_size + 1 - size]
                digest.update(chunk)
                f.write(chunk)
                size += len(chunk)
                if size > max_size:
                    break
            f.flush()
            os.fsync(f.fileno())
    finally:
        response.close()
        response.release_conn()
    return digest.hexdigest(), size
