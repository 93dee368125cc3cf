"""Deterministic synthetic industrial sensor data: devices, channels, faults, drift, bad rows.

Each device reports every ``interval_s`` seconds six channels (``temp``, ``vib``, ``pressure``,
``current``, ``rpm``, ``humidity``). Its state runs through episodes of 60-300 readings, each
``normal`` or one fault class, which shifts some channels:

- ``bearing_wear``: more and stronger vibration, jittery rpm;
- ``overheating``: temperature +12, current +2.5;
- ``pressure_leak``: pressure drops by about 0.8.

From ``drift_at`` seconds after the start on, the sensors drift (temperature +5, vibration gain
x1.4, humidity +15, pressure +0.3): the covariate shift the drift monitor must notice.

Rows are generated in fixed chunks of :data:`CHUNK_ROWS` with one random generator per chunk
(seeded by ``(seed, chunk)``), so memory stays bounded for tens of millions of rows and the output
depends only on the arguments. Row ``i`` belongs to device ``i % devices`` at step
``i // devices``.

A fraction of rows can be made malformed, each with one known defect (the counts come back in
the summary, named like the ETL's quarantine reasons): ``wrong_field_count``, ``missing_value``,
``unparsable``, ``non_finite``, ``unknown_label``, ``duplicate_id`` (the reading before, sent
again). Parquet columns are typed,
so a Parquet file gets only ``missing_value``, ``non_finite``, ``unknown_label`` and
``duplicate_id``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from kfp_edge.spark_etl.schema import BAD_ROW_REASONS

CHUNK_ROWS = 65_536
CHANNELS = ("temp", "vib", "pressure", "current", "rpm", "humidity")
CLASSES = ("normal", "bearing_wear", "overheating", "pressure_leak")
CLASS_PROBABILITIES = (0.55, 0.15, 0.15, 0.15)
COLUMNS = ("reading_id", "timestamp", "device_id", *CHANNELS, "fault")
START = np.datetime64("2026-01-01T00:00:00", "s")
CSV_DEFECTS = BAD_ROW_REASONS
PARQUET_DEFECTS = ("missing_value", "non_finite", "unknown_label", "duplicate_id")
UNKNOWN_LABEL = "unknown_fault"


def sensor_schema() -> dict:
    """Returns the declared schema of the generated data (the form ``load_schema`` reads)."""
    types = {"reading_id": "string", "timestamp": "timestamp", "device_id": "string"}
    types.update({c: "double" for c in CHANNELS})
    types["fault"] = "string"
    return {
        "columns": [{"name": c, "type": types[c]} for c in COLUMNS],
        "label_column": "fault",
        "feature_columns": list(CHANNELS),
        "id_column": "reading_id",
        "time_column": "timestamp",
        "device_column": "device_id",
        "classes": list(CLASSES),
    }


def _episodes(seed: int, device: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Episode end steps (exclusive, increasing) and class ids of one device."""
    rng = np.random.default_rng([seed, 7, device])
    count = steps // 60 + 2
    ends = np.cumsum(rng.integers(60, 301, size=count))
    labels = rng.choice(len(CLASSES), size=count, p=CLASS_PROBABILITIES)
    return ends, labels


def _chunk(
    seed: int,
    index: int,
    start_row: int,
    rows: int,
    devices: int,
    interval_s: float,
    episodes: list[tuple[np.ndarray, np.ndarray]],
    drift_at: float | None,
) -> dict[str, np.ndarray]:
    """Generates the clean columns of one chunk."""
    rng = np.random.default_rng([seed, 11, index])
    row = np.arange(start_row, start_row + rows, dtype=np.int64)
    device = row % devices
    step = row // devices
    label = np.empty(rows, dtype=np.int64)
    for d in range(devices):
        mask = device == d
        ends, labels = episodes[d]
        label[mask] = labels[np.searchsorted(ends, step[mask], side="right")]
    t = step * interval_s
    offset = (device % 5) * 0.7  # each device runs a little differently
    temp = 60 + offset + 2 * np.sin(2 * np.pi * t / 600) + rng.normal(0, 0.5, rows)
    vib = 0.5 + rng.normal(0, 0.2, rows)
    pressure = 5 + 0.1 * offset + rng.normal(0, 0.05, rows)
    current = 10 + rng.normal(0, 0.3, rows)
    rpm = 1500 + 5 * offset + rng.normal(0, 10, rows)
    humidity = 40 + rng.normal(0, 2, rows)
    extra = rng.normal(0, 1, (3, rows))
    wear, heat, leak = label == 1, label == 2, label == 3
    vib = vib + wear * (0.6 + 0.6 * np.abs(extra[0]))
    rpm = rpm + wear * 30 * extra[1]
    temp = temp + heat * 12
    current = current + heat * 2.5
    pressure = pressure - leak * (0.8 + 0.15 * extra[2])
    if drift_at is not None:
        drifted = t >= drift_at
        temp = temp + drifted * 5
        vib = np.where(drifted, vib * 1.4, vib)
        humidity = humidity + drifted * 15
        pressure = pressure + drifted * 0.3
    stamp = START + (t * 1000).astype("timedelta64[ms]")
    return {
        "row": row,
        "reading_id": np.char.add("r", row.astype(str)),
        "timestamp": np.datetime_as_string(stamp.astype("datetime64[s]"), unit="s"),
        "device_id": np.char.add("dev-", device.astype(str)),
        "temp": temp,
        "vib": vib,
        "pressure": pressure,
        "current": current,
        "rpm": rpm,
        "humidity": humidity,
        "label": label,
    }


