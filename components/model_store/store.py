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
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from kfp_edge.model_versions import (
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    RESERVED_KEYS,
    SHIPPED,
    PublishedModels,
    gzip_file,
    parse_version,
    validate_name,
    validate_relpath,
)

TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
_CHUNK = 1 << 20


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


def _refuse_symlink(path: Path) -> None:
    if path.is_symlink():
        raise ValueError(
            f"{path}: is a symlink (to {os.readlink(path)}); refusing to publish it. Copy the "
            "file it points to into the directory if it belongs to the model"
        )


def _iter_source(relpath: str, source: Path) -> Iterable[tuple[str, Path]]:
    """Yields ``(relative path in the version, source file)`` for a file or a directory tree.

    Raises:
        ValueError: If the source or anything inside it is a symlink (a link could carry a
            file from outside the model, such as credentials, into every device).
    """
    _refuse_symlink(source)
    if source.is_file():
        yield relpath, source
        return
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: no such file or directory to publish as {relpath!r}")
    for dirpath, dirnames, filenames in os.walk(source):
        dirnames.sort()
        for name in dirnames:
            _refuse_symlink(Path(dirpath) / name)
        for filename in sorted(filenames):
            path = Path(dirpath) / filename
            _refuse_symlink(path)
            if not path.is_file():
                raise ValueError(f"{path}: not a regular file; refusing to publish it")
            rel = path.relative_to(source).as_posix()
            yield f"{relpath}/{rel}", path


def _copy_sources(sources: list[tuple[str, Path]], tmp: Path) -> dict:
    """Copies the sources into ``tmp`` and returns the files table (with shipped copies)."""
    table = {}
    for rel, src in sources:
        table[rel] = _copy_file(src, tmp / rel)
        if rel in SHIPPED:
            shipped = gzip_file(tmp / rel, tmp / SHIPPED[rel])
            table[rel]["shipped"] = {"file": SHIPPED[rel], **shipped}
    return table


def write_manifest(directory: Path, manifest: Mapping[str, Any]) -> None:
    """Writes ``manifest.json`` into a directory through a temporary file, fsynced."""
    tmp = directory / f".{MANIFEST_FILE}.{uuid.uuid4().hex}"
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, directory / MANIFEST_FILE)


class ModelStore(PublishedModels):
    """A versioned model store rooted at ``<workspace>/models``: publishing and pruning.

    Args:
        root: The store's root directory (created on first publish).
    """

    # -- writing ---------------------------------------------------------------------------

    def publish(
        self,
        name: str,
        files: Mapping[str, str | os.PathLike],
        metadata: Mapping,
        signer: Callable[[Mapping], dict] | None = None,
    ) -> dict:
        """Publishes a new version atomically.

        Files are copied (and hashed) into a temporary directory next to the versions, then
        the directory appears under its version number by one rename. A publish killed at any
        point leaves only a hidden ``.tmp-*`` directory, which no reader looks at. The files
        of ``SHIPPED`` (``model.tflite``) also get their compressed shipped copy.

        Args:
            name: The model name.
            files: Relative path in the version -> local source path. A source directory (such
                as a SavedModel) is copied recursively under that relative path.
            metadata: JSON-serialisable entries merged into the manifest (metrics, gate
                decision, lineage, ...); must not use the keys the store writes itself.
            signer: Returns the ``signature`` entry of a manifest (see
                ``kfp_edge.model_store.signing``); None publishes an unsigned version.

        Returns:
            ``{"name", "version", "path", "manifest"}`` of the new version.

        Raises:
            ValueError: On an invalid name, file path or metadata key, an empty file set or
                a symlink among the sources.
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
            if relpath in seen or relpath in SHIPPED.values():
                raise ValueError(
                    f"file {relpath!r} is given twice for model {name!r}"
                    + (" (it is the shipped copy of another)" if relpath not in seen else "")
                )
            seen.add(relpath)
        json.dumps(dict(metadata), default=str)  # fail before copying anything

        model_dir = self._model_dir(name)
        model_dir.mkdir(parents=True, exist_ok=True)
        tmp = model_dir / f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            table = _copy_sources(sources, tmp)
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
                if signer is not None:
                    # sign what readers will parse (the JSON round trip of default=str)
                    manifest = json.loads(json.dumps(manifest, default=str))
                    manifest["signature"] = signer(manifest)
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
