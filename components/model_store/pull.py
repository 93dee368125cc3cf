"""The edge pull client: fetch a verified model version and swap it in atomically.

On the device, ``DEST`` looks like this::

    DEST/current  -> releases/<name>-v<version>-<id>   what the application loads
    DEST/previous -> releases/<name>-v<version>-<id>   what ``rollback`` goes back to
    DEST/releases/                                      at most these two (plus a staging dir)

A pull downloads into a hidden staging directory, checks the size and sha256 of every file
against the version's manifest, renames the staging directory into ``releases/`` and then
replaces the ``current`` symlink with one ``rename``. A corrupted or truncated download is
rejected before anything the application sees changes; a pull killed at any point leaves
``current`` on the old or on the new complete version.

This module imports neither TensorFlow nor PySpark (only the ``minio`` client, and only for
``--s3``), so it runs on a small device.
"""

from __future__ import annotations

import fcntl
import fnmatch
import json
import os
import shutil
import uuid
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

from kfp_edge.model_store.store import (
    ModelStore,
    _copy_file,
    _fsync_dir,
    _fsync_tree,
    write_manifest,
)
from kfp_edge.model_versions import (
    MANIFEST_FILE,
    check_manifest,
    models_root,
    validate_name,
    validate_relpath,
    verify_directory,
)

CURRENT = "current"
PREVIOUS = "previous"
RELEASES = "releases"
STAGING_PREFIX = ".staging-"
LOCK_FILE = ".lock"


@contextmanager
def _locked(dest: Path):
    """Serialises pulls and rollbacks on one destination (an flock on ``DEST/.lock``)."""
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / LOCK_FILE, "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _release_of(dest: Path, link: str) -> Path | None:
    path = dest / link
    if not path.is_symlink():
        return None
    return dest / os.readlink(path)


def _point(dest: Path, link: str, release: Path) -> None:
    """Points ``DEST/<link>`` at a release with one atomic rename of a new symlink."""
    tmp = dest / f".{link}-{uuid.uuid4().hex}"
    os.symlink(os.path.relpath(release, dest), tmp)
    os.replace(tmp, dest / link)


def current_manifest(dest: str | os.PathLike, link: str = CURRENT) -> dict | None:
    """Returns the manifest of the model in ``DEST/current`` (or ``previous``), or None.

    Args:
        dest: The destination directory of ``kfp-edge pull``.
        link: ``current`` or ``previous``.
    """
    release = _release_of(Path(dest), link)
    if release is None or not (release / MANIFEST_FILE).is_file():
        return None
    return json.loads((release / MANIFEST_FILE).read_text())


def _check(entry: dict, digest: str, size: int, relpath: str, source: str) -> None:
    if size != entry["size"]:
        kind = "truncated" if size < entry["size"] else "too long"
        raise ValueError(
            f"{source}: {relpath} is {kind}: {size} bytes, manifest says {entry['size']}; "
            "download rejected, current model kept"
        )
    if digest != entry["sha256"]:
        raise ValueError(
            f"{source}: {relpath} is corrupted: sha256 {digest}, manifest says "
            f"{entry['sha256']}; download rejected, current model kept"
        )


def select_files(manifest: dict, only: Sequence[str] = ()) -> dict:
    """Returns the manifest restricted to the files matching any of the glob patterns.

    Args:
        manifest: A version's manifest.
        only: ``fnmatch`` patterns such as ``model.tflite`` or ``*.json``; empty keeps all.

    Returns:
        The manifest itself, or a copy whose ``files`` holds the matches and whose
        ``omitted_files`` lists the rest.

    Raises:
        ValueError: If a pattern matches no file of the version.
    """
    if not only:
        return manifest
    files = manifest["files"]
    for pattern in only:
        if not any(fnmatch.fnmatchcase(rel, pattern) for rel in files):
            raise ValueError(
                f"--only {pattern!r} matches no file of {manifest['name']!r} version "
                f"{manifest['version']} (files: {', '.join(sorted(files))})"
            )
    kept = {r: e for r, e in files.items() if any(fnmatch.fnmatchcase(r, p) for p in only)}
    return {**manifest, "files": kept, "omitted_files": sorted(set(files) - set(kept))}


class _WorkspaceSource:
    """Reads versions from the store on the workspace volume."""

    def __init__(self, workspace: str):
        self.store = ModelStore(models_root(workspace))

    def manifest(self, name: str, version) -> dict:
        self.directory = self.store.get(name, version)
        self.where = str(self.directory)
        return json.loads((self.directory / MANIFEST_FILE).read_text())

    def fetch(self, relpath: str, dest: Path) -> tuple[str, int]:
        source = self.directory / relpath
        if not source.is_file():
            raise ValueError(f"{source}: missing; download rejected, current model kept")
        copied = _copy_file(source, dest)
        return copied["sha256"], copied["size"]


