"""Window features: one definition from the Spark ETL to the device, with numpy only.

A windowed model does not read raw readings: it reads aggregates of one device's readings over a
time window (``temp_mean``, ``temp_std``, ..., ``count``). The ETL computes them in Spark; a device,
the pull client and the drift monitor see raw readings. This module is the definition both sides
share, so that what the model sees on the device is what it was trained on:

- a reading at time ``t`` (seconds since the epoch, UTC; ISO-8601 text without an offset is UTC)
  belongs to every window ``k`` (an integer) with ``k * hop <= t < k * hop + window``; with
  ``hop == window`` (tumbling, the default) that is exactly one window, ``floor(t / window)``;
- per device and window: ``mean`` (the average), ``std`` (the population standard deviation),
  ``min``, ``max`` of each feature, in the order feature by feature, statistic by statistic, and
  ``count`` (readings in the window, as a float) last;
- the window's label is its most frequent label, the smallest one on a tie.

The ETL writes this definition (:meth:`WindowSpec.to_dict`) into the dataset manifest under
``window``; the model store publishes that manifest with every model version, so a device gets
the definition together with the model. Why a module and not the aggregation inside the model's
graph: the windows are defined by time, not by a count of readings, so a fixed-length raw input
would not reproduce the training windows when a device skips or bunches readings; and the same
code must serve the drift monitor, which has no model graph to run.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

WINDOW_STATS = ("mean", "std", "min", "max", "count")
COUNT_COLUMN = "count"
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


@dataclass(frozen=True)
class WindowSpec:
    """How raw readings become one model input row.

    Attributes:
        feature_columns: The raw channels aggregated, in order.
        window_seconds: Window length in seconds (> 0).
        hop_seconds: Distance between window starts; equal to ``window_seconds`` for tumbling
            windows (0 is read as that), smaller for sliding ones.
        stats: Statistics among :data:`WINDOW_STATS`, in output order (``count`` always last).
        time_column: The readings' time column.
        device_column: The device (series) column; empty: all readings are one device.
    """

    feature_columns: tuple[str, ...]
    window_seconds: float
    hop_seconds: float = 0.0
    stats: tuple[str, ...] = WINDOW_STATS
    time_column: str = "timestamp"
    device_column: str = ""

    def __post_init__(self):
        if not self.window_seconds > 0 or not math.isfinite(self.window_seconds):
            raise ValueError(f"window_seconds must be a positive number, got {self.window_seconds}")
        hop = self.hop_seconds or self.window_seconds
        if not 0 < hop <= self.window_seconds:
            raise ValueError(
                f"hop_seconds must be in (0, window_seconds={self.window_seconds}], "
                f"got {self.hop_seconds}"
            )
        unknown = [s for s in self.stats if s not in WINDOW_STATS]
        if unknown or not self.stats:
            raise ValueError(f"unknown window statistics {unknown}; choose from {WINDOW_STATS}")
        object.__setattr__(self, "feature_columns", tuple(self.feature_columns))
        object.__setattr__(self, "stats", tuple(self.stats))
        object.__setattr__(self, "hop_seconds", float(hop))
        object.__setattr__(self, "window_seconds", float(self.window_seconds))

    @property
    def hop(self) -> float:
        """The effective hop (``window_seconds`` for tumbling windows)."""
        return self.hop_seconds

    @property
    def output_columns(self) -> list[str]:
        """The model's input columns, in order."""
        names = [f"{c}_{s}" for c in self.feature_columns for s in self.stats if s != "count"]
        return names + ([COUNT_COLUMN] if "count" in self.stats else [])

    def to_dict(self) -> dict:
        """The JSON form written to the dataset manifest (what :meth:`from_dict` reads)."""
        return {
            "feature_columns": list(self.feature_columns),
            "window_seconds": float(self.window_seconds),
            "hop_seconds": self.hop,
            "stats": list(self.stats),
            "time_column": self.time_column,
            "device_column": self.device_column,
            "output_columns": self.output_columns,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> WindowSpec:
        """Reads the form :meth:`to_dict` writes.

        Raises:
            ValueError: If a key is missing or a value is out of range.
        """
        try:
            return cls(
                feature_columns=tuple(data["feature_columns"]),
                window_seconds=float(data["window_seconds"]),
                hop_seconds=float(data.get("hop_seconds") or 0.0),
                stats=tuple(data.get("stats") or WINDOW_STATS),
                time_column=str(data.get("time_column") or "timestamp"),
                device_column=str(data.get("device_column") or ""),
            )
        except KeyError as exc:
            raise ValueError(f"window definition lacks {exc.args[0]!r}") from None


def to_epoch_seconds(values: Sequence) -> np.ndarray:
    """Reading times as float seconds since the epoch, the way the ETL computes them.

    Numbers are taken as epoch seconds; ``datetime`` objects and ISO-8601 text as instants,
    UTC when they carry no offset. The value is whole microseconds divided by 1e6, as Spark's
    ``unix_micros(t) / 1e6``.

    Raises:
        ValueError: Naming the first value that is not a time.
    """
    array = np.asarray(values)
    if array.dtype.kind in "iuf":
        return array.astype(np.float64)
    if array.dtype.kind == "M":
        micros = array.astype("datetime64[us]").astype(np.int64)
        return micros / 1e6
    out = np.empty(len(array), dtype=np.float64)
    for i, value in enumerate(array):
        stamp = value
        if not isinstance(stamp, _dt.datetime):
            try:
                stamp = _dt.datetime.fromisoformat(str(value).strip())
            except ValueError:
                raise ValueError(f"row {i}: {value!r} is not an ISO-8601 time") from None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=_dt.timezone.utc)
        delta = stamp - _EPOCH
        micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        out[i] = micros / 1e6
    return out


