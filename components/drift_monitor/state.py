"""The drift monitor's saved state: plain data in generation directories switched by one rename.

Layout under ``<workspace>/drift/<name>/``::

    CURRENT                 {"format": 2, "generation": N}: the committed generation
    gen-<N>/state.json      detectors (parameters and values since their reset), alarms, the
                            input files already read, counters: JSON, nothing executable
    gen-<N>/arrays.npz      partial window, reference and recent samples, pending rows
                            (numbers and strings only; read with ``allow_pickle=False``)
    gen-<N>/reservoir.parquet  the biased reservoir (rows, state in the file's metadata)
    decision.json           a readable copy of the last decision

An update writes a whole new generation directory, then replaces ``CURRENT`` atomically: a
reader or a crash sees all files of one update or all of the previous one. The previous
generation is kept (the one before it is removed). A state that cannot be read, is of another
format, or is an old ``detectors.pkl`` (never unpickled: it could run code) raises
:class:`StateError`, and nothing is changed.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np

from kfp_edge.drift_monitor.detectors import Detector
from kfp_edge.drift_monitor.reservoir import DATA_FILE, BiasedReservoir
from kfp_edge.drift_monitor.stream import DriftMonitor
from kfp_edge.workspace import write_json_atomic

STATE_FORMAT = 2
CURRENT_FILE = "CURRENT"
STATE_FILE = "state.json"
ARRAYS_FILE = "arrays.npz"
LEGACY_FILES = ("detectors.pkl", "reservoir.parquet")
ARRAYS = ("partial", "reference", "recent", "pending_ids", "pending_x")
STATE_KEYS = ("model_version", "parameters", "monitor", "alarms", "history", "processed")
MONITOR_FIELDS = ("feature_columns", "label_column", "classes", "delta", "window", "clock")


class StateError(ValueError):
    """The saved state is corrupt, of another format or of an older monitor."""


def monitor_to_data(monitor: DriftMonitor) -> tuple[dict, dict]:
    """Returns a monitor as (JSON-able data, arrays); see :func:`monitor_from_data`."""
    data = {field: getattr(monitor, field) for field in MONITOR_FIELDS}
    data.update(
        id_column=monitor.id_column,
        model_in_loop=monitor.model_path is not None,
        mean=monitor.mean.tolist(),
        std=monitor.std.tolist(),
        stream_position=monitor.stream_position,
        counts=dict(monitor.counts),
        detectors={name: d.to_dict() for name, d in monitor.detectors.items()},
    )
    return data, {name: getattr(monitor, name) for name in ARRAYS}


def monitor_from_data(data: dict, arrays: dict, model_path) -> DriftMonitor:
    """Rebuilds a monitor saved by :func:`monitor_to_data`.

    Raises:
        StateError: If the data does not describe a monitor.
    """
    try:
        monitor = DriftMonitor(
            *(data[field] for field in MONITOR_FIELDS[:3]),
            mean=data["mean"],
            std=data["std"],
            model_path=model_path if data["model_in_loop"] else None,
            delta=data["delta"],
            window=data["window"],
            clock=data["clock"],
            id_column=data["id_column"],
        )
        monitor.stream_position = int(data["stream_position"])
        monitor.counts.update(data["counts"])
        saved = data["detectors"]
        if sorted(saved) != sorted(monitor.detectors):
            raise StateError(f"detectors {sorted(saved)} do not match {monitor.names()}")
        monitor.detectors = {name: Detector.from_dict(saved[name]) for name in monitor.names()}
        for name in ARRAYS:
            setattr(monitor, name, arrays[name])
    except (KeyError, TypeError, ValueError) as exc:
        raise StateError(f"not a saved drift monitor: {exc}") from exc
    return monitor


def _generation(state_dir: Path) -> int | None:
    current = state_dir / CURRENT_FILE
    if not current.is_file():
        for legacy in LEGACY_FILES:
            if (state_dir / legacy).exists():
                raise StateError(
                    f"{state_dir / legacy}: state of an older drift monitor (format 1); it is "
                    "never read (a pickle could run code): move it away to start afresh"
                )
        return None
    try:
        pointer = json.loads(current.read_text())
        if pointer.get("format") != STATE_FORMAT:
            raise StateError(f"{current}: unknown state format {pointer.get('format')!r}")
        return int(pointer["generation"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StateError(f"{current}: not a drift monitor state pointer: {exc}") from exc


def load_state(state_dir: str | os.PathLike) -> dict | None:
    """Returns the committed state, or None when the monitor has never saved one.

    Returns:
        ``{"generation", "path", "state" (the JSON), "arrays", "reservoir"}``; ``reservoir``
        is None when none was saved.

    Raises:
        StateError: If the state is corrupt or foreign (the files are left as they are).
    """
    state_dir = Path(state_dir)
    generation = _generation(state_dir)
    if generation is None:
        return None
    path = state_dir / f"gen-{generation}"
    try:
        state = json.loads((path / STATE_FILE).read_text())
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise StateError(f"{path / STATE_FILE}: not a drift monitor state of format 2")
        missing = sorted(set(STATE_KEYS) - set(state))
        if missing:
            raise StateError(f"{path / STATE_FILE}: not a drift monitor state (no {missing})")
        with np.load(path / ARRAYS_FILE, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in ARRAYS if name in npz.files}
        reservoir = None
        if (path / DATA_FILE).is_file():
            reservoir = BiasedReservoir.load(path)
    except StateError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise StateError(f"{path}: unreadable drift monitor state: {exc}") from exc
    return {
        "generation": generation,
        "path": path,
        "state": state,
        "arrays": arrays,
        "reservoir": reservoir,
    }


def commit_state(
    state_dir: str | os.PathLike,
    state: dict,
    arrays: dict,
    reservoir: BiasedReservoir,
    previous: int | None,
) -> Path:
    """Writes a new generation and makes it current by one atomic replace of ``CURRENT``.

    Args:
        state_dir: The monitor's directory.
        state: The JSON state (``format`` is set here).
        arrays: Numeric and string arrays (see :data:`ARRAYS`).
        reservoir: The reservoir to save with them.
        previous: The generation this update started from (None for the first).

    Returns:
        The new generation's directory.
    """
    state_dir = Path(state_dir)
    generation = (previous or 0) + 1
    target = state_dir / f"gen-{generation}"
    if target.exists():  # left by a crashed update that never became current
        shutil.rmtree(target)
    target.mkdir(parents=True)
    write_json_atomic(target / STATE_FILE, {**state, "format": STATE_FORMAT})
    with open(target / ARRAYS_FILE, "wb") as f:
        np.savez(f, **arrays)
    reservoir.save(target)
    write_json_atomic(state_dir / CURRENT_FILE, {"format": STATE_FORMAT, "generation": generation})
    if previous is not None and (state_dir / f"gen-{previous - 1}").exists():
        shutil.rmtree(state_dir / f"gen-{previous - 1}")
    return target


def reservoir_path(state_dir: str | os.PathLike) -> Path | None:
    """Returns the committed reservoir's Parquet file, or None when there is none."""
    loaded = load_state(state_dir)
    if loaded is None or loaded["reservoir"] is None:
        return None
    return loaded["path"] / DATA_FILE
