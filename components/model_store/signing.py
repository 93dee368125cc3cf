"""Signed releases: Ed25519 signatures over a version's manifest (the ``cryptography`` package).

The publisher signs the canonical JSON of the whole manifest without its ``signature`` entry:
model name, version, creation time, every file's size and sha256 (raw and shipped), and the
metrics, gate and lineage sections. A device pins one or more trusted public keys and installs
only a release whose signature one of them verifies.

Keys are PEM files: the private key (PKCS#8, unencrypted, mode 0600) reaches the publish step
only as a file mounted from a Kubernetes Secret (``DEFAULT_SIGNING_KEY_FILE``, or the file named
by ``KFP_EDGE_SIGNING_KEY_FILE``); public
keys (SubjectPublicKeyInfo) are what devices get. ``kfp-edge keys generate`` makes a pair.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

ENV_SIGNING_KEY_FILE = "KFP_EDGE_SIGNING_KEY_FILE"
# Where the publish pod finds the key when the variable is unset: the mount of the Secret
# ``kfp-edge-signing-key`` (``use_signing_key``). A local run has no such file: unsigned.
DEFAULT_SIGNING_KEY_FILE = "/var/run/secrets/kfp-edge-signing/private.pem"
ENV_TRUSTED_KEYS = "KFP_EDGE_TRUSTED_KEYS"
ALGORITHM = "ed25519"
SIGNATURE_KEY = "signature"


def canonical_bytes(manifest: Mapping[str, Any]) -> bytes:
    """Returns the bytes a signature covers: sorted, compact JSON without ``signature``."""
    body = {k: v for k, v in manifest.items() if k != SIGNATURE_KEY}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def key_id(public_key) -> str:
    """Returns the id of a public key: the first 16 hex digits of the sha256 of its raw bytes."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_keys(private_path: str | os.PathLike, public_path: str | os.PathLike) -> str:
    """Writes a new Ed25519 key pair as PEM files (neither may exist yet); returns the key id.

    Raises:
        FileExistsError: If either file exists (a key is never overwritten).
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private_path, public_path = Path(private_path), Path(public_path)
    for path in (private_path, public_path):
        if path.exists():
            raise FileExistsError(f"{path}: exists; a key is never overwritten")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem)
    with open(public_path, "xb") as f:
        f.write(public_pem)
    return key_id(key.public_key())


def load_private_key(path: str | os.PathLike):
    """Reads an Ed25519 private key from a PEM file.

    Raises:
        ValueError: If the file is not an unencrypted Ed25519 private key (naming the file,
            never its content).
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    data = Path(path).read_bytes()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


def load_public_keys(paths: Iterable[str | os.PathLike]) -> dict:
    """Reads trusted Ed25519 public keys (a file may hold several PEM blocks).

    Returns:
        ``{key id: public key}``.

    Raises:
        ValueError: If a file holds no Ed25519 public key, or something else.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    keys = {}
    for path in paths:
        text = Path(path).read_text(errors="replace")
        blocks = [b for b in text.split("-----END PUBLIC KEY-----") if "-----BEGIN" in b]
        for block in blocks:
            pem = (block[block.index("-----BEGIN") :] + "-----END PUBLIC KEY-----\n").encode()
            try:
                key = serialization.load_pem_public_key(pem)
            except ValueError as exc:
                raise ValueError(f"{path}: not a PEM public key") from exc
            if not isinstance(key, Ed25519PublicKey):
                raise ValueError(f"{path}: not an Ed25519 public key")
            keys[key_id(key)] = key
        if not blocks:
            raise ValueError(f"{path}: holds no PEM public key")
    return keys


def signer_from_env(environ: Mapping[str, str] | None = None):
    """Returns a function that signs a manifest with the publisher's private key.

    The key is the file ``KFP_EDGE_SIGNING_KEY_FILE`` names or, when that is unset, the
    mounted Secret at ``DEFAULT_SIGNING_KEY_FILE`` if it exists.

    Returns:
        ``sign(manifest) -> signature entry``, or None when there is no key.

    Raises:
        ValueError: If the variable names a file that is not an Ed25519 private key.
    """
    env = os.environ if environ is None else environ
    path = env.get(ENV_SIGNING_KEY_FILE)
    if not path:
        if not os.path.isfile(DEFAULT_SIGNING_KEY_FILE):
            return None
        path = DEFAULT_SIGNING_KEY_FILE
    key = load_private_key(path)
    return lambda manifest: sign(manifest, key)


def sign(manifest: Mapping[str, Any], private_key) -> dict:
    """Returns the ``signature`` entry of a manifest: algorithm, key id and base64 value."""
    value = private_key.sign(canonical_bytes(manifest))
    return {
        "algorithm": ALGORITHM,
        "key_id": key_id(private_key.public_key()),
        "value": base64.b64encode(value).decode(),
    }


def verify(manifest: Mapping[str, Any], trusted: Mapping[str, Any], where: str) -> str:
    """Checks a manifest's signature against the trusted public keys; returns the key id.

    Raises:
        ValueError: If the release is unsigned, signed by a key that is not trusted, or the
            signature does not verify (the manifest was changed after signing).
    """
    from cryptography.exceptions import InvalidSignature

    if not trusted:
        raise ValueError(f"{where}: no trusted public key given (--trusted-key); refused")
    entry = manifest.get(SIGNATURE_KEY)
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: the release is unsigned; refused")
    key = trusted.get(entry.get("key_id"))
    if entry.get("algorithm") != ALGORITHM or key is None:
        raise ValueError(
            f"{where}: signed by key {entry.get('key_id')!r}, which is not trusted; refused"
        )
    try:
        key.verify(
            base64.b64decode(str(entry.get("value")), validate=True), canonical_bytes(manifest)
        )
    except (InvalidSignature, ValueError) as exc:
        raise ValueError(
            f"{where}: the signature does not match the manifest (tampered); refused"
        ) from exc
    return entry["key_id"]