def _window_ids(seconds: np.ndarray, spec: WindowSpec) -> tuple[np.ndarray, np.ndarray]:
    """(reading index, window id) pairs: each reading once per window it belongs to."""
    last = np.floor(seconds / spec.hop).astype(np.int64)
    first = np.floor((seconds - spec.window_seconds) / spec.hop).astype(np.int64) + 1
    spans = last - first + 1
    reading = np.repeat(np.arange(len(seconds)), spans)
    offsets = np.arange(len(reading)) - np.repeat(np.cumsum(spans) - spans, spans)
    return reading, np.repeat(first, spans) + offsets


def _aggregate(values: np.ndarray, stats: tuple[str, ...]) -> list[float]:
    """The statistics of one window: ``values`` is ``[readings, channels]``."""
    row = []
    for j in range(values.shape[1]):
        column = values[:, j]
        for s in stats:
            if s == "mean":
                row.append(float(np.mean(column)))
            elif s == "std":
                row.append(float(np.std(column)))
            elif s == "min":
                row.append(float(np.min(column)))
            elif s == "max":
                row.append(float(np.max(column)))
    if "count" in stats:
        row.append(float(values.shape[0]))
    return row


def features_of_window(values, spec: WindowSpec) -> np.ndarray:
    """The model input of one window of one device's raw readings.

    Args:
        values: ``[readings, len(spec.feature_columns)]`` raw values of the window.
        spec: The window definition.

    Returns:
        float64 array of length ``len(spec.output_columns)``.

    Raises:
        ValueError: If the window is empty or the shape is wrong.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != len(spec.feature_columns) or not len(values):
        raise ValueError(
            f"a window needs [readings >= 1, {len(spec.feature_columns)}] values, "
            f"got shape {values.shape}"
        )
    return np.asarray(_aggregate(values, spec.stats), dtype=np.float64)


def window_features(readings: Mapping, spec: WindowSpec, label_column: str = "") -> dict:
    """Turns raw readings into the model's input rows, exactly as the ETL's windows.

    Args:
        readings: Column name -> sequence of values (a dict of lists, of numpy arrays, or a
            pandas DataFrame); needs the time column, the feature columns and, when the spec
            names one, the device column.
        spec: The window definition (from the dataset manifest's ``window``).
        label_column: Optional label column: each window gets its most frequent label.

    Returns:
        ``{"device": [...], "window_start": float seconds [...], "x": float64 array
        [windows, len(spec.output_columns)], "columns": spec.output_columns}`` plus ``"label"``
        when ``label_column`` is given; windows sorted by device, then start.

    Raises:
        ValueError: Naming a missing column or a reading that is not a finite number or time.
    """
    needed = [spec.time_column, *spec.feature_columns]
    needed += [spec.device_column] if spec.device_column else []
    needed += [label_column] if label_column else []
    missing = [c for c in needed if c not in readings]
    if missing:
        raise ValueError(f"readings lack column(s) {missing}; the window definition needs {needed}")
    seconds = to_epoch_seconds(readings[spec.time_column])
    values = np.stack(
        [np.asarray(readings[c], dtype=np.float64) for c in spec.feature_columns], axis=1
    )
    bad = np.argwhere(~np.isfinite(values))
    if len(bad):
        i, j = (int(v) for v in bad[0])
        raise ValueError(f"row {i}, column {spec.feature_columns[j]!r}: not a finite number")
    n = len(seconds)
    devices = (
        np.asarray([str(d) for d in readings[spec.device_column]], dtype=object)
        if spec.device_column
        else np.full(n, "", dtype=object)
    )
    reading, window = _window_ids(seconds, spec)
    keys = sorted(set(zip(devices[reading].tolist(), window.tolist(), strict=True)))
    groups: dict[tuple, list[int]] = {k: [] for k in keys}
    for r, w in zip(reading.tolist(), window.tolist(), strict=True):
        groups[(devices[r], w)].append(r)
    width = len(spec.output_columns)
    x = np.empty((len(keys), width), dtype=np.float64)
    for i, key in enumerate(keys):
        x[i] = _aggregate(values[groups[key]], spec.stats)
    result = {
        "device": [k[0] for k in keys],
        "window_start": [k[1] * spec.hop for k in keys],
        "x": x,
        "columns": spec.output_columns,
    }
    if label_column:
        labels = np.asarray([str(v).strip() for v in readings[label_column]], dtype=object)
        result["label"] = [_mode(labels[groups[k]]) for k in keys]
    return result


def _mode(labels: np.ndarray) -> str:
    """The most frequent value, the smallest on a tie (Spark's deterministic ``mode``)."""
    values, counts = np.unique(labels.astype(str), return_counts=True)
    return str(values[np.flatnonzero(counts == counts.max())[0]])


class WindowStream:
    """Window rows from raw readings arriving in chunks (each device's readings in time order).

    A window is emitted once a later reading of its device shows it is over (a reading at or
    after its end), or at :meth:`flush`; readings still needed by open windows are kept.

    Args:
        spec: The window definition.
        label_column: Optional label column (each window gets its most frequent label).
    """

    def __init__(self, spec: WindowSpec, label_column: str = ""):
        self.spec, self.label_column = spec, label_column
        self._columns = [spec.time_column, *spec.feature_columns]
        self._columns += [spec.device_column] if spec.device_column else []
        self._columns += [label_column] if label_column else []
        self._buffer: dict[str, list] = {c: [] for c in self._columns}
        self._emitted: dict[str, float] = {}  # device -> last emitted window start

    def feed(self, readings: Mapping) -> list[dict]:
        """Adds readings; returns the rows of the windows they close (column -> value)."""
        for c in self._columns:
            if c not in readings:
                raise ValueError(f"readings lack column {c!r}; the window definition needs it")
            self._buffer[c].extend(list(readings[c]))
        return self._drain(final=False)

    def flush(self) -> list[dict]:
        """Returns the rows of all windows still open."""
        return self._drain(final=True)

    def _drain(self, final: bool) -> list[dict]:
        if not self._buffer[self.spec.time_column]:
            return []
        result = window_features(self._buffer, self.spec, self.label_column)
        seconds = to_epoch_seconds(self._buffer[self.spec.time_column])
        devices = self._devices()
        latest = {}
        for d, t in zip(devices, seconds.tolist(), strict=True):
            latest[d] = max(t, latest.get(d, t))
        rows, open_start = [], {}
        for i, (d, start) in enumerate(zip(result["device"], result["window_start"], strict=True)):
            if start <= self._emitted.get(d, -math.inf):
                continue
            if final or start + self.spec.window_seconds <= latest[d]:
                rows.append(self._row(result, i))
                self._emitted[d] = start
            else:
                open_start[d] = min(start, open_start.get(d, math.inf))
        keep = [
            i
            for i, (d, t) in enumerate(zip(devices, seconds.tolist(), strict=True))
            if not final and t >= open_start.get(d, math.inf)
        ]
        self._buffer = {c: [v[i] for i in keep] for c, v in self._buffer.items()}
        return rows

    def _devices(self) -> list[str]:
        if self.spec.device_column:
            return [str(d) for d in self._buffer[self.spec.device_column]]
        return [""] * len(self._buffer[self.spec.time_column])

    def _row(self, result: dict, i: int) -> dict:
        row = dict(zip(result["columns"], result["x"][i].tolist(), strict=True))
        if self.spec.device_column:
            row[self.spec.device_column] = result["device"][i]
        row["window_start"] = result["window_start"][i]
        if self.label_column:
            row[self.label_column] = result["label"][i]
        return row
