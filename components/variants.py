"""The variants directory: the contract between compression (which writes it) and evaluation.

Layout, inside a run directory::

    variants/variants.json            the entries of one compression task, in its order
    variants/<name>.variant.json      one entry per variant (parallel tasks share the directory)
    variants/<name>.tflite            the LiteRT model of that variant

An entry is ``{"name", "technique", "params", "path", ...}``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from kfp_edge.workspace import VARIANTS_DIR  # noqa: F401 - the directory this module describes

VARIANTS_FILE = "variants.json"
ENTRY_SUFFIX = ".variant.json"


def read_variants(variants_dir: str | os.PathLike) -> list[dict]:
    """Returns the variants of a variants directory.

    The entries of ``variants.json`` in its order, then those of ``<name>.variant.json`` files
    it does not list (written by other compression tasks into the same directory), by name.

    Raises:
        FileNotFoundError: If the directory holds neither.
    """
    directory = Path(variants_dir)
    path = directory / VARIANTS_FILE
    entries = json.loads(path.read_text()) if path.exists() else []
    listed = {e["name"] for e in entries}
    for extra in sorted(directory.glob(f"*{ENTRY_SUFFIX}")) if directory.is_dir() else []:
        entry = json.loads(extra.read_text())
        if entry["name"] not in listed:
            entries.append(entry)
            listed.add(entry["name"])
    if not entries:
        raise FileNotFoundError(f"{path}: no variants list; did the compression step finish?")
    return entries
