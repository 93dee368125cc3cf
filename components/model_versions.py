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

import gzip
import hashlib
import json
import os
import re
import zlib
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
# Files every release must hold: a device installs nothing without its model.
REQUIRED_FILES = (MODEL_FILE,)
# Files shipped compressed: gzip -9 without a name or time in the header, so the shipped bytes
# are exactly ``gzip.compress(raw, 9, mtime=0)`` (the size the gate measures). gzip rather than
# zstd: the standard library reads it on every device, and at -9 a .tflite compresses within a
# few percent of zstd -19 (the weights dominate); the shipped file sits next to the raw one.
SHIPPED_ENCODING = "gzip"
SHIPPED = {MODEL_FILE: MODEL_FILE + ".gz"}
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
_CHUNK = 1 << 20

# A model name is one path component: letters, digits, '.', '_', '-', not starting with '.'.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_VERSION_DIR = re.compile(r"[1-9][0-9]{0,17}")
# Keys the store itself writes into a manifest; metadata may not override them.
RESERVED_KEYS = (
    "format",
    "name",
    "version",
    "created_at",
    "files",
    "omitted_files",
    "signature",
)


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


def compress_for_shipping(data: bytes) -> bytes:
    """Returns ``data`` as a release ships it: gzip level 9, no name or time in the header."""
    return gzip.compress(data, compresslevel=9, mtime=0)


def decompress_shipped(data: bytes) -> bytes:
    """Returns the raw bytes of a shipped (gzip) payload."""
    return gzip.decompress(data)


def shipped_bytes(path: str | os.PathLike) -> int:
    """Returns the size of a file as a release ships it (what the gate's size level measures)."""
    return len(compress_for_shipping(Path(path).read_bytes()))


def gzip_file(src: str | os.PathLike, dst: str | os.PathLike) -> dict:
    """Writes ``gzip -9`` of ``src`` to a new file ``dst`` (fsynced); returns its sha256 and size.

    The bytes equal ``gzip.compress(raw, 9, mtime=0)``: no file name or time in the header, so
    equal inputs give equal bytes.
    """
    digest = hashlib.sha256()
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip stream
    size = 0
    with open(src, "rb") as fin, open(dst, "xb") as fout:
        while True:
            chunk = fin.read(_CHUNK)
            packed = packer.compress(chunk) if chunk else packer.flush()
            digest.update(packed)
            fout.write(packed)
            size += len(packed)
            if not chunk:
                break
        fout.flush()
        os.fsync(fout.fileno())
    return {"encoding": SHIPPED_ENCODING, "sha256": digest.hexdigest(), "size": size}


def gunzip_file(src: str | os.PathLike, dst: str | os.PathLike, max_size: int) -> tuple[str, int]:
    """Decompresses a gzip file into a new file, stopping once it exceeds ``max_size`` bytes.

    Returns:
        The sha256 and size of what was written (at most ``max_size + 1`` bytes).

    Raises:
        ValueError: If ``src`` is not valid gzip data.
    """
    digest = hashlib.sha256()
    size = 0
    try:
        with gzip.open(src, "rb") as fin, open(dst, "xb") as fout:
            while size <= max_size and (chunk := fin.read(min(_CHUNK, max_size + 1 - size))):
                digest.update(chunk)
                fout.write(chunk)
                size += len(chunk)
            fout.flush()
            os.fsync(fout.fileno())
    except (OSError, EOFError, zlib.error) as exc:
        if isinstance(exc, OSError) and not isinstance(exc, gzip.BadGzipFile) and exc.errno:
            raise
        raise ValueError(f"{src}: not valid gzip data ({exc})") from exc
    return digest.hexdigest(), size


def _good_entry(entry: Any) -> bool:
    digest = entry.get("sha256") if isinstance(entry, dict) else None
    size = entry.get("size") if isinstance(entry, dict) else None
    return bool(
        isinstance(digest, str)
        and re.fullmatch(r"[0-9a-f]{64}", digest)
        and isinstance(size, int)
        and not isinstance(size, bool)
        and size >= 0
    )


