"""The streaming core of the drift monitor: windows, detectors, model signals and late labels.

Per window of ``window`` observations every feature, standardized with the model's training
statistics, gives two values to ADWIN detectors of their own: the window mean (``<f>.mean``,
location) and the window standard deviation (``<f>.std``, spread). With the model in the loop
every row is run through the LiteRT model, and per window the share of each predicted class
(``prediction.<class>``, label-free) and the mean top-class probability (``confidence``: the
accuracy estimated from confidence, CBPE-style) feed detectors too. Labelled rows give the
error indicator (1 if the prediction is wrong) to the ``error`` detector, row by row, and go to
the biased reservoir.

Multiple testing: the family of detectors shares the confidence ``delta``; each detector gets
``delta / number of detectors`` (Bonferroni), so more features do not mean more false alarms.

Late labels: with an id column, unlabelled rows wait (bounded, oldest dropped) in a pending
buffer with their features and prediction; a later chunk of only ids and labels (no feature
columns) is joined to them by id and feeds the error detector and the reservoir.
"""

from __future__ import annotations

import os

import numpy as np

from kfp_edge.drift_monitor.detectors import Detector
from kfp_edge.drift_monitor.reservoir import BiasedReservoir

MODEL_BATCH = 256  # rows per LiteRT invocation
REFERENCE_ROWS = 1000  # rows of the reference and the recent sample (distribution tests)
PENDING_ROWS = 10_000  # unlabelled rows with an id kept for late labels
FEW_COLUMNS = 16  # up to this many feature columns are read one by one


