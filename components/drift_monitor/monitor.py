"""The drift monitor: ADWIN on feature window means and model errors, and a biased reservoir.

For a published model version (``<workspace>/models/<name>/<version>/`` with ``model.tflite``,
``preprocessing.json`` and ``dataset_manifest.json``), new observations are read in arrival
order and:

- each feature is standardized with the model's preprocessing statistics, averaged over windows
  of ``window`` observations, and every window mean is fed to that feature's ADWIN detector;
- where a row carries a label, the .tflite model is run on it with LiteRT and the error
  indicator (1 if the prediction is wrong) is fed to an ADWIN detector of its own;
- labelled rows are offered to an exponentially biased reservoir (:mod:`.reservoir`).

The monitor's state lives on the workspace, so successive calls (a recurring run reading each
day's new files) see one continuous stream::

    <workspace>/drift/<name>/reservoir.parquet   recent labelled rows (input of a retraining run)
    <workspace>/drift/<name>/reservoir.json      the reservoir's state
    <workspace>/drift/<name>/detectors.pkl       ADWIN detectors and partial windows, per model
                                                 version (reset when a new version is watched)
    <workspace>/drift/<name>/processed.json      input files already read (path, size, mtime):
                                                 a file is read once, so a recurring run can
                                                 point at a directory where new files land
    <workspace>/drift/<name>/decision.json       the last decision

A drift position is the 0-based index of the observation (in this call's input) that completed
the window, or gave the error, on which ADWIN signalled; ``stream_position`` counts from the
first observation the detectors of this model version saw. A statistic is the mean of the last
16 values a detector saw minus the mean of the old part ADWIN dropped from its window: for a
feature a shift in units of the training standard deviation, for the error an error-rate change.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import pickle
from collections import deque
from pathlib import Path
from typing import IO

import numpy as np

from kfp_edge.drift_monitor.observations import STDIN, input_files, iter_chunks
from kfp_edge.drift_monitor.reservoir import DATA_FILE, BiasedReservoir
from kfp_edge.model_versions import DATASET_MANIFEST_FILE, MODEL_FILE, PREPROCESSING_FILE
from kfp_edge.workspace import write_json_atomic

DRIFT_DIR = "drift"
DETECTORS_FILE = "detectors.pkl"
DECISION_FILE = "decision.json"
PROCESSED_FILE = "processed.json"
DEFAULT_BIAS_RATE = 0.001

STATE_FORMAT = 1
MAX_POSITIONS = 50
RECENT = 16  # values behind a statistic's recent mean
MODEL_BATCH = 256  # rows per LiteRT invocation


def _file_key(path: Path) -> dict:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _already_read(processed: dict, path: Path) -> bool:
    entry = processed.get(str(path.resolve())) or {}
    return {k: entry.get(k) for k in ("size", "mtime_ns")} == _file_key(path)


def drift_dir(workspace: str | os.PathLike, name: str) -> Path:
    """Returns the monitor's directory for a model on the workspace."""
    from kfp_edge.model_versions import validate_name

    return Path(workspace) / DRIFT_DIR / validate_name(name)


def resolve_model(workspace: str | os.PathLike, name: str, version: int | str = "latest") -> Path:
    """Returns the directory of a published model version and checks the files the monitor needs.

    Raises:
        FileNotFoundError: If the model, the version or one of its files is missing.
    """
    from kfp_edge.model_versions import PublishedModels, models_root

    directory = PublishedModels(models_root(workspace)).get(name, version)
    for file in (MODEL_FILE, DATASET_MANIFEST_FILE):
        if not (directory / file).is_file():
            raise FileNotFoundError(f"{directory / file}: the published version has no {file}")
    return directory