def check_manifest(manifest: Any, where: str) -> dict:
    """Checks the shape of a manifest read from disk or from S3 before anything trusts it.

    Args:
        manifest: The parsed manifest.
        where: Where it was read from, for the error message.

    Returns:
        The manifest.

    Raises:
        ValueError: If the name, version or files table is malformed, a file path could
            escape the version directory, or a required file (``model.tflite``) is missing.
    """
    ok = isinstance(manifest, dict) and isinstance(manifest.get("files"), dict)
    if ok:
        validate_name(manifest.get("name"))
        ok = isinstance(manifest.get("version"), int) and manifest["version"] > 0
    if not ok:
        raise ValueError(f"{where}: not a model manifest (needs name, version and files)")
    for relpath, entry in manifest["files"].items():
        validate_relpath(relpath)
        shipped = entry.get("shipped") if isinstance(entry, dict) else None
        if not _good_entry(entry) or (
            shipped is not None
            and not (
                _good_entry(shipped)
                and shipped.get("encoding") == SHIPPED_ENCODING
                and shipped.get("file") == SHIPPED.get(relpath)
            )
        ):
            raise ValueError(f"{where}: manifest entry of {relpath!r} needs sha256 and size")
    missing = [f for f in REQUIRED_FILES if f not in manifest["files"]]
    if missing:
        raise ValueError(f"{where}: the release lacks {', '.join(missing)}; nothing to install")
    return manifest


def read_json_bounded(path: str | os.PathLike) -> Any:
    """Reads a manifest file of at most ``MAX_MANIFEST_BYTES`` and parses it.

    Raises:
        ValueError: If the file is larger than the cap or not valid JSON (naming the file).
    """
    with open(path, "rb") as f:
        data = f.read(MAX_MANIFEST_BYTES + 1)
    if len(data) > MAX_MANIFEST_BYTES:
        raise ValueError(f"{path}: manifest larger than {MAX_MANIFEST_BYTES} bytes; refused")
    try:
        return json.loads(data)
    except ValueError as exc:
        raise ValueError(f"{path}: manifest is not valid JSON ({exc})") from exc


def damaged_files(
    directory: str | os.PathLike, manifest: Mapping[str, Any], shipped: bool = True
) -> dict[str, str]:
    """Returns ``{relative path: what is wrong}`` for every listed file that does not match.

    Args:
        directory: A version directory (or an installed copy of one).
        manifest: Its manifest.
        shipped: Also check the compressed shipped copies (present in the store, not on a
            device).
    """
    directory = Path(directory)
    damaged = {}
    for relpath, entry in sorted(manifest["files"].items()):
        checks = [(validate_relpath(relpath), entry)]
        if shipped and entry.get("shipped"):
            checks.append((entry["shipped"]["file"], entry["shipped"]))
        for rel, expected in checks:
            path = directory / rel
            if path.is_symlink() or not path.is_file():
                damaged[rel] = f"{path}: missing (listed in the manifest)"
                continue
            size = path.stat().st_size
            if size != expected["size"]:
                damaged[rel] = (
                    f"{path}: size {size} bytes, manifest says {expected['size']} "
                    f"({'truncated' if size < expected['size'] else 'too long'})"
                )
                continue
            digest, _ = sha256_file(path)
            if digest != expected["sha256"]:
                damaged[rel] = (
                    f"{path}: sha256 {digest} does not match the manifest's "
                    f"{expected['sha256']} (corrupted)"
                )
    return damaged


def verify_directory(
    directory: str | os.PathLike, manifest: Mapping[str, Any], shipped: bool = True
) -> None:
    """Checks every file of a manifest (size, then sha256) and that no other file is present.

    Args:
        directory: A version directory (or a downloaded copy of one).
        manifest: Its manifest.
        shipped: Also check the compressed shipped copies (see ``damaged_files``).

    Raises:
        ValueError: Naming the first file that is missing, truncated, extended, corrupted or
            unexpected.
    """
    directory = Path(directory)
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise ValueError(f"{directory}: manifest has no 'files' table")
    damaged = damaged_files(directory, manifest, shipped)
    if damaged:
        raise ValueError(next(iter(damaged.values())))
    listed = set(files)
    if shipped:
        listed.update(e["shipped"]["file"] for e in files.values() if e.get("shipped"))
    for path in directory.rglob("*"):
        if path.is_file():
            rel = path.relative_to(directory).as_posix()
            if rel != MANIFEST_FILE and rel not in listed:
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
        return read_json_bounded(self.get(name, version) / MANIFEST_FILE)

    def verify(self, name: str, version: int | str = "latest") -> dict:
        """Checks the sha256 and size of every file of a version against its manifest.

        Returns:
            The manifest.

        Raises:
            ValueError: Naming the first file that does not match.
        """
        directory = self.get(name, version)
        manifest = read_json_bounded(directory / MANIFEST_FILE)
        verify_directory(directory, manifest)
        return manifest
