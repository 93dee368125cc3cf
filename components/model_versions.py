"""The layout of a published model version on the workspace volume: one contract for every stage.

Layout::

    <workspace>/models/<name>/<version>/manifest.json
    <workspace>/models/<name>/<version>/model.tflite          the chosen LiteRT model
    <workspace>/models/<name>/<version>/saved_model/          the trained Keras SavedModel
    <workspace>/models/<name>/<version>/preprocessing.json    the ETL's preprocessing spec

A version is a directory named by a decimal integer; ``latest`` is the highest such directory
holding a manifest. Writing versions (atomic publish, pruning) is the model store's business
(``kfp_edge.model_store.store``); reading them is here, for the drift monitor, the pull client
and the store alike. Only the standard library is used: the edge pull client imports this module.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

MODELS_DIR = "models"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = 1
MODEL_FILE = "model.tflite"
SAVED_MODEL_DIR = "saved_model"
PREPROCESSING_FILE = "preprocessing.json"
DATASET_MANIFEST_FILE = "dataset_manifest.json"
_CHUNK = 1 << 20

# A model name is one path component: letters, digits, '.', '_', '-', not starting with '.'.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_VERSION_DIR = re.compile(r"[1-9][0-9]{0,17}")
# Keys the store itself writes into a manifest; metadata may not override them.
RESERVED_KEYS = ("format", "name", "version", "created_at", "files", "omitted_files")


def models_root(workspace: str | os.PathLike) -> Path:
    """Returns the directory of the model store on a workspace: ``<workspace>/models``."""
    return Path(workspace) / MODELS_DIR


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


class PublishedModels:
    """Read-only view of the published versions under ``<workspace>/models``.

    Args:
        root: The store's root directory (created on first publish).
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

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