class DriftMonitor:
    """Streaming drift detection for one model version (see the module docstring).

    Args:
        feature_columns: Feature names, in the model's input order.
        label_column: Name of the label column in the observations.
        classes: Original label values; index = class id of the model's output.
        mean: Per-feature training mean (standardization), or None for 0.
        std: Per-feature training standard deviation, or None for 1.
        model_path: The .tflite file, or None to leave the model out.
        delta: Family-wise ADWIN confidence, shared by all detectors.
        window: Observations per window of the windowed detectors.
        clock: ADWIN checks for a change every ``clock`` updates.
        id_column: Column that identifies a row, for late labels; None for none.
        reservoir: The biased reservoir that receives labelled rows, or None.
    """

    def __init__(
        self,
        feature_columns: list[str],
        label_column: str,
        classes: list,
        mean=None,
        std=None,
        model_path: str | os.PathLike | None = None,
        delta: float = 0.002,
        window: int = 200,
        clock: int = 1,
        id_column: str | None = None,
        reservoir: BiasedReservoir | None = None,
    ):
        if not 0.0 < delta < 1.0:
            raise ValueError(f"delta must be in (0, 1), got {delta!r}")
        if window < 2 or clock < 1:
            raise ValueError(f"window must be at least 2 and clock 1, got {window} and {clock}")
        self.feature_columns = list(feature_columns)
        self.label_column = label_column
        self.classes = [str(c) for c in classes]
        self._class_ids = {c: i for i, c in enumerate(self.classes)}
        n = len(self.feature_columns)
        self.mean = np.zeros(n) if mean is None else np.asarray(mean, dtype=np.float64)
        std = np.ones(n) if std is None else np.asarray(std, dtype=np.float64)
        self.std = np.where(std > 0, std, 1.0)
        self.model_path = None if model_path is None else str(model_path)
        self.delta, self.window, self.clock = float(delta), int(window), int(clock)
        self.id_column = id_column or None
        self.reservoir = reservoir
        self.detectors = {name: Detector(self.detector_delta, clock) for name in self.names()}
        self.detections: list[dict] = []
        self.stream_position = 0
        self.counts = {"labelled": 0, "errors": 0, "unknown_labels": 0, "late_labels": 0}
        self.counts["unmatched_labels"] = 0
        width = n + (len(self.classes) if self.model_path else 0)
        self.partial = np.zeros((0, width))  # standardized features (+ class probabilities)
        self.reference = np.zeros((0, width))
        self.recent = np.zeros((0, width))
        self.pending_ids = np.zeros(0, dtype=str)
        self.pending_x = np.zeros((0, n))
        self._model = None

    def names(self) -> list[str]:
        """Returns the detectors' names in update order."""
        names = [f"{c}.{kind}" for c in self.feature_columns for kind in ("mean", "std")]
        if self.model_path is not None:
            names += [f"prediction.{c}" for c in self.classes] + ["confidence", "error"]
        return names

    @property
    def detector_delta(self) -> float:
        """ADWIN delta of one detector: the family's delta split evenly (Bonferroni)."""
        return self.delta / len(self.names())

    def _proba(self, x: np.ndarray) -> np.ndarray:
        """Returns the model's class probabilities for raw features, run with LiteRT.

        Rows are padded to whole batches of :data:`MODEL_BATCH`, so the interpreter keeps one
        input shape however many rows a chunk has.
        """
        if self._model is None:
            from kfp_edge.litert import TFLiteModel

            self._model = TFLiteModel(self.model_path, num_threads=1)
        rows = len(x)
        padded = np.zeros((-(-rows // MODEL_BATCH) * MODEL_BATCH, x.shape[1]), dtype=np.float32)
        padded[:rows] = x
        return self._model.predict(padded, batch_size=MODEL_BATCH)[:rows].astype(np.float64)

    def _numeric(self, frame) -> np.ndarray | None:
        """Returns the features of an all-numeric chunk as floats, or None (slow path).

        A few columns are copied one by one (selecting a sub-frame costs more than the copy);
        many are selected once, which pandas does in one block copy.
        """
        if len(self.feature_columns) > FEW_COLUMNS:
            columns = frame[self.feature_columns]
            if all(dtype.kind in "fiub" for dtype in columns.dtypes):
                return columns.to_numpy(dtype=np.float64)
            return None
        x = np.empty((len(frame), len(self.feature_columns)), dtype=np.float64)
        for k, name in enumerate(self.feature_columns):
            column = frame[name]
            if column.dtype.kind not in "fiub":
                return None
            x[:, k] = column.to_numpy()
        return x

    def _features(self, frame, origin: str, first_row: int) -> np.ndarray:
        missing = [c for c in self.feature_columns if c not in frame.columns]
        if missing:
            raise ValueError(
                f"{origin}: missing feature column(s) {missing}; the model expects "
                f"{self.feature_columns}"
            )
        x = self._numeric(frame)
        if x is not None and np.isfinite(x).all():
            return x
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

    def _labels(self, frame) -> tuple[np.ndarray, np.ndarray]:
        """Returns (class id or -1 for unknown / -2 for missing, raw label values or None)."""
        none = np.full(len(frame), None, dtype=object)
        if self.label_column not in frame.columns:
            return np.full(len(frame), -2, dtype=np.int64), none
        import pandas as pd

        column = frame[self.label_column]
        if isinstance(column.dtype, pd.StringDtype) or (
            column.dtype.kind == "O" and pd.api.types.infer_dtype(column, skipna=True) == "string"
        ):
            # Class names as strings: hash the distinct values once, look up the few of them;
            # a known label is its class name, so only unknown ones are copied out.
            codes, uniques = column.array.factorize()  # code -1: missing
            lookup = [self._class_ids.get(u, -1) for u in uniques] + [-2]
            ids = np.asarray(lookup, dtype=np.int64)[codes]
            raw = np.asarray(self.classes + [None], dtype=object)[np.where(ids >= 0, ids, -1)]
            unknown = np.flatnonzero(ids == -1)
            if len(unknown):
                raw[unknown] = column.iloc[unknown].to_numpy(dtype=object)
            return ids, raw
        missing = column.isna().to_numpy()
        if missing.all():
            return np.full(len(frame), -2, dtype=np.int64), none
        raw = column.to_numpy(dtype=object)
        raw[missing] = None
        ids = column.astype(str).map(self._class_ids)
        if column.dtype.kind == "f":
            # A CSV column of class names like 0, 1 is read as floats when it has gaps.
            values = column.to_numpy()
            whole = ~missing & np.isfinite(values) & (values == np.round(values))
            as_int = column[whole].astype(np.int64).astype(str).map(self._class_ids)
            ids[whole] = ids[whole].fillna(as_int)
        ids = ids.fillna(-1).to_numpy(dtype=np.int64, copy=True)
        ids[missing] = -2
        return ids, raw

    def _record(self, name: str, event: dict | None, position: int, stream_position: int):
        if event is not None:
            event.update(detector=name, position=position, stream_position=stream_position)
            self.detections.append(event)

    def _signals(self, blocks: np.ndarray) -> np.ndarray:
        """Returns the windowed detectors' values ``[window, detector]`` (:meth:`names` order).

        ``blocks`` is ``[window, row, feature (+ class probability)]``.
        """
        # [window, column, row]: numpy reduces contiguous rows many times faster
        rows = np.ascontiguousarray(blocks.transpose(0, 2, 1))
        n = len(self.feature_columns)
        features = rows[:, :n]
        signals = np.stack([features.mean(axis=2), features.std(axis=2)], axis=2)
        columns = [signals.reshape(len(rows), -1)]  # f.mean, f.std, ...
        if self.model_path is not None:
            proba = rows[:, n:]
            top = proba.argmax(axis=1)
            columns += [(top == c).mean(axis=1, keepdims=True) for c in range(proba.shape[1])]
            columns.append(proba.max(axis=1).mean(axis=1, keepdims=True))
        return np.concatenate(columns, axis=1)

    def _windows(self, values: np.ndarray, offset: int) -> None:
        """Feeds the windowed detectors with whole windows of ``values`` (partial one kept)."""
        z = np.concatenate([self.partial, values], axis=0)
        carried, full = len(self.partial), len(z) // self.window
        if full:
            signals = self._signals(z[: full * self.window].reshape(full, self.window, -1))
            found = []  # (window, detector index, name, event): each detector's whole run
            for j, name in enumerate(self.names()[: signals.shape[1]]):
                events = self.detectors[name].update_many(signals[:, j].tolist())
                found += [(w, j, name, event) for w, event in events]
            for w, _, name, event in sorted(found, key=lambda f: f[:2]):  # the stream's order
                last = (w + 1) * self.window - 1 - carried
                self._record(name, event, offset + last, self.stream_position + last)
        self.partial = z[full * self.window :].copy()

    def _samples(self, values: np.ndarray) -> None:
        """Keeps the first rows as the reference sample and the last ones as the recent one."""
        if len(self.reference) < REFERENCE_ROWS:
            self.reference = np.concatenate([self.reference, values])[:REFERENCE_ROWS]
        self.recent = np.concatenate([self.recent, values[-REFERENCE_ROWS:]])[-REFERENCE_ROWS:]

    def _errors(self, x, predicted, ids, raw, positions, stream_positions) -> None:
        """Feeds the error detector and the reservoir with labelled rows.

        ``positions`` and ``stream_positions`` are arrays (or a scalar for the latter) of
        where each row sits in this call's input and in the stream.
        """
        known = ids >= 0
        self.counts["labelled"] += len(ids)
        self.counts["unknown_labels"] += int((~known).sum())
        if predicted is not None:
            wrong = ~known | (predicted != ids)  # an unknown class is always an error
            self.counts["errors"] += int(wrong.sum())
            stream_positions = np.broadcast_to(stream_positions, len(wrong))
            for k, event in self.detectors["error"].update_many(wrong.astype(float).tolist()):
                self._record("error", event, int(positions[k]), int(stream_positions[k]))
        if self.reservoir is not None:
            self.reservoir.add_many(x, raw)

    def process(self, frame, origin: str = "<input>", first_row: int = 1, offset: int = 0) -> None:
        """Feeds one chunk of observations (or of late labels) through the monitor.

        Args:
            frame: A pandas DataFrame with the feature columns (perhaps the label and id
                columns), or, for late labels, with only the id and label columns.
            origin: Where the chunk came from (named in errors).
            first_row: Row number of the chunk's first row in ``origin`` (named in errors).
            offset: Index of the chunk's first row in this call's input (for positions).

        Raises:
            ValueError: Naming the file, row and column of a missing or non-numeric value.
        """
        if self._is_label_chunk(frame):
            self._join_labels(frame, offset)
            return
        x = self._features(frame, origin, first_row)
        if not len(x):
            return
        values = x - self.mean
        values /= self.std
        proba = None
        if self.model_path is not None:
            proba = self._proba(x)
            values = np.concatenate([values, proba], axis=1)
        self._windows(values, offset)
        self._samples(values)
        ids, raw = self._labels(frame)
        labelled = np.flatnonzero(ids != -2)
        if len(labelled):
            rows = slice(None) if len(labelled) == len(x) else labelled  # all: no copies
            predicted = None if proba is None else proba[rows].argmax(axis=1)
            self._errors(
                x[rows],
                predicted,
                ids[rows],
                raw[rows],
                offset + labelled,
                self.stream_position + labelled,
            )
        if self.id_column is not None and self.id_column in frame.columns:
            waiting = np.flatnonzero(ids == -2)
            self.pending_ids = np.concatenate(
                [self.pending_ids, frame[self.id_column].iloc[waiting].astype(str).to_numpy(str)]
            )[-PENDING_ROWS:]
            self.pending_x = np.concatenate([self.pending_x, x[waiting]])[-PENDING_ROWS:]
        self.stream_position += len(x)

    def _is_label_chunk(self, frame) -> bool:
        columns = set(frame.columns)
        return (
            self.id_column is not None
            and {self.id_column, self.label_column} <= columns
            and not columns & set(self.feature_columns)
        )

    def _join_labels(self, frame, offset: int) -> None:
        """Joins late labels to pending rows by id; matched rows leave the pending buffer."""
        index = {v: i for i, v in enumerate(self.pending_ids.tolist())}
        found = [index.get(str(v), -1) for v in frame[self.id_column].tolist()]
        rows = np.asarray(found, dtype=np.int64)
        matched = np.flatnonzero(rows >= 0)
        self.counts["unmatched_labels"] += int(len(rows) - len(matched))
        self.counts["late_labels"] += int(len(matched))
        if len(matched):
            ids, raw = self._labels(frame.iloc[matched])
            x = self.pending_x[rows[matched]]
            predicted = None
            if self.model_path is not None:
                predicted = self._proba(x).argmax(axis=1)
            self._errors(x, predicted, ids, raw, offset + matched, self.stream_position)
            keep = np.ones(len(self.pending_ids), dtype=bool)
            keep[rows[matched]] = False
            self.pending_ids, self.pending_x = self.pending_ids[keep], self.pending_x[keep]
