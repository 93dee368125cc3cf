"""The versioned model store on the workspace volume (the PersistentVolume).

Layout::

    <workspace>/models/<name>/<version>/manifest.json
    <workspace>/models/<name>/<version>/<files...>
    <workspace>/models/<name>/.tmp-<...>/          a publish in progress (or a crashed one)
    <workspace>/models/<name>/.trash-<...>/        a pruned version being deleted

A version is a directory named by a decimal integer. It only ever appears by one ``rename`` of
a complete temporary directory on the same volume, so a reader sees either no such version or a
complete one, and ``latest`` is simply the highest integer directory holding a manifest: there
is no mutable pointer file that a crash could leave half-written.

Versions are allocated without a lock: a publisher writes everything, including a manifest
naming version ``v = latest + 1``, into its temporary directory and renames it to ``<v>``. If
another publisher got there first, the target is a non-empty directory, ``rename`` fails, and
the publisher retries with the next number after rewriting its manifest. ``rename`` onto a
non-empty directory fails on every POSIX filesystem (NFS included), so no version is ever
reused or overwritten. Pruning never removes the latest version, so numbers only go up.

Only the standard library is used here: the edge pull client imports this module.
"""

from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = 1
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
_CHUNK = 1 << 20

# A model name is one path component: letters, digits, '.', '_', '-', not starting with '.'.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_VERSION_DIR = re.compile(r"[1-9][0-9]{0,17}")
# Keys the store itself writes into a manifest; metadata may not override them.
RESERVED_KEYS = ("format", "name", "version", "created_at", "files", "omitted_files")


def validate_name(name: str) -> str:
    """Checks that a model name is safe to use as one directory (and one S3 key segment).

    Args:
        name: The model name.

    Returns:
        The name, unchanged.

    Raises:
        ValueError: If the name is empty, too long, contains a path separator, ``..``,
            whitespace or control characters, or starts with anything but a letter or digit.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise ValueError(
            f"invalid model name {name!r}: use 1-128 letters, digits, '.', '_' and '-', "
            "starting with a letter or digit, without '..' or path separators"
        )
    return name


def validate_relpath(relpath: str) -> str:
    """Checks a file path inside a version (from a caller or from a downloaded manifest).

    Args:
        relpath: A relative POSIX path such as ``saved_model/variables/variables.index``.

    Returns:
        The path, unchanged.

    Raises:
        ValueError: If the path is absolute, empty, has ``.``/``..`` or empty components,
            a backslash or control characters, or is the manifest itself.
    """
    parts = relpath.split("/") if isinstance(relpath, str) else []
    bad = (
        not parts
        or relpath.startswith("/")
        or "\\" in relpath
        or any(p in ("", ".", "..") for p in parts)
        or any(ord(c) < 32 or ord(c) == 127 for c in relpath)
        or relpath == MANIFEST_FILE
    )
    if bad:
        raise ValueError(f"invalid file path {relpath!r} in a model version")
    return relpath


def parse_version(version: int | str) -> int | None:
    """Returns ``None`` for ``"latest"``, else the version as a positive int.

    Raises:
        ValueError: If the version is neither ``latest`` nor a positive integer.
    """
    if version is None or version == "latest":
        return None
    text = str(version)
    if isinstance(version, bool) or not _VERSION_DIR.fullmatch(text):
        raise ValueError(f"invalid model version {version!r}: use a positive integer or 'latest'")
    return int(text)


def sha256_file(path: str | os.PathLike) -> tuple[str, int]:
    """Returns the hex sha256 and the size in bytes of a file."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """Calls fsync on every directory of a tree, deepest first (files: when written)."""
    for dirpath, _, _ in sorted(os.walk(root), key=lambda w: -len(w[0])):
        _fsync_dir(Path(dirpath))


def _copy_file(src: Path, dst: Path) -> dict:
    """Copies one file, fsyncs it, and returns its sha256 and size computed while copying."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    with open(src, "rb") as fin, open(dst, "xb") as fout:
        while chunk := fin.read(_CHUNK):
            digest.update(chunk)
            fout.write(chunk)
            size += len(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    return {"sha256": digest.hexdigest(), "size": size}


def _iter_source(relpath: str, source: Path) -> Iterable[tuple[str, Path]]:
    """Yields ``(relative path in the version, source file)`` for a file or a directory tree."""
    if source.is_symlink() and source.is_dir():
        raise ValueError(f"{source}: refusing to publish a symlinked directory")
    if source.is_file():
        yield relpath, source
        return
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: no such file or directory to publish as {relpath!r}")
    for dirpath, dirnames, filenames in os.walk(source):
        dirnames.sort()
        for filename in sorted(filenames):
            path = Path(dirpath) / filename
            rel = path.relative_to(source).as_posix()
            yield f"{relpath}/{rel}", path


def write_manifest(directory: Path, manifest: Mapping[str, Any]) -> None:
    """Writes ``manifest.json`` into a directory through a temporary file, fsynced."""
    tmp = directory / f".{MANIFEST_FILE}.{uuid.uuid4().hex}"
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, directory / MANIFEST_FILE)


