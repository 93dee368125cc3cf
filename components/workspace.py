"""Layout of the workspace volume (the PersistentVolume) and the run report.

One directory stands for the PV: locally ``./.kfp-edge/`` (or ``--workspace``), in the cluster
the workspace PVC mounted at ``/workspace`` in every step and every TFJob replica::

    <workspace>/runs/<run-id>/data/        ETL output: TFRecord shards, Parquet splits, manifest
    <workspace>/runs/<run-id>/training/    SavedModel, training report, BackupAndRestore state
    <workspace>/runs/<run-id>/variants/    compressed .tflite variants
    <workspace>/runs/<run-id>/browser/     the browser-ready copy of the published model
    <workspace>/runs/<run-id>/report.json  the run report: one section per step
    <workspace>/runs/<run-id>/evaluation.json  the evaluation of every variant
    <workspace>/models/<name>/<version>/   the versioned model store (kfp_edge.model_versions)

The names below are the one place these directories are spelled.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

CLUSTER_MOUNT_PATH = "/workspace"
DEFAULT_LOCAL_WORKSPACE = ".kfp-edge"
REPORT_FILE = "report.json"
DATA_DIR = "data"
TRAINING_DIR = "training"
VARIANTS_DIR = "variants"
BROWSER_DIR = "browser"
EVALUATION_FILE = "evaluation.json"

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def run_dir(workspace: str | os.PathLike, run_id: str) -> Path:
    """Returns the directory of one pipeline run on the workspace.

    Args:
        workspace: Root of the workspace volume.
        run_id: The pipeline run id (letters, digits, ``.``, ``_``, ``-``).

    Raises:
        ValueError: If the run id could escape the runs directory.
    """
    if not _RUN_ID.fullmatch(run_id) or run_id in {".", ".."}:
        raise ValueError(f"invalid run id {run_id!r}: use letters, digits, '.', '_' and '-'")
    return Path(workspace) / "runs" / run_id


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Writes JSON to ``path`` through a temporary file and a rename.

    A reader sees the old file or the new one, never a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True, default=str)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_report(run_directory: str | os.PathLike) -> dict:
    """Returns the run report of a run directory, or an empty dict if none exists yet."""
    path = Path(run_directory) / REPORT_FILE
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def update_report(run_directory: str | os.PathLike, section: str, data: Any) -> Path:
    """Sets one section of ``report.json`` in a run directory, keeping the others.

    Steps run one after another on the volume, so read-modify-write through an atomic rename
    is enough; each step owns its own section.

    Args:
        run_directory: The run directory (see :func:`run_dir`).
        section: The section name, usually the step name (``etl``, ``training``, ...).
        data: JSON-serialisable content of the section.

    Returns:
        The path of the report.
    """
    report = read_report(run_directory)
    report[section] = data
    path = Path(run_directory) / REPORT_FILE
    write_json_atomic(path, report)
    return path
