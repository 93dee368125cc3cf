"""The edge pull client: fetch a genuine, current model version and swap it in atomically.

On the device, ``DEST`` looks like this::

    DEST/current  -> releases/<name>-v<version>-<id>   what the application loads
    DEST/previous -> releases/<name>-v<version>-<id>   what ``rollback`` goes back to
    DEST/releases/                                      at most these two (plus staging dirs)
    DEST/installed.json                                 highest version installed, per model

A pull checks the release's Ed25519 signature against the device's trusted public keys, refuses
a version lower than the highest one installed (unless ``allow_downgrade``), downloads into a
hidden staging directory without holding the lock, checks the size and sha256 of every file (the
shipped compressed copy and the raw bytes after decompression) against the signed manifest, and
only then, under the lock, renames the staging directory into ``releases/`` and replaces the
``current`` symlink with one ``rename``. A corrupted, truncated, oversized or unsigned download is
rejected before anything the application sees changes; a pull killed at any point leaves
``current`` on the old or on the new complete version. ``verify=True`` re-checks the installed
release and reinstalls it when a file is damaged; an unreadable local manifest counts as "not
installed".

This module imports neither TensorFlow nor PySpark (only ``cryptography``, and the ``minio``
client only for ``--s3``), so it runs on a small device.
"""

from __future__ import annotations

import fcntl
import fnmatch
import json
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

from kfp_edge.model_store import signing
from kfp_edge.model_store.store import (
    ModelStore,
    _copy_file,
    _fsync_dir,
    _fsync_tree,
    write_manifest,
)
from kfp_edge.model_versions import (
    MANIFEST_FILE,
    MODEL_FILE,
    REQUIRED_FILES,
    check_manifest,
    damaged_files,
    gunzip_file,
    models_root,
    read_json_bounded,
    validate_name,
    validate_relpath,
    verify_directory,
)

CURRENT = "current"
PREVIOUS = "previous"
RELEASES = "releases"
STAGING_PREFIX = ".staging-"
LOCK_FILE = ".lock"
INSTALLED_FILE = "installed.json"
PULL_LOCK_TIMEOUT_S = 30.0
ROLLBACK_LOCK_TIMEOUT_S = 10.0