class _Detector:
    """One ADWIN detector, the last few values it saw, and where it signalled.

    river's ADWIN drops whole buckets of its oldest values on a change, so the part it keeps
    still holds old values; the statistic therefore compares the mean of the dropped (old) part
    with the mean of the last :data:`RECENT` values.
    """

    def __init__(self, delta: float, clock: int):
        from river.drift import ADWIN

        self.adwin = ADWIN(delta=delta, clock=clock)
        self.recent: deque = deque(maxlen=RECENT)
        self.updates = 0
        self.detections: list[dict] = []

    def update(self, value: float, position: int, stream_position: int) -> dict | None:
        total, width = self.adwin.total, self.adwin.width
        self.adwin.update(value)
        self.recent.append(value)
        self.updates += 1
        if not self.adwin.drift_detected:
            return None
        dropped_n = width + 1 - self.adwin.width
        dropped_mean = (total + value - self.adwin.total) / dropped_n
        recent_mean = sum(self.recent) / len(self.recent)
        event = {
            "position": int(position),
            "stream_position": int(stream_position),
            "statistic": float(recent_mean - dropped_mean),
            "mean_before": float(dropped_mean),
            "mean_recent": float(recent_mean),
            "window_dropped": int(dropped_n),
        }
        self.detections.append(event)
        return event