def _choose_defects(rng, rows: int, bad_fraction: float, kinds) -> dict[int, str]:
    """Picks the malformed rows of a chunk.

    Only odd positions, so a duplicated id (taken from the row before) belongs to a clean row.
    """
    if bad_fraction <= 0:
        return {}
    odd = np.arange(1, rows, 2)
    count = min(len(odd), int(rng.binomial(rows, bad_fraction)))
    positions = np.sort(rng.choice(odd, size=count, replace=False))
    kinds_drawn = rng.integers(0, len(kinds), size=count)
    return {int(p): kinds[int(k)] for p, k in zip(positions, kinds_drawn, strict=True)}


def _csv_lines(cols: dict[str, np.ndarray], delimiter: str) -> list[str]:
    """Formats a chunk as CSV lines (no quoting needed: no field holds the delimiter)."""
    import pandas as pd

    frame = pd.DataFrame(
        {
            "reading_id": cols["reading_id"],
            "timestamp": cols["timestamp"],
            "device_id": cols["device_id"],
            **{c: cols[c] for c in CHANNELS},
            "fault": np.asarray(CLASSES, dtype=object)[cols["label"]],
        }
    )
    text = frame.to_csv(index=False, header=False, sep=delimiter, float_format="%.4f")
    return text.splitlines()


def _corrupt_line(line: str, prev: str, kind: str, rng, delimiter: str) -> str:
    fields = line.split(delimiter)
    channel = 3 + int(rng.integers(0, len(CHANNELS)))
    if kind == "wrong_field_count":
        fields = fields[:-1] if rng.random() < 0.5 else [*fields, "0.0"]
    elif kind == "missing_value":
        fields[channel] = ""
    elif kind == "unparsable":
        fields[channel] = str(rng.choice(["n/a", "1.2.3", "err", "--"]))
    elif kind == "non_finite":
        fields[channel] = str(rng.choice(["NaN", "inf", "-inf"]))
    elif kind == "unknown_label":
        fields[-1] = UNKNOWN_LABEL
    elif kind == "duplicate_id":  # the reading before, sent again
        return prev
    return delimiter.join(fields)