@contextmanager
def _locked(dest: Path, timeout_s: float):
    """Serialises swaps and rollbacks on one destination (an flock on ``DEST/.lock``).

    Raises:
        TimeoutError: If another process holds the lock for longer than ``timeout_s``.
    """
    dest.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    with open(dest / LOCK_FILE, "a") as lock:
        while True:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{dest / LOCK_FILE}: another pull or rollback held the lock for "
                        f"over {timeout_s:g} s; try again"
                    ) from None
                time.sleep(0.05)
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

    An unreadable, oversized or malformed local manifest counts as "not installed" (None), so a
    torn file never blocks the next pull.

    Args:
        dest: The destination directory of ``kfp-edge pull``.
        link: ``current`` or ``previous``.
    """
    release = _release_of(Path(dest), link)
    if release is None or not (release / MANIFEST_FILE).is_file():
        return None
    try:
        return check_manifest(read_json_bounded(release / MANIFEST_FILE), str(release))
    except (OSError, ValueError, AttributeError):
        return None


def _read_installed(dest: Path) -> dict:
    """The highest version installed per model (``DEST/installed.json``); empty if none."""
    path = dest / INSTALLED_FILE
    if not path.is_file():
        return {}
    record = read_json_bounded(path)
    if not isinstance(record, dict) or not all(isinstance(v, int) for v in record.values()):
        raise ValueError(f"{path}: not a record of installed versions")
    return record


def _record_installed(dest: Path, name: str, version: int) -> None:
    record = _read_installed(dest)
    if record.get(name, 0) >= version:
        return
    tmp = dest / f".{INSTALLED_FILE}.{uuid.uuid4().hex}"
    with open(tmp, "w") as f:
        json.dump({**record, name: version}, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, dest / INSTALLED_FILE)


def highest_installed(dest: str | os.PathLike, name: str) -> int:
    """Returns the highest version of a model ever installed in ``DEST`` (0 if none)."""
    dest = Path(dest)
    current = current_manifest(dest) or {}
    installed = current.get("version", 0) if current.get("name") == name else 0
    return max(_read_installed(dest).get(name, 0), installed)


def _check_not_downgrade(dest: Path, name: str, number: int, allow: bool, where: str) -> None:
    highest = highest_installed(dest, name)
    if number < highest and not allow:
        raise ValueError(
            f"{where}: version {number} of {name!r} is older than version {highest}, already "
            "installed on this device; refused (a downgrade needs --allow-downgrade; "
            "`kfp-edge rollback` returns to the kept previous release)"
        )


def _check(entry: dict, digest: str, size: int, relpath: str, source: str) -> None:
    expected = entry["size"]
    if size != expected:
        detail = (
            f"too long: more than the {expected} bytes the manifest says"
            if size > expected
            else f"truncated: {size} bytes, manifest says {expected}"
        )
        raise ValueError(f"{source}: {relpath} is {detail}; download rejected, current model kept")
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
        ValueError: If a pattern matches no file of the version, or the selection leaves out
            a file every release needs (``model.tflite``).
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
    left_out = [f for f in REQUIRED_FILES if f not in kept]
    if left_out:
        raise ValueError(f"--only must keep {', '.join(left_out)}: a device needs its model")
    return {**manifest, "files": kept, "omitted_files": sorted(set(files) - set(kept))}


class _WorkspaceSource:
    """Reads versions from the store on the workspace volume."""

    def __init__(self, workspace: str):
        self.store = ModelStore(models_root(workspace))

    def manifest(self, name: str, version) -> dict:
        self.directory = self.store.get(name, version)
        self.where = str(self.directory)
        return read_json_bounded(self.directory / MANIFEST_FILE)

    def fetch(self, relpath: str, dest: Path, max_size: int) -> tuple[str, int]:
        source = self.directory / relpath
        if source.is_symlink() or not source.is_file():
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
        conn = s3.connect_from_env()
        self.client, self.deadline = conn.client, conn.deadline()

    def manifest(self, name: str, version) -> dict:
        manifest = self.releases.read_manifest(self.client, self.bucket, self.prefix, name, version)
        self.base = self.releases.version_prefix(self.prefix, name, manifest["version"])
        self.where = f"s3://{self.bucket}/{self.base}"
        return manifest

    def fetch(self, relpath: str, dest: Path, max_size: int) -> tuple[str, int]:
        from minio.error import S3Error

        from kfp_edge.s3 import explain

        key = self.base + relpath
        try:
            return self.releases.download_file(
                self.client, self.bucket, key, dest, max_size, self.deadline
            )
        except S3Error as exc:
            raise ValueError(
                f"{self.where}{relpath}: {explain(exc)}; download rejected, current model kept"
            ) from exc


def _fetch_entry(source, staging: Path, relpath: str, entry: dict) -> None:
    """Fetches one file into staging: its shipped copy, decompressed, or the raw file."""
    validate_relpath(relpath)
    shipped = entry.get("shipped")
    if not shipped:
        digest, size = source.fetch(relpath, staging / relpath, entry["size"])
        _check(entry, digest, size, relpath, source.where)
        return
    packed = staging / f".shipped-{uuid.uuid4().hex}"
    try:
        digest, size = source.fetch(shipped["file"], packed, shipped["size"])
        _check(shipped, digest, size, shipped["file"], source.where)
        (staging / relpath).parent.mkdir(parents=True, exist_ok=True)
        digest, size = gunzip_file(packed, staging / relpath, entry["size"])
        _check(entry, digest, size, f"{relpath} (decompressed)", source.where)
    finally:
        packed.unlink(missing_ok=True)


def _smoke_load(model: Path, where: str) -> None:
    """Loads a .tflite with the LiteRT interpreter and allocates its tensors."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        raise ValueError(
            "--smoke-load needs the LiteRT runtime: pip install 'kfp-edge[litert]'"
        ) from exc
    try:
        Interpreter(model_path=str(model)).allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ValueError(
            f"{where}: {MODEL_FILE} does not load in LiteRT ({exc}); current model kept"
        ) from exc