class _S3Source:
    """Reads versions from ``s3://bucket/prefix`` (configuration from ``KFP_EDGE_S3_*``)."""

    def __init__(self, s3_uri: str):
        from kfp_edge import s3
        from kfp_edge.model_store import s3_releases

        self.releases = s3_releases
        self.bucket, self.prefix = s3.parse_s3_uri(s3_uri)
        self.client = s3.client_from_env()

    def manifest(self, name: str, version) -> dict:
        manifest = self.releases.read_manifest(self.client, self.bucket, self.prefix, name, version)
        self.base = self.releases.version_prefix(self.prefix, name, manifest["version"])
        self.where = f"s3://{self.bucket}/{self.base}"
        return manifest

    def fetch(self, relpath: str, dest: Path) -> tuple[str, int]:
        from minio.error import S3Error

        try:
            return self.releases.download_file(self.client, self.bucket, self.base + relpath, dest)
        except S3Error as exc:
            raise ValueError(
                f"{self.where}{relpath}: {exc.code}; download rejected, current model kept"
            ) from exc


def pull(
    name: str,
    dest: str | os.PathLike,
    version: int | str = "latest",
    workspace: str | None = None,
    s3_uri: str | None = None,
    only: Sequence[str] = (),
) -> dict:
    """Downloads a model version, verifies it and makes it ``DEST/current`` atomically.

    Args:
        name: The model name.
        dest: The destination directory on the device.
        version: A version number or ``latest``.
        workspace: The workspace (PV) path holding ``models/``; or give ``s3_uri``.
        s3_uri: ``s3://bucket/prefix`` (endpoint and credentials from ``KFP_EDGE_S3_*``).
        only: Download only the files matching these glob patterns (e.g. ``model.tflite``,
            ``*.json``), for a device that does not need the SavedModel; empty: every file.

    Returns:
        ``{"name", "version", "path", "changed", "previous_version"}``; ``changed`` is False
        when that version already was current.

    Raises:
        ValueError: If a file is corrupted or truncated (the current model stays).
        FileNotFoundError: If the model or version does not exist.
    """
    validate_name(name)
    if (workspace is None) == (s3_uri is None):
        raise ValueError("pull needs exactly one source: a workspace or an s3:// location")
    dest = Path(dest)
    with _locked(dest):
        source = _WorkspaceSource(workspace) if workspace is not None else _S3Source(s3_uri)
        manifest = select_files(check_manifest(source.manifest(name, version), source.where), only)
        number = manifest["version"]
        old = current_manifest(dest)
        if (
            old is not None
            and old.get("name") == name
            and old.get("version") == number
            and old.get("files") == manifest["files"]
        ):  # already installed: nothing is downloaded
            return {
                "name": name,
                "version": number,
                "path": str(dest / CURRENT),
                "changed": False,
                "previous_version": (current_manifest(dest, PREVIOUS) or {}).get("version"),
            }
        releases = dest / RELEASES
        releases.mkdir(exist_ok=True)
        staging = releases / f"{STAGING_PREFIX}{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            for relpath, entry in sorted(manifest["files"].items()):
                validate_relpath(relpath)
                digest, size = source.fetch(relpath, staging / relpath)
                _check(entry, digest, size, relpath, source.where)
            write_manifest(staging, manifest)  # every file was checked while it was copied
            _fsync_tree(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        release = releases / f"{name}-v{number}-{uuid.uuid4().hex[:12]}"
        os.rename(staging, release)
        old_release = _release_of(dest, CURRENT)
        if old_release is not None:
            _point(dest, PREVIOUS, old_release)
        _point(dest, CURRENT, release)
        _fsync_dir(dest)
        _collect(dest)
        return {
            "name": name,
            "version": number,
            "path": str(dest / CURRENT),
            "changed": True,
            "previous_version": old.get("version") if old else None,
        }


def rollback(dest: str | os.PathLike) -> dict:
    """Makes ``DEST/previous`` current again (and the current one previous).

    Args:
        dest: The destination directory of ``kfp-edge pull``.

    Returns:
        ``{"name", "version", "path"}`` of the model now current.

    Raises:
        FileNotFoundError: If there is no previous model to go back to.
    """
    dest = Path(dest)
    with _locked(dest):
        previous = _release_of(dest, PREVIOUS)
        current = _release_of(dest, CURRENT)
        if previous is None or not (previous / MANIFEST_FILE).is_file() or previous == current:
            raise FileNotFoundError(f"{dest}: no previous model to roll back to")
        verify_directory(previous, json.loads((previous / MANIFEST_FILE).read_text()))
        _point(dest, CURRENT, previous)
        if current is not None:
            _point(dest, PREVIOUS, current)
        _fsync_dir(dest)
        manifest = current_manifest(dest)
        return {
            "name": manifest["name"],
            "version": manifest["version"],
            "path": str(dest / CURRENT),
        }


def _collect(dest: Path) -> None:
    """Deletes releases that neither ``current`` nor ``previous`` points at, and old staging."""
    keep = {p.resolve() for p in (_release_of(dest, CURRENT), _release_of(dest, PREVIOUS)) if p}
    for entry in (dest / RELEASES).iterdir():
        if entry.resolve() not in keep:
            shutil.rmtree(entry, ignore_errors=True)
    for entry in dest.iterdir():
        if entry.name.startswith((f".{CURRENT}-", f".{PREVIOUS}-")) and entry.is_symlink():
            entry.unlink(missing_ok=True)
