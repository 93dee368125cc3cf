"""``kfp-edge check-credentials``: refuse to deploy MinIO with placeholder or shared keys.

Checks every ``*.env`` file next to its ``*.env.example`` in a manifests directory (the
Secrets of ``manifests/base``): each must exist, set every key of its example, and replace every
value; secrets need 16 characters or more; no two identities (root, publisher, device) may share
a key. The platform team runs it before ``kubectl apply -k`` (docs/deploy.md).
"""

from __future__ import annotations

import os
from pathlib import Path

_PLACEHOLDER_WORDS = ("replace", "changeme", "example", "placeholder", "password123")
_MIN_SECRET = 16


def _read_env(path: Path) -> dict[str, str]:
    values = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{path}:{number}: expected KEY=VALUE")
        values[key.strip()] = value.strip()
    return values


def _problems(example: Path, real: Path) -> list[str]:
    if not real.is_file():
        return [f"{real}: missing; copy {example.name} and replace its values"]
    placeholders, values = _read_env(example), _read_env(real)
    problems = []
    for key, placeholder in placeholders.items():
        value = values.get(key, "")
        where = f"{real}: {key}"
        if not value:
            problems.append(f"{where} is not set")
        elif value == placeholder or any(w in value.lower() for w in _PLACEHOLDER_WORDS):
            problems.append(f"{where} is still a placeholder")
        elif ("secret" in key or "password" in key) and len(value) < _MIN_SECRET:
            problems.append(f"{where} is shorter than {_MIN_SECRET} characters")
    return problems


def check_credentials(directory: str | os.PathLike) -> list[str]:
    """Returns what is wrong with the credential files of a manifests directory (empty: ok).

    Args:
        directory: A directory with ``*.env.example`` files, e.g. ``manifests/base``.

    Raises:
        FileNotFoundError: If the directory holds no ``*.env.example`` file.
    """
    directory = Path(directory)
    examples = sorted(directory.glob("*.env.example"))
    if not examples:
        raise FileNotFoundError(f"{directory}: no *.env.example files; not a manifests directory")
    problems, owners = [], {}
    for example in examples:
        real = example.with_name(example.name.removesuffix(".example"))
        found = _problems(example, real)
        problems += found
        if found or not real.is_file():
            continue
        for key, value in _read_env(real).items():
            if value in owners:
                problems.append(f"{real}: {key} is the same as {owners[value]}; use own keys")
            owners[value] = f"{real.name} {key}"
    return problems