def generate_sensor_data(
    path: str | os.PathLike,
    rows: int,
    *,
    devices: int = 4,
    seed: int = 0,
    drift_at: float | None = None,
    bad_fraction: float = 0.0,
    fmt: str = "csv",
    interval_s: float = 1.0,
    delimiter: str = ",",
) -> dict:
    """Writes a deterministic synthetic sensor data set.

    Args:
        path: The output file (``.csv`` or ``.parquet``); it must not exist.
        rows: Number of rows (readings), malformed ones included.
        devices: Number of devices; readings go round-robin over them.
        seed: Seed; the same arguments give the same bytes.
        drift_at: Seconds after the start from which the sensors drift; ``None`` for no drift.
        bad_fraction: Expected fraction of malformed rows (each with one defect).
        fmt: ``csv`` or ``parquet``.
        interval_s: Seconds between two readings of a device.
        delimiter: CSV field delimiter.

    Returns:
        A summary: ``path``, ``rows``, ``format``, ``columns``, ``classes``, ``schema``
        (see :func:`sensor_schema`), ``bad_rows``, ``bad_by_reason``, ``rows_by_class``
        (clean rows), ``drift_at``, ``seed``, ``devices``.

    Raises:
        ValueError: On a bad argument.
        FileExistsError: If ``path`` exists (nothing is overwritten).
    """
    if rows < 1 or devices < 1:
        raise ValueError(f"rows and devices must be positive, got rows={rows} devices={devices}")
    if not 0 <= bad_fraction < 1:
        raise ValueError(f"bad_fraction must be in [0, 1), got {bad_fraction}")
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', got {fmt!r}")
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; the generator never overwrites a file")
    path.parent.mkdir(parents=True, exist_ok=True)
    steps = rows // devices + 1
    episodes = [_episodes(seed, d, steps) for d in range(devices)]
    kinds = CSV_DEFECTS if fmt == "csv" else PARQUET_DEFECTS
    bad_by_reason = dict.fromkeys(kinds, 0)
    rows_by_class = dict.fromkeys(CLASSES, 0)
    partial = path.with_name(f".{path.name}.partial")
    writer = None
    text_out = open(partial, "x", encoding="utf-8", newline="") if fmt == "csv" else None
    try:
        if text_out is not None:
            text_out.write(delimiter.join(COLUMNS) + "\n")
        for index, start in enumerate(range(0, rows, CHUNK_ROWS)):
            n = min(CHUNK_ROWS, rows - start)
            cols = _chunk(seed, index, start, n, devices, interval_s, episodes, drift_at)
            rng = np.random.default_rng([seed, 13, index])
            defects = _choose_defects(rng, n, bad_fraction, kinds)
            for kind in defects.values():
                bad_by_reason[kind] += 1
            clean = np.ones(n, dtype=bool)
            clean[list(defects)] = False
            for k, name in enumerate(CLASSES):
                rows_by_class[name] += int(np.sum(clean & (cols["label"] == k)))
            if text_out is not None:
                lines = _csv_lines(cols, delimiter)
                for pos, kind in defects.items():
                    lines[pos] = _corrupt_line(lines[pos], lines[pos - 1], kind, rng, delimiter)
                text_out.write("\n".join(lines) + "\n")
            else:
                writer = _write_parquet_chunk(writer, partial, cols, defects, rng)
        for handle in (text_out, writer):
            if handle is not None:
                handle.close()
        os.replace(partial, path)
    except BaseException:
        for handle in (text_out, writer):
            if handle is not None:
                handle.close()
        partial.unlink(missing_ok=True)
        raise
    return {
        "path": str(path),
        "rows": rows,
        "format": fmt,
        "columns": list(COLUMNS),
        "classes": list(CLASSES),
        "schema": sensor_schema(),
        "bad_rows": sum(bad_by_reason.values()),
        "bad_by_reason": bad_by_reason,
        "rows_by_class": rows_by_class,
        "drift_at": drift_at,
        "seed": seed,
        "devices": devices,
    }


def _write_parquet_chunk(writer, path: Path, cols, defects: dict[int, str], rng):
    """Appends one chunk as a Parquet row group (typed columns) and returns the writer."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    values = {c: cols[c].astype(np.float64).copy() for c in CHANNELS}
    masks = {c: np.zeros(len(cols["row"]), dtype=bool) for c in CHANNELS}
    ids = cols["reading_id"].astype(object)
    faults = np.asarray(CLASSES, dtype=object)[cols["label"]]
    stamps = cols["timestamp"].astype("datetime64[s]")
    devices = cols["device_id"].astype(object)
    for pos, kind in defects.items():
        channel = CHANNELS[int(rng.integers(0, len(CHANNELS)))]
        if kind == "missing_value":
            masks[channel][pos] = True
        elif kind == "non_finite":
            values[channel][pos] = float(rng.choice([np.nan, np.inf, -np.inf]))
        elif kind == "unknown_label":
            faults[pos] = UNKNOWN_LABEL
        elif kind == "duplicate_id":  # the reading before, sent again
            ids[pos] = ids[pos - 1]
            for c in CHANNELS:
                values[c][pos], masks[c][pos] = values[c][pos - 1], masks[c][pos - 1]
            faults[pos] = faults[pos - 1]
            stamps[pos], devices[pos] = stamps[pos - 1], devices[pos - 1]
    table = pa.table(
        {
            "reading_id": pa.array(ids, pa.string()),
            "timestamp": pa.array(stamps),
            "device_id": pa.array(devices, pa.string()),
            **{c: pa.array(values[c], pa.float64(), mask=masks[c]) for c in CHANNELS},
            "fault": pa.array(faults, pa.string()),
        }
    )
    if writer is None:
        writer = pq.ParquetWriter(path, table.schema)
    writer.write_table(table)
    return writer