def check_manifest(manifest: Any, where: str) -> dict:
    """Checks the shape of a manifest read from disk or from S3 before anything trusts it.

    Args:
        manifest: The parsed manifest.
        where: Where it was read from, for the error message.

    Returns:
        The manifest.

    Raises:
        ValueError: If the name, version or files table is malformed, or a file path could
            escape the version directory.
    """
    ok = isinstance(manifest, dict) and isinstance(manifest.get("files"), dict)
    if ok:
        validate_name(manifest.get("name"))
        ok = isinstance(manifest.get("version"), int) and manifest["version"] > 0
    if not ok:
        raise ValueError(f"{where}: not a model manifest (needs name, version and files)")
    for relpath, entry in manifest["files"].items():
        validate_relpath(relpath)
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        size = entry.get("size") if isinstance(entry, dict) else None
        if not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)) or not (
            isinstance(size, int) and size >= 0
        ):
            raise ValueError(f"{where}: manifest entry of {relpath!r} needs sha256 and size")
    return manifest


def verify_directory(directory: str | os.PathLike, manifest: Mapping[str, Any]) -> None:
    """Checks every file of a manifest (size, then sha256) and that no other file is present.

    Args:
        directory: A version directory (or a downloaded copy of one).
        manifest: Its manifest.

    Raises:
        ValueError: Naming the first file that is missing, truncated, extended, corrupted or
            unexpected.
    """
    directory = Path(directory)
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise ValueError(f"{directory}: manifest has no 'files' table")
    for relpath, entry in sorted(files.items()):
        validate_relpath(relpath)
        path = directory / relpath
        if not path.is_file():
            raise ValueError(f"{path}: missing (listed in the manifest)")
        size = path.stat().st_size
        if size != entry["size"]:
            raise ValueError(
                f"{path}: size {size} bytes, manifest says {entry['size']} "
                f"({'truncated' if size < entry['size'] else 'too long'})"
            )
        digest, _ = sha256_file(path)
        if digest != entry["sha256"]:
            raise ValueError(
                f"{path}: sha256 {digest} does not match the manifest's {entry['sha256']} "
                "(corrupted)"
            )
    for path in directory.rglob("*"):
        if path.is_file():
            rel = path.relative_to(directory).as_posix()
            if rel != MANIFEST_FILE and rel not in files:
                raise ValueError(f"{path}: not listed in the manifest")


