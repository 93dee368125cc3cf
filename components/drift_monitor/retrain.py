"""The input of a retraining run: the biased reservoir, plus the original data when asked.

The original data is the ETL output of the run that produced the published version (its
lineage names the run): the train, validation and test splits are read back from their Parquet
copies and their class ids turned back into the original label values, so the retraining run's
ETL sees one table of raw features and labels, as it would from a user's CSV.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from kfp_edge.dataset import SPLITS, load_split, read_manifest
from kfp_edge.drift_monitor.monitor import drift_dir, resolve_model
from kfp_edge.drift_monitor.reservoir import BiasedReservoir
from kfp_edge.workspace import DATA_DIR, run_dir

RETRAIN_DIR = "retrain_input"
RETRAIN_FILE = "data.parquet"


def original_data_dir(workspace: str | os.PathLike, name: str, version: int | str) -> Path:
    """Returns the ETL output directory of the run that published a model version.

    Raises:
        FileNotFoundError: If the version names no run, or that run's data is gone.
    """
    model_dir = resolve_model(workspace, name, version)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    run_id = (manifest.get("lineage") or {}).get("run_id")
    if not run_id:
        raise FileNotFoundError(
            f"{model_dir / 'manifest.json'}: no lineage.run_id; cannot find the original data "
            "of this version (retrain on the reservoir alone)"
        )
    data_dir = run_dir(workspace, run_id) / DATA_DIR
    read_manifest(data_dir)  # raises FileNotFoundError naming the missing manifest
    return data_dir


def _original_frame(data_dir: Path, label_column: str):
    import pandas as pd

    manifest = read_manifest(data_dir)
    classes = np.asarray(manifest["classes"], dtype=object)
    frames = []
    for split in SPLITS:
        if split not in manifest["splits"]:
            continue
        x, y = load_split(data_dir, split)
        frame = pd.DataFrame(x.astype(np.float64), columns=manifest["feature_columns"])
        frame[label_column] = classes[y]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def prepare_retraining_data(
    workspace: str | os.PathLike,
    name: str,
    run_id: str,
    include_original: bool = False,
    version: int | str = "latest",
    min_rows: int = 30,
) -> dict:
    """Writes the retraining input of a run: ``runs/<run_id>/retrain_input/data.parquet``.

    Args:
        workspace: Root of the workspace volume.
        name: Model name (its reservoir is ``drift/<name>/``).
        run_id: The run whose directory receives the table.
        include_original: Append the original train, validation and test data of the watched
            version to the reservoir's rows.
        version: The watched model version (for the original data and the column check).
        min_rows: Fewer labelled rows than this is an error (too little to train on).

    Returns:
        ``{"input_path", "label_column", "rows", "reservoir_rows", "original_rows",
        "feature_columns", "classes"}``.

    Raises:
        FileNotFoundError: If there is no reservoir (the monitor has not run) or, with
            ``include_original``, no original data.
        ValueError: If there are too few labelled rows; an existing table is never overwritten.
    """
    import pandas as pd

    state = drift_dir(workspace, name)
    reservoir = BiasedReservoir.load(state)
    frame = reservoir.to_frame()
    label_column = reservoir.label_column
    frame = frame[frame[label_column].notna()]
    reservoir_rows = len(frame)
    original_rows = 0
    if include_original:
        original = _original_frame(original_data_dir(workspace, name, version), label_column)
        missing = sorted(set(reservoir.feature_columns) - set(original.columns))
        if missing:
            raise ValueError(
                f"the original data of {name!r} lacks the reservoir's feature columns {missing}"
            )
        original_rows = len(original)
        frame = pd.concat([frame, original[frame.columns]], ignore_index=True)
    if len(frame) < min_rows:
        raise ValueError(
            f"{state}: only {len(frame)} labelled rows to retrain on (at least {min_rows} "
            "needed); let more labelled observations arrive or pass include_original"
        )
    labels = frame[label_column].tolist()
    if not all(isinstance(v, (int, np.integer)) for v in labels):
        frame[label_column] = [str(v) for v in labels]
    target = run_dir(workspace, run_id) / RETRAIN_DIR / RETRAIN_FILE
    if target.exists():
        raise FileExistsError(f"{target}: the retraining input of run {run_id!r} already exists")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{RETRAIN_FILE}.{os.getpid()}.tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, target)
    return {
        "input_path": str(target),
        "label_column": label_column,
        "rows": int(len(frame)),
        "reservoir_rows": int(reservoir_rows),
        "original_rows": int(original_rows),
        "feature_columns": list(reservoir.feature_columns),
        "classes": sorted({str(v) for v in frame[label_column]}),
    }