class DriftMonitor:
    """Streaming drift detection for one model version (see the module docstring).

    Args:
        feature_columns: Feature names, in the model's input order.
        label_column: Name of the label column in the observations.
        classes: Original label values; index = class id of the model's output.
        mean: Per-feature training mean (standardization), or None for 0.
        std: Per-feature training standard deviation, or None for 1.
        model_path: The .tflite file for the error indicator, or None to leave the model out.
        delta: ADWIN's confidence parameter (smaller: fewer false alarms, later detection).
        window: Observations per window mean fed to the feature detectors.
        clock: ADWIN checks for a change every ``clock`` updates.
        reservoir: The biased reservoir that receives labelled rows, or None.
    """

    def __init__(
        self,
        feature_columns: list[str],
        label_column: str,
        classes: list,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        model_path: str | os.PathLike | None = None,
        delta: float = 0.002,
        window: int = 10,
        clock: int = 1,
        reservoir: BiasedReservoir | None = None,
    ):
        if not 0.0 < delta < 1.0:
            raise ValueError(f"delta must be in (0, 1), got {delta!r}")
        if window < 1 or clock < 1:
            raise ValueError(f"window and clock must be at least 1, got {window} and {clock}")
        self.feature_columns = list(feature_columns)
        self.label_column = label_column
        self.classes = list(classes)
        self._class_ids = {str(c): i for i, c in enumerate(self.classes)}
        n = len(self.feature_columns)
        self.mean = np.zeros(n) if mean is None else np.asarray(mean, dtype=np.float64)
        std = np.ones(n) if std is None else np.asarray(std, dtype=np.float64)
        self.std = np.where(std > 0, std, 1.0)
        self.model_path = None if model_path is None else str(model_path)
        self.delta = float(delta)
        self.window = int(window)
        self.clock = int(clock)
        self.features = {c: _Detector(delta, clock) for c in self.feature_columns}
        self.error = _Detector(delta, clock)
        self.reservoir = reservoir
        self.stream_position = 0
        self._partial = np.zeros((0, n))
        self._model = None
        self.labelled = 0
        self.errors = 0
        self.unknown_labels = 0

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_model"] = None  # the LiteRT interpreter is reopened on demand
        state["reservoir"] = None  # saved on its own, as Parquet
        return state

    def _classifier(self):
        if self._model is None:
            from kfp_edge.litert import TFLiteModel

            self._model = TFLiteModel(self.model_path, num_threads=1)
        return self._model

    def _predict(self, x: np.ndarray) -> np.ndarray:
        """Returns the model's class ids for raw features, run with LiteRT (no TensorFlow).

        Rows are padded to whole batches of :data:`MODEL_BATCH`, so the interpreter keeps one
        input shape however many labelled rows a chunk has.
        """
        rows = len(x)
        padded = np.zeros((-(-rows // MODEL_BATCH) * MODEL_BATCH, x.shape[1]), dtype=np.float32)
        padded[:rows] = x
        return self._classifier().predict(padded, batch_size=MODEL_BATCH)[:rows].argmax(axis=1)

    def _features(self, frame, origin: str, first_row: int) -> np.ndarray:
        missing = [c for c in self.feature_columns if c not in frame.columns]
        if missing:
            raise ValueError(
                f"{origin}: missing feature column(s) {missing}; the model expects "
                f"{self.feature_columns}"
            )
        import pandas as pd

        x = np.empty((len(frame), len(self.feature_columns)), dtype=np.float64)
        for k, column in enumerate(self.feature_columns):
            values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
            bad = np.flatnonzero(~np.isfinite(values))
            if len(bad):
                row = first_row + int(bad[0])
                raise ValueError(
                    f"{origin}: row {row}, column {column!r}: not a finite number "
                    f"({frame[column].iloc[int(bad[0])]!r}); {len(bad)} such row(s) in this chunk"
                )
            x[:, k] = values
        return x

    def _labels(self, frame) -> tuple[np.ndarray, list]:
        """Returns (class id or -1 for unknown / -2 for missing, raw label values)."""
        if self.label_column not in frame.columns:
            return np.full(len(frame), -2, dtype=np.int64), [None] * len(frame)
        column = frame[self.label_column]
        missing = column.isna().to_numpy()
        ids = column.astype(str).map(self._class_ids)
        if column.dtype.kind == "f":
            # A CSV column of class names like 0, 1 is read as floats when it has gaps.
            values = column.to_numpy()
            whole = ~missing & np.isfinite(values) & (values == np.round(values))
            as_int = column[whole].astype(np.int64).astype(str).map(self._class_ids)
            ids[whole] = ids[whole].fillna(as_int)
        ids = ids.fillna(-1).to_numpy(dtype=np.int64, copy=True)
        ids[missing] = -2
        raw = column.astype(object).where(~missing, None).tolist()
        return ids, raw

    def process(self, frame, origin: str = "<input>", first_row: int = 1, offset: int = 0) -> None:
        """Feeds one chunk of observations through the detectors and the reservoir.

        Args:
            frame: A pandas DataFrame with the feature columns (and perhaps the label column).
            origin: Where the chunk came from (named in errors).
            first_row: Row number of the chunk's first row in ``origin`` (named in errors).
            offset: Index of the chunk's first row in this call's input (for positions).

        Raises:
            ValueError: Naming the file, row and column of a missing or non-numeric value.
        """
        x = self._features(frame, origin, first_row)
        n = len(x)
        stream_start = self.stream_position
        # Feature detectors: standardized window means, windows spanning chunks.
        z = np.concatenate([self._partial, (x - self.mean) / self.std], axis=0)
        full = len(z) // self.window
        carried = len(self._partial)
        if full:
            means = z[: full * self.window].reshape(full, self.window, -1).mean(axis=1)
            for w in range(full):
                last = (w + 1) * self.window - 1 - carried  # index in this chunk
                for k, column in enumerate(self.feature_columns):
                    self.features[column].update(
                        float(means[w, k]), offset + last, stream_start + last
                    )
        self._partial = z[full * self.window :].copy()
        # Error indicator and reservoir: labelled rows only.
        ids, raw = self._labels(frame)
        labelled = np.flatnonzero(ids != -2)
        if len(labelled):
            self.labelled += len(labelled)
            known = ids[labelled] >= 0
            self.unknown_labels += int((~known).sum())
            wrong = np.ones(len(labelled), dtype=bool)  # an unknown class is always an error
            if self.model_path is not None:
                if known.any():
                    predicted = self._predict(x[labelled[known]])
                    wrong[known] = predicted != ids[labelled[known]]
                self.errors += int(wrong.sum())
                for j, i in enumerate(labelled):
                    self.error.update(float(wrong[j]), offset + int(i), stream_start + int(i))
            if self.reservoir is not None:
                self.reservoir.add_many(x[labelled], [raw[i] for i in labelled])
        self.stream_position += n

    def decision(self, first_detection: dict, first_error_detection: int) -> dict:
        """Returns the JSON-able decision over the detections made since the given counts.

        Args:
            first_detection: Per feature, detections recorded before this call are skipped;
                a dict ``{feature: count}`` (see :meth:`detection_counts`).
            first_error_detection: Error-detector detections recorded before this call.
        """
        features = {}
        for column, detector in self.features.items():
            events = detector.detections[first_detection.get(column, 0) :]
            first = events[0] if events else {}
            features[column] = {
                "detected": bool(events),
                "position": first.get("position"),
                "stream_position": first.get("stream_position"),
                "statistic": first.get("statistic"),
                "detections": len(events),
                "positions": [e["position"] for e in events[:MAX_POSITIONS]],
                "window_means": detector.updates,
            }
        events = self.error.detections[first_error_detection:]
        increases = [e for e in events if e["statistic"] > 0]
        first = increases[0] if increases else {}
        error = {
            "monitored": self.model_path is not None,
            "detected": bool(increases),
            "position": first.get("position"),
            "stream_position": first.get("stream_position"),
            "statistic": first.get("statistic"),
            "detections": len(events),
            "increases": len(increases),
            "positions": [e["position"] for e in events[:MAX_POSITIONS]],
            "labelled_rows": self.labelled,
            "errors": self.errors,
            "error_rate": (self.errors / self.labelled) if self.labelled else None,
            "recent_error_rate": float(self.error.adwin.estimation) if self.error.updates else None,
            "unknown_labels": self.unknown_labels,
        }
        drifted_features = sorted(c for c, f in features.items() if f["detected"])
        return {
            "drifted": bool(drifted_features) or error["detected"],
            "drifted_features": drifted_features,
            "features": features,
            "error": error,
        }

    def detection_counts(self) -> tuple[dict, int]:
        """Returns the detections recorded so far (per feature, and of the error detector)."""
        return (
            {c: len(d.detections) for c, d in self.features.items()},
            len(self.error.detections),
        )


def model_rows(chunks, window: dict | None, label_column: str):
    """Chunks of raw readings of a windowed model as its window rows (``kfp_edge.features``).

    Chunks that already hold the model's columns, and every chunk of an unwindowed model, pass
    unchanged; the row numbers of converted chunks are those of their first reading.
    """
    import pandas as pd

    from kfp_edge.features import WindowSpec, WindowStream

    spec = WindowSpec.from_dict(window) if window else None
    stream, last = None, None
    for origin, first_row, frame in chunks:
        if spec is None or set(spec.output_columns) <= set(frame.columns):
            yield origin, first_row, frame
            continue
        if stream is None:
            stream = WindowStream(spec, label_column if label_column in frame.columns else "")
        rows, last = stream.feed(frame), (origin, first_row)
        if rows:
            yield origin, first_row, pd.DataFrame(rows)
    if stream is not None and (rows := stream.flush()):
        yield *last, pd.DataFrame(rows)


def monitor_drift(
    workspace: str | os.PathLike,
    name: str,
    source: str | os.PathLike,
    version: int | str = "latest",
    *,
    delta: float = 0.002,
    window: int = 10,
    clock: int = 1,
    bias_rate: float | None = None,
    capacity: int | None = None,
    label_column: str | None = None,
    model_in_loop: bool = True,
    reference: str | os.PathLike | None = None,
    seed: int = 0,
    save_state: bool = True,
    chunk_rows: int = 4096,
    stdin: IO[str] | None = None,
) -> dict:
    """Watches new observations for drift against a published model version.

    Args:
        workspace: Root of the workspace volume (holds ``models/`` and ``drift/``).
        name: Model name in the model store.
        source: A CSV or Parquet file, a directory of them (taken in name order), or ``-``
            for CSV lines with a header on standard input.
        version: Model version to watch, or ``latest``.
        delta: ADWIN's confidence parameter.
        window: Observations per window mean of the feature detectors.
        clock: ADWIN checks for a change every ``clock`` updates.
        bias_rate: Bias rate (lambda) of the reservoir, whose capacity is at most 1/lambda;
            None (or 0) keeps a saved reservoir's rate, or takes :data:`DEFAULT_BIAS_RATE` for
            a new one.
        capacity: Rows the reservoir holds (default 1/lambda); fixed once the reservoir exists.
        label_column: Label column of the observations (default: the model's).
        model_in_loop: Run the model on labelled rows for the error indicator.
        reference: Optional CSV or Parquet of data like the model's training data, fed through
            the feature detectors first (not counted, not sampled) when they start fresh, so
            that a first batch that is already shifted is detected too.
        seed: Seed of a new reservoir's random generator.
        save_state: Save detectors, reservoir and decision on the workspace.
        chunk_rows: Rows read at a time.
        stdin: Stream read when ``source`` is ``-`` (default ``sys.stdin``).

    Returns:
        The decision: ``drifted``, ``drifted_features``, ``features`` (per feature
        ``detected``, ``position``, ``stream_position``, ``statistic``, ``detections``,
        ``positions``), ``error`` (the same for the error indicator, plus error rates),
        ``observations``, ``reservoir`` (summary and path), ``model`` and ``parameters``.

    Raises:
        FileNotFoundError: If the model version or the input is missing.
        ValueError: On bad input, naming the file, row and column; nothing saved is changed.
    """
    model_dir = resolve_model(workspace, name, version)
    model_version = int(model_dir.name)
    dataset = json.loads((model_dir / DATASET_MANIFEST_FILE).read_text())
    feature_columns = list(dataset["feature_columns"])
    label_column = label_column or dataset.get("label_column") or "label"
    preprocessing = {}
    if (model_dir / PREPROCESSING_FILE).is_file():
        preprocessing = json.loads((model_dir / PREPROCESSING_FILE).read_text())
    state_dir = drift_dir(workspace, name)
    detectors_path = state_dir / DETECTORS_FILE

    monitor = None
    if detectors_path.is_file():
        with open(detectors_path, "rb") as f:
            saved = pickle.load(f)
        same = (
            saved.get("format") == STATE_FORMAT
            and saved.get("model_version") == model_version
            and saved.get("parameters") == {"delta": delta, "window": window, "clock": clock}
            and saved["monitor"].feature_columns == feature_columns
            and saved["monitor"].label_column == label_column
        )
        if same:
            monitor = saved["monitor"]
            monitor.model_path = str(model_dir / MODEL_FILE) if model_in_loop else None
    fresh = monitor is None
    if fresh:
        monitor = DriftMonitor(
            feature_columns,
            label_column,
            dataset.get("classes", []),
            preprocessing.get("mean"),
            preprocessing.get("std"),
            model_path=model_dir / MODEL_FILE if model_in_loop else None,
            delta=delta,
            window=window,
            clock=clock,
        )
    if (state_dir / DATA_FILE).is_file():
        reservoir = BiasedReservoir.load(state_dir)
        if reservoir.feature_columns != feature_columns or reservoir.label_column != label_column:
            raise ValueError(
                f"{state_dir / DATA_FILE}: the saved reservoir holds columns "
                f"{reservoir.feature_columns} + {reservoir.label_column!r}, but model {name!r} "
                f"version {model_version} uses {feature_columns} + {label_column!r}; move the "
                "old reservoir away to start a new one"
            )
        if bias_rate and reservoir.bias_rate != float(bias_rate):
            raise ValueError(
                f"{state_dir / DATA_FILE}: the saved reservoir has bias rate "
                f"{reservoir.bias_rate}, not {bias_rate}; a reservoir keeps its bias rate"
            )
    else:
        reservoir = BiasedReservoir(
            feature_columns, label_column, bias_rate or DEFAULT_BIAS_RATE, capacity, seed
        )
    monitor.reservoir = reservoir

    if fresh and reference is not None:
        # Prime the feature detectors on reference data; positions and counts start after it.
        reservoir_saved, monitor.reservoir = monitor.reservoir, None
        model_saved, monitor.model_path = monitor.model_path, None
        chunks = iter_chunks(reference, chunk_rows)
        for origin, first_row, frame in model_rows(chunks, dataset.get("window"), label_column):
            frame = frame.drop(columns=[label_column], errors="ignore")
            monitor.process(frame, origin, first_row)
        monitor.reservoir, monitor.model_path = reservoir_saved, model_saved
        monitor._partial = monitor._partial[:0]
        monitor.stream_position = 0
        for detector in monitor.features.values():
            detector.detections.clear()

    processed_path = state_dir / PROCESSED_FILE
    processed = json.loads(processed_path.read_text()) if processed_path.is_file() else {}
    if str(source) == STDIN:
        sources, skipped = [STDIN], []
    else:
        files = input_files(source)
        sources = [f for f in files if not _already_read(processed, f)]
        skipped = [str(f) for f in files if f not in sources]

    counts, error_count = monitor.detection_counts()
    observations = 0
    for item in sources:
        rows_before = observations
        chunks = iter_chunks(item, chunk_rows, stdin=stdin)
        for origin, first_row, frame in model_rows(chunks, dataset.get("window"), label_column):
            monitor.process(frame, origin, first_row, offset=observations)
            observations += len(frame)
        if item != STDIN:
            processed[str(item.resolve())] = {
                **_file_key(item),
                "rows": observations - rows_before,
                "model_version": model_version,
            }

    decision = monitor.decision(counts, error_count)
    decision.update(
        {
            "observations": observations,
            "stream_observations": monitor.stream_position,
            "inputs": {
                "read": [str(x) for x in sources],
                "skipped_already_processed": skipped,
            },
            "model": {"name": name, "version": model_version, "path": str(model_dir)},
            "parameters": {
                "delta": delta,
                "window": window,
                "clock": clock,
                "bias_rate": reservoir.bias_rate,
                "model_in_loop": bool(model_in_loop),
                "reference": None if reference is None else str(reference),
            },
            "reservoir": {
                **reservoir.summary(),
                "path": str(state_dir / DATA_FILE) if save_state else None,
                "label_column": label_column,
            },
            "checked_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
    )
    if save_state:
        state_dir.mkdir(parents=True, exist_ok=True)
        reservoir.save(state_dir)
        tmp = state_dir / f".{DETECTORS_FILE}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            pickle.dump(
                {
                    "format": STATE_FORMAT,
                    "model_version": model_version,
                    "parameters": {"delta": delta, "window": window, "clock": clock},
                    "monitor": monitor,
                },
                f,
            )
        os.replace(tmp, detectors_path)
        write_json_atomic(processed_path, processed)
        write_json_atomic(state_dir / DECISION_FILE, decision)
    return decision


def run_drift_check(
    workspace: str | os.PathLike, run_id: str, name: str, source, **options
) -> dict:
    """Runs :func:`monitor_drift` as a pipeline step of run ``run_id`` and records it.

    Writes the ``drift`` section of the run's report and ``drift_decision.json`` in the run
    directory.

    Args:
        workspace: Root of the workspace volume.
        run_id: The run id (its directory is created if needed).
        name: Model name in the model store.
        source: The new observations (see :func:`monitor_drift`).
        **options: Other :func:`monitor_drift` arguments.

    Returns:
        The decision.

    Raises:
        FileExistsError: If the run already holds a drift check (it is never overwritten).
    """
    from kfp_edge.workspace import read_report, run_dir, update_report

    directory = run_dir(workspace, run_id)
    if "drift" in read_report(directory):
        raise FileExistsError(
            f"{directory / 'report.json'}: run {run_id!r} already holds a drift check; "
            "choose another run id"
        )
    decision = monitor_drift(workspace, name, source, **options)
    directory.mkdir(parents=True, exist_ok=True)
    write_json_atomic(directory / "drift_decision.json", decision)
    update_report(directory, "drift", decision)
    return decision


def decision_metrics(decision: dict) -> dict[str, float]:
    """Returns the flat figures of a decision logged as kfp Metrics.

    ``drifted``, ``observations``, per feature ``<name>.detected`` (0/1) and, when detected,
    ``<name>.position`` and ``<name>.statistic``; ``error.*`` when the model is in the loop;
    ``reservoir.size``.
    """
    metrics: dict[str, float] = {
        "drifted": int(decision["drifted"]),
        "observations": decision["observations"],
    }
    for feature, figures in decision["features"].items():
        metrics[f"{feature}.detected"] = int(figures["detected"])
        if figures["detected"]:
            metrics[f"{feature}.position"] = figures["position"]
            metrics[f"{feature}.statistic"] = round(figures["statistic"], 6)
    error = decision["error"]
    if error["monitored"]:
        metrics["error.detected"] = int(error["detected"])
        if error["error_rate"] is not None:
            metrics["error.rate"] = round(error["error_rate"], 6)
        if error["detected"]:
            metrics["error.position"] = error["position"]
            metrics["error.statistic"] = round(error["statistic"], 6)
    metrics["reservoir.size"] = decision["reservoir"]["size"]
    return metrics
