"""The input of a retraining run: reservoir rows, a recent held-out test table, original data.

The original data, added when asked and capped so that old rows age out, is the ETL output of
the run that produced the published version (its lineage names the run): the train, validation
and test splits are read back from their Parquet copies and their class ids turned back into the
original label values, so the retraining run's ETL sees one table of raw features and labels,
as it would from a user's CSV.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from kfp_edge.dataset import SPLITS, load_split, read_manifest
from kfp_edge.drift_monitor.monitor import drift_dir, resolve_model
from kfp_edge.drift_monitor.state import load_state
from kfp_edge.workspace import DATA_DIR, run_dir

RETRAIN_DIR = "retrain_input"
RETRAIN_FILE = "data.parquet"
TEST_FILE = "test.parquet"


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


def _reservoir_frame(workspace, name: str):
    state = drift_dir(workspace, name)
    loaded = load_state(state)
    if loaded is None or loaded["reservoir"] is None:
        raise FileNotFoundError(f"{state}: no saved reservoir (has the drift monitor run?)")
    reservoir = loaded["reservoir"]
    frame = reservoir.to_frame()  # oldest first
    frame = frame[frame[reservoir.label_column].notna()]
    frame[reservoir.label_column] = [str(v) for v in frame[reservoir.label_column]]
    return reservoir, frame.drop_duplicates(keep="last").reset_index(drop=True)


def _aged_original(original, recent, cap: int, seed: int):
    """Original rows not among the recent ones, at most ``cap`` of them (a seeded sample)."""
    original = original.drop_duplicates()
    keys = set(map(tuple, recent.itertuples(index=False)))
    fresh = [tuple(row) not in keys for row in original.itertuples(index=False)]
    original = original[fresh]
    if len(original) > cap:
        original = original.sample(n=cap, random_state=seed).sort_index()
    return original


def _write_parquet(frame, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, target)


def prepare_retraining_data(
    workspace: str | os.PathLike,
    name: str,
    run_id: str,
    include_original: bool = False,
    version: int | str = "latest",
    min_rows: int = 30,
    original_share: float = 0.5,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> dict:
    """Writes the retraining input of a run: a training table and a recent held-out test table.

    The reservoir's labelled rows, without duplicates, are split by arrival: the newest
    ``test_fraction`` become ``runs/<run_id>/retrain_input/test.parquet`` (the recent held-out
    data on which the gate compares the new model with the published champion), the rest
    ``data.parquet``. With ``include_original`` the watched version's original data joins the
    training table, minus rows already in either table, and capped at ``original_share`` of it:
    as every retrained version's original data is itself such a table, old rows age out by that
    share at each generation.

    Args:
        workspace: Root of the workspace volume.
        name: Model name (its reservoir is in ``drift/<name>/``).
        run_id: The run whose directory receives the tables.
        include_original: Add the original data of the watched version.
        version: The watched model version (for the original data and the column check).
        min_rows: Fewer training rows than this is an error (too little to train on).
        original_share: At most this share of the training rows is original data.
        test_fraction: Share of the newest labelled rows held out for the test table.
        seed: Seed of the sample of original rows.

    Returns:
        ``{"input_path", "test_path", "label_column", "rows", "test_rows", "reservoir_rows",
        "original_rows", "duplicates_dropped", "feature_columns", "classes"}``.

    Raises:
        FileNotFoundError: If there is no reservoir (the monitor has not run) or, with
            ``include_original``, no original data.
        ValueError: If there are too few rows; existing tables are never overwritten.
    """
    import pandas as pd

    if not 0.0 <= original_share < 1.0 or not 0.0 < test_fraction < 1.0:
        raise ValueError(
            f"original_share must be in [0, 1) and test_fraction in (0, 1), got "
            f"{original_share} and {test_fraction}"
        )
    reservoir, frame = _reservoir_frame(workspace, name)
    label_column = reservoir.label_column
    n_test = int(np.ceil(test_fraction * len(frame))) if len(frame) > 1 else 0
    test, train = frame.iloc[len(frame) - n_test :], frame.iloc[: len(frame) - n_test]
    original_rows = 0
    if include_original:
        original = _original_frame(original_data_dir(workspace, name, version), label_column)
        missing = sorted(set(reservoir.feature_columns) - set(original.columns))
        if missing:
            raise ValueError(
                f"the original data of {name!r} lacks the reservoir's feature columns {missing}"
            )
        original = original[frame.columns].astype({label_column: str})
        cap = int(original_share / (1.0 - original_share) * len(train))
        original = _aged_original(original, frame, cap, seed)
        original_rows = len(original)
        train = pd.concat([train, original], ignore_index=True)
    if len(train) < min_rows:
        raise ValueError(
            f"{drift_dir(workspace, name)}: only {len(train)} labelled rows to retrain on (at "
            f"least {min_rows} needed); let more labelled observations arrive or pass "
            "include_original"
        )
    target = run_dir(workspace, run_id) / RETRAIN_DIR
    for file in (RETRAIN_FILE, TEST_FILE):
        if (target / file).exists():
            raise FileExistsError(f"{target / file}: the retraining input of run {run_id!r} exists")
    target.mkdir(parents=True, exist_ok=True)
    _write_parquet(test, target / TEST_FILE)
    _write_parquet(train, target / RETRAIN_FILE)
    return {
        "input_path": str(target / RETRAIN_FILE),
        "test_path": str(target / TEST_FILE),
        "label_column": label_column,
        "rows": int(len(train)),
        "test_rows": int(len(test)),
        "reservoir_rows": int(len(frame)),
        "original_rows": int(original_rows),
        "duplicates_dropped": int(reservoir.size - len(frame)),
        "feature_columns": list(reservoir.feature_columns),
        "classes": sorted({str(v) for v in pd.concat([train, test])[label_column]}),
    }