class ModelStore:
    """A versioned model store rooted at ``<workspace>/models``.

    Args:
        root: The store's root directory (created on first publish).
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    # -- reading ---------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Returns the model names in the store, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and _NAME.fullmatch(p.name))

    def _model_dir(self, name: str) -> Path:
        return self.root / validate_name(name)

    def versions(self, name: str) -> list[int]:
        """Returns the complete versions of a model, ascending (empty if none).

        Args:
            name: The model name.
        """
        model_dir = self._model_dir(name)
        if not model_dir.is_dir():
            return []
        found = []
        for entry in model_dir.iterdir():
            if _VERSION_DIR.fullmatch(entry.name) and (entry / MANIFEST_FILE).is_file():
                found.append(int(entry.name))
        return sorted(found)

    def latest(self, name: str) -> int | None:
        """Returns the highest complete version of a model, or None if it has none.

        Args:
            name: The model name.
        """
        versions = self.versions(name)
        return versions[-1] if versions else None

    def resolve(self, name: str, version: int | str = "latest") -> int:
        """Returns a concrete version number for ``version`` (an int, a digit string or latest).

        Raises:
            FileNotFoundError: If the model or that version does not exist.
        """
        number = parse_version(version)
        if number is None:
            number = self.latest(name)
            if number is None:
                raise FileNotFoundError(f"{self._model_dir(name)}: model {name!r} has no versions")
        elif number not in self.versions(name):
            raise FileNotFoundError(
                f"{self._model_dir(name) / str(number)}: model {name!r} has no version {number}"
            )
        return number

    def get(self, name: str, version: int | str = "latest") -> Path:
        """Returns the directory of a complete version.

        Args:
            name: The model name.
            version: A version number or ``latest``.

        Raises:
            FileNotFoundError: If the model or version does not exist.
        """
        return self._model_dir(name) / str(self.resolve(name, version))

    def read_manifest(self, name: str, version: int | str = "latest") -> dict:
        """Returns the manifest of a version.

        Args:
            name: The model name.
            version: A version number or ``latest``.
        """
        return json.loads((self.get(name, version) / MANIFEST_FILE).read_text())

    def verify(self, name: str, version: int | str = "latest") -> dict:
        """Checks the sha256 and size of every file of a version against its manifest.

        Returns:
            The manifest.

        Raises:
            ValueError: Naming the first file that does not match.
        """
        directory = self.get(name, version)
        manifest = json.loads((directory / MANIFEST_FILE).read_text())
        verify_directory(directory, manifest)
        return manifest

    # -- writing ---------------------------------------------------------------------------

    def publish(self, name: str, files: Mapping[str, str | os.PathLike], metadata: Mapping) -> dict:
        """Publishes a new version atomically.

        Files are copied (and hashed) into a temporary directory next to the versions, then
        the directory appears under its version number by one rename. A publish killed at any
        point leaves only a hidden ``.tmp-*`` directory, which no reader looks at.

        Args:
            name: The model name.
            files: Relative path in the version -> local source path. A source directory (such
                as a SavedModel) is copied recursively under that relative path.
            metadata: JSON-serialisable entries merged into the manifest (metrics, gate
                decision, lineage, ...); must not use the keys the store writes itself.

        Returns:
            ``{"name", "version", "path", "manifest"}`` of the new version.

        Raises:
            ValueError: On an invalid name, file path or metadata key, or an empty file set.
            FileNotFoundError: If a source does not exist.
        """
        validate_name(name)
        clash = sorted(set(metadata) & set(RESERVED_KEYS))
        if clash:
            raise ValueError(f"metadata may not set the manifest's own keys {clash}")
        if not files:
            raise ValueError(f"nothing to publish for model {name!r}: no files given")
        sources: list[tuple[str, Path]] = []
        for relpath, source in files.items():
            validate_relpath(relpath)
            sources.extend(_iter_source(relpath, Path(source)))
        seen: set[str] = set()
        for relpath, _ in sources:
            if relpath in seen:
                raise ValueError(f"file {relpath!r} is given twice for model {name!r}")
            seen.add(relpath)
        json.dumps(dict(metadata), default=str)  # fail before copying anything

        model_dir = self._model_dir(name)
        model_dir.mkdir(parents=True, exist_ok=True)
        tmp = model_dir / f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            table = {rel: _copy_file(src, tmp / rel) for rel, src in sources}
            created_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")
            version = (self.latest(name) or 0) + 1
            while True:
                manifest = {
                    **dict(metadata),
                    "format": MANIFEST_FORMAT,
                    "name": name,
                    "version": version,
                    "created_at": created_at,
                    "files": table,
                }
                write_manifest(tmp, manifest)
                _fsync_tree(tmp)
                target = model_dir / str(version)
                try:
                    os.rename(tmp, target)
                except OSError as exc:
                    if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                        raise
                    # Another publisher took this number: take the next free one.
                    version = max(version + 1, (self.latest(name) or 0) + 1)
                    continue
                _fsync_dir(model_dir)
                self.clean(name)  # leftovers of publishes that crashed over an hour ago
                return {"name": name, "version": version, "path": str(target), "manifest": manifest}
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def prune(self, name: str, keep_last: int, pinned: Iterable[int | str] = ()) -> list[int]:
        """Removes old versions, keeping the last ``keep_last``, the pinned ones and latest.

        A version is first renamed to a hidden ``.trash-*`` directory (so readers never see a
        half-deleted version) and then deleted.

        Args:
            name: The model name.
            keep_last: How many of the newest versions to keep (at least 1: latest is kept).
            pinned: Versions to keep whatever their age.

        Returns:
            The versions removed, ascending.
        """
        if keep_last < 1:
            raise ValueError(
                f"keep_last must be at least 1 (latest is never pruned), got {keep_last}"
            )
        keep = {int(parse_version(v) or 0) for v in pinned}
        versions = self.versions(name)
        keep.update(versions[-keep_last:])
        removed = []
        model_dir = self._model_dir(name)
        for version in versions:
            if version in keep:
                continue
            trash = model_dir / f"{TRASH_PREFIX}{version}-{uuid.uuid4().hex}"
            try:
                os.rename(model_dir / str(version), trash)
            except FileNotFoundError:
                continue  # pruned concurrently
            shutil.rmtree(trash, ignore_errors=True)
            removed.append(version)
        self.clean(name)
        return removed

    def clean(self, name: str, older_than_s: float = 3600.0) -> list[str]:
        """Deletes leftovers of crashed publishes and prunes (hidden directories).

        Trash is always deleted; a temporary publish directory only when it has not been
        touched for ``older_than_s`` seconds, so a publish in progress in another pod is safe.

        Args:
            name: The model name.
            older_than_s: Minimum age of a ``.tmp-*`` directory to delete it.

        Returns:
            The names of the directories removed.
        """
        model_dir = self._model_dir(name)
        if not model_dir.is_dir():
            return []
        removed = []
        now = time.time()
        for entry in model_dir.iterdir():
            stale_tmp = entry.name.startswith(TMP_PREFIX) and (
                now - entry.stat().st_mtime >= older_than_s
            )
            if entry.name.startswith(TRASH_PREFIX) or stale_tmp:
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry.name)
        return sorted(removed)