def _stage(source, dest: Path, manifest: dict, smoke_load: bool) -> tuple[Path, int]:
    """Downloads and checks every file of a manifest into a new staging directory.

    Returns:
        The staging directory and an fd holding an flock on it (so that ``_collect`` of
        another pull can tell a download in progress from one a crash left behind).
    """
    releases = dest / RELEASES
    releases.mkdir(parents=True, exist_ok=True)
    staging = releases / f"{STAGING_PREFIX}{uuid.uuid4().hex}"
    staging.mkdir()
    busy = os.open(staging, os.O_RDONLY)
    fcntl.flock(busy, fcntl.LOCK_EX)
    try:
        for relpath, entry in sorted(manifest["files"].items()):
            _fetch_entry(source, staging, relpath, entry)
        if smoke_load:
            _smoke_load(staging / MODEL_FILE, source.where)
        write_manifest(staging, _as_installed(manifest))  # every file was checked on copy
        _fsync_tree(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        os.close(busy)
        raise
    return staging, busy


def _abandoned(staging: Path) -> bool:
    """Whether no live process holds the flock of a staging directory."""
    try:
        fd = os.open(staging, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def _as_installed(manifest: dict) -> dict:
    """The manifest a device keeps: raw files only (shipped copies are not kept)."""
    files = {
        rel: {k: v for k, v in entry.items() if k != "shipped"}
        for rel, entry in manifest["files"].items()
    }
    return {**manifest, "files": files}


def _is_installed(dest: Path, manifest: dict, check_files: bool) -> bool:
    """Whether ``current`` already holds exactly this release (and, if asked, is undamaged)."""
    old = current_manifest(dest)
    same = (
        old is not None
        and old.get("name") == manifest["name"]
        and old.get("version") == manifest["version"]
        and old.get("files") == _as_installed(manifest)["files"]
    )
    if not same or not check_files:
        return same
    return not damaged_files(dest / CURRENT, old)


def _trusted(trusted_keys: Sequence[str]) -> dict:
    paths = list(trusted_keys)
    if not paths and os.environ.get(signing.ENV_TRUSTED_KEYS):
        paths = [p for p in os.environ[signing.ENV_TRUSTED_KEYS].split(os.pathsep) if p]
    if not paths:
        raise ValueError(
            "no trusted public key: give --trusted-key FILE (or set "
            f"{signing.ENV_TRUSTED_KEYS}); a device installs only signed releases"
        )
    return signing.load_public_keys(paths)


def pull(
    name: str,
    dest: str | os.PathLike,
    version: int | str = "latest",
    workspace: str | None = None,
    s3_uri: str | None = None,
    only: Sequence[str] = (),
    trusted_keys: Sequence[str] = (),
    allow_downgrade: bool = False,
    verify: bool = False,
    smoke_load: bool = False,
    lock_timeout_s: float = PULL_LOCK_TIMEOUT_S,
) -> dict:
    """Downloads a signed model version, verifies it and makes it ``DEST/current`` atomically.

    Args:
        name: The model name.
        dest: The destination directory on the device.
        version: A version number or ``latest``.
        workspace: The workspace (PV) path holding ``models/``; or give ``s3_uri``.
        s3_uri: ``s3://bucket/prefix`` (endpoint and credentials from ``KFP_EDGE_S3_*``).
        only: Download only the files matching these glob patterns (e.g. ``model.tflite``,
            ``*.json``), for a device that does not need the SavedModel; empty: every file.
        trusted_keys: PEM files of the public keys a release must be signed by (default: the
            files in ``KFP_EDGE_TRUSTED_KEYS``, separated by ``os.pathsep``).
        allow_downgrade: Install a version lower than the highest one installed before.
        verify: Re-check the installed files when the version is already current, and
            reinstall it if any is damaged.
        smoke_load: Load the model with LiteRT before the swap (needs ``ai_edge_litert``).
        lock_timeout_s: How long to wait for another pull's or rollback's swap.

    Returns:
        ``{"name", "version", "path", "changed", "repaired", "previous_version"}``;
        ``changed`` is False when that version already was current (and intact, if checked).

    Raises:
        ValueError: If the release is unsigned, wrongly signed, older than the installed one,
            or a file is corrupted, truncated or too long (the current model stays).
        FileNotFoundError: If the model or version does not exist.
        TimeoutError: If the server or the lock takes too long.
    """
    validate_name(name)
    if (workspace is None) == (s3_uri is None):
        raise ValueError("pull needs exactly one source: a workspace or an s3:// location")
    dest = Path(dest)
    trusted = _trusted(trusted_keys)
    source = _WorkspaceSource(workspace) if workspace is not None else _S3Source(s3_uri)
    remote = check_manifest(source.manifest(name, version), source.where)
    signing.verify(remote, trusted, source.where)
    manifest = select_files(remote, only)
    number = manifest["version"]
    _check_not_downgrade(dest, name, number, allow_downgrade, source.where)
    result = {"name": name, "version": number, "path": str(dest / CURRENT), "repaired": False}
    if _is_installed(dest, manifest, check_files=verify):
        previous = current_manifest(dest, PREVIOUS) or {}
        return {**result, "changed": False, "previous_version": previous.get("version")}
    repair = _is_installed(dest, manifest, check_files=False)
    staging, busy = _stage(source, dest, manifest, smoke_load)
    try:
        with _locked(dest, lock_timeout_s):
            _check_not_downgrade(dest, name, number, allow_downgrade, source.where)
            if not repair and _is_installed(dest, manifest, check_files=False):
                previous = current_manifest(dest, PREVIOUS) or {}  # a concurrent pull won
                return {**result, "changed": False, "previous_version": previous.get("version")}
            old = current_manifest(dest)
            _swap(dest, staging, name, number, keep_previous=old is not None and not repair)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        os.close(busy)
    previous = old.get("version") if old and not repair else None
    if repair:
        previous = (current_manifest(dest, PREVIOUS) or {}).get("version")
    return {**result, "changed": True, "repaired": repair, "previous_version": previous}


def _swap(dest: Path, staging: Path, name: str, number: int, keep_previous: bool) -> None:
    """Under the lock: the staged release becomes ``current`` (the old one ``previous``)."""
    release = dest / RELEASES / f"{name}-v{number}-{uuid.uuid4().hex[:12]}"
    os.rename(staging, release)
    old_release = _release_of(dest, CURRENT)
    if old_release is not None and keep_previous:
        _point(dest, PREVIOUS, old_release)
    _point(dest, CURRENT, release)
    _record_installed(dest, name, number)
    _fsync_dir(dest)
    _collect(dest)


def rollback(dest: str | os.PathLike, lock_timeout_s: float = ROLLBACK_LOCK_TIMEOUT_S) -> dict:
    """Makes ``DEST/previous`` current again (and the current one previous).

    Local only: no server is asked, and the anti-rollback record is kept (so the next pull of
    ``latest`` installs the newest version again). A pull holds the lock only for its swap, so
    this never waits behind a download.

    Args:
        dest: The destination directory of ``kfp-edge pull``.
        lock_timeout_s: How long to wait for another pull's swap.

    Returns:
        ``{"name", "version", "path"}`` of the model now current.

    Raises:
        FileNotFoundError: If there is no previous model to go back to.
        ValueError: If the previous release is damaged.
    """
    dest = Path(dest)
    with _locked(dest, lock_timeout_s):
        previous = _release_of(dest, PREVIOUS)
        current = _release_of(dest, CURRENT)
        manifest = current_manifest(dest, PREVIOUS)
        if previous is None or manifest is None or previous == current:
            raise FileNotFoundError(f"{dest}: no previous model to roll back to")
        verify_directory(previous, manifest)
        _point(dest, CURRENT, previous)
        if current is not None:
            _point(dest, PREVIOUS, current)
        _fsync_dir(dest)
        return {
            "name": manifest["name"],
            "version": manifest["version"],
            "path": str(dest / CURRENT),
        }


def _collect(dest: Path) -> None:
    """Deletes releases neither link points at, and staging dirs whose pull has died."""
    keep = {p.resolve() for p in (_release_of(dest, CURRENT), _release_of(dest, PREVIOUS)) if p}
    for entry in (dest / RELEASES).iterdir():
        if entry.name.startswith(STAGING_PREFIX) and not _abandoned(entry):
            continue  # another pull's download in progress
        if entry.resolve() not in keep:
            shutil.rmtree(entry, ignore_errors=True)
    for entry in dest.iterdir():
        if entry.name.startswith((f".{CURRENT}-", f".{PREVIOUS}-")) and entry.is_symlink():
            entry.unlink(missing_ok=True)
