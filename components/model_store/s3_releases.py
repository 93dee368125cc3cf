"""Distribution of model versions through an S3-compatible object store (MinIO in the cluster).

Layout in the bucket: ``<prefix>/<name>/<version>/<file>`` and
``<prefix>/<name>/<version>/manifest.json``. The manifest is uploaded last and only with
``If-None-Match: *``, so a version exists for readers exactly when its manifest does, and an
existing version is never overwritten. Every object carries its sha256 in
``x-amz-checksum-sha256`` (the server verifies it) and in the user metadata ``sha256``.

Endpoint, bucket and credentials come from the environment, never from pipeline parameters:

``KFP_EDGE_S3_ENDPOINT``
    ``http://host:port`` or ``https://host:port`` (plain ``host:port`` means https).
``KFP_EDGE_S3_ACCESS_KEY`` / ``KFP_EDGE_S3_SECRET_KEY``
    Credentials. In the cluster: the Kubernetes Secret keys ``accesskey`` / ``secretkey``
    (the keys of Kubeflow's ``mlpipeline-minio-artifact`` secret) mapped with kfp-kubernetes
    ``use_secret_as_env``.
``KFP_EDGE_S3_BUCKET``
    Default bucket when none is given.
``KFP_EDGE_S3_REGION``
    Optional region.

Uses the ``minio`` client only (``pip install kfp-edge[s3]``); never TensorFlow or PySpark.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

from kfp_edge.model_versions import MANIFEST_FILE, parse_version, validate_name, validate_relpath

_MAX_SINGLE_PUT = 5 * 1024**3


def _key(prefix: str, *parts: str) -> str:
    prefix = prefix.strip("/")
    return "/".join([prefix, *parts] if prefix else list(parts))


def version_prefix(prefix: str, name: str, version: int) -> str:
    """Returns the key prefix of one version: ``<prefix>/<name>/<version>/``."""
    return _key(prefix, validate_name(name), str(version)) + "/"


def _is_code(exc: Exception, *codes: str) -> bool:
    return getattr(exc, "code", None) in codes


def _put(client, bucket: str, key: str, data: bytes, content_type: str, create_only: bool) -> None:
    """PUTs one object in a single request with its sha256 checksum.

    ``Minio.put_object`` cannot send ``If-None-Match`` (it would become user metadata), so the
    client's single-request PutObject is used directly with the exact headers we need.
    """
    digest = hashlib.sha256(data).digest()
    headers = {
        "Content-Type": content_type,
        "x-amz-sdk-checksum-algorithm": "SHA256",
        "x-amz-checksum-sha256": base64.b64encode(digest).decode(),
        "x-amz-meta-sha256": digest.hex(),
    }
    if create_only:
        headers["If-None-Match"] = "*"
    client._put_object(bucket, key, data, headers=headers)


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


def upload_version(client, bucket: str, prefix: str, version_dir: str | os.PathLike) -> dict:
    """Uploads one store version (a directory with its manifest) to the bucket.

    Files go first, each created only if absent (an object left by an interrupted upload of
    this same version is accepted when its sha256 matches); the manifest goes last, created
    only if absent. A version that already has a manifest in the bucket is never touched.

    Args:
        client: A ``minio.Minio`` client.
        bucket: The bucket (must exist).
        prefix: Key prefix (may be empty).
        version_dir: The local version directory, e.g. ``ModelStore.get(name, v)``.

    Returns:
        ``{"bucket", "prefix", "name", "version", "manifest_key", "objects"}``.

    Raises:
        FileExistsError: If the version already exists in the bucket, or one of its objects
            exists with different content.
        ValueError: If a local file does not match the manifest.
    """
    from minio.error import S3Error

    version_dir = Path(version_dir)
    manifest_bytes = (version_dir / MANIFEST_FILE).read_bytes()
    manifest = json.loads(manifest_bytes)
    name, version = validate_name(manifest["name"]), int(manifest["version"])
    base = version_prefix(prefix, name, version)
    manifest_key = base + MANIFEST_FILE
    location = f"s3://{bucket}/{manifest_key}"
    if object_sha256(client, bucket, manifest_key) is not None:
        raise FileExistsError(f"{location}: version {version} of {name!r} already exists")
    for relpath, entry in sorted(manifest["files"].items()):
        validate_relpath(relpath)
        data = (version_dir / relpath).read_bytes()
        if len(data) > _MAX_SINGLE_PUT:
            raise ValueError(f"{version_dir / relpath}: larger than 5 GiB, too large to publish")
        if hashlib.sha256(data).hexdigest() != entry["sha256"] or len(data) != entry["size"]:
            raise ValueError(f"{version_dir / relpath}: does not match its manifest; not uploaded")
        key = base + relpath
        try:
            _put(client, bucket, key, data, "application/octet-stream", create_only=True)
        except S3Error as exc:
            if not _is_code(exc, "PreconditionFailed"):
                raise
            if object_sha256(client, bucket, key) != entry["sha256"]:
                raise FileExistsError(
                    f"s3://{bucket}/{key}: exists with other content; another publisher is "
                    f"writing version {version} of {name!r}"
                ) from exc
    try:
        _put(client, bucket, manifest_key, manifest_bytes, "application/json", create_only=True)
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
        "objects": len(manifest["files"]) + 1,
    }


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
            data = response.read()
        finally:
            response.close()
            response.release_conn()
    except S3Error as exc:
        if _is_code(exc, "NoSuchKey", "NoSuchObject"):
            raise FileNotFoundError(
                f"s3://{bucket}/{key}: no version {number} of {name!r}"
            ) from exc
        raise
    try:
        manifest = json.loads(data)
    except ValueError as exc:
        raise ValueError(f"s3://{bucket}/{key}: manifest is not valid JSON ({exc})") from exc
    if manifest.get("name") != name or manifest.get("version") != number:
        raise ValueError(f"s3://{bucket}/{key}: manifest describes another model or version")
    return manifest


def download_file(client, bucket: str, key: str, dest: Path) -> tuple[str, int]:
    """Streams one object to a new local file; returns its sha256 and size."""
    digest = hashlib.sha256()
    size = 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    response = client.get_object(bucket, key)
    try:
        with open(dest, "xb") as f:
            for chunk in response.stream(1 << 20):
                digest.update(chunk)
                f.write(chunk)
                size += len(chunk)
            f.flush()
            os.fsync(f.fileno())
    finally:
        response.close()
        response.release_conn()
    return digest.hexdigest(), size
