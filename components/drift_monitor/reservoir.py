"""Aggarwal's exponentially biased reservoir: a fixed-memory sample that favours recent rows.

C. C. Aggarwal, "On Biased Reservoir Sampling in the Presence of Stream Evolution", VLDB 2006,
Algorithm 3.1 with the space constraint of section 3.1. With bias rate ``lambda`` and capacity
``n`` (``n * lambda <= 1``), each arriving row is inserted with probability
``p_in = n * lambda``. An inserted row replaces a uniformly chosen resident with probability
``F`` (the fraction of the reservoir that is full) and is appended otherwise. Once the
reservoir is full, a resident survives each arrival with probability ``1 - lambda``, so the
probability that the row that arrived at time ``r`` is still held at time ``t`` is
``p_in * (1 - lambda) ** (t - r)``: an exponential bias towards recent data, in memory that
never grows beyond ``n`` rows.

The reservoir is saved on the workspace as::

    reservoir.parquet   the resident rows (feature columns and the label column, nothing else,
                        so that a retraining run can read it as its input data), and in the
                        file's metadata the state: capacity, bias rate, rows seen, arrival time
                        of every resident, and the random generator's state (a resumed
                        reservoir draws the same numbers an uninterrupted one would)
    reservoir.json      a readable copy of that state
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from kfp_edge.workspace import write_json_atomic

DATA_FILE = "reservoir.parquet"
STATE_FILE = "reservoir.json"
STATE_FORMAT = 1
METADATA_KEY = b"kfp_edge.reservoir"


class BiasedReservoir:
    """A fixed-memory, exponentially biased reservoir sample of rows.

    Rows are a float feature vector plus a label (any scalar, None when unknown). All storage
    is allocated once, at construction.

    Args:
        feature_columns: Names of the feature columns, in order.
        label_column: Name of the label column.
        bias_rate: Aggarwal's ``lambda`` in (0, 1]: the larger, the more the sample favours
            recent rows. The expected age of a resident is about ``1 / lambda`` arrivals.
        capacity: Rows held at most; ``None`` for Aggarwal's maximum ``floor(1 / lambda)``.
            Must satisfy ``capacity * bias_rate <= 1``.
        seed: Seed of the random generator.

    Raises:
        ValueError: If the bias rate or capacity is out of range.
    """

    def __init__(
        self,
        feature_columns: list[str],
        label_column: str,
        bias_rate: float,
        capacity: int | None = None,
        seed: int = 0,
    ):
        if not 0.0 < float(bias_rate) <= 1.0:
            raise ValueError(f"bias_rate must be in (0, 1], got {bias_rate!r}")
        if capacity is None:
            capacity = int(np.floor(1.0 / float(bias_rate) + 1e-9))
        if int(capacity) < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity!r}")
        if int(capacity) * float(bias_rate) > 1.0 + 1e-9:
            raise ValueError(
                f"capacity * bias_rate must be at most 1 (Aggarwal's space constraint), got "
                f"capacity={capacity} and bias_rate={bias_rate}: lower one of them"
            )
        self.feature_columns = list(feature_columns)
        self.label_column = label_column
        self.bias_rate = float(bias_rate)
        self.capacity = int(capacity)
        self.p_in = self.capacity * self.bias_rate
        self.seen = 0
        self.size = 0
        self.features = np.zeros((self.capacity, len(self.feature_columns)), dtype=np.float64)
        self.labels = np.empty(self.capacity, dtype=object)
        self.arrivals = np.zeros(self.capacity, dtype=np.int64)
        self.rng = np.random.default_rng(seed)

    @property
    def nbytes(self) -> int:
        """Bytes held by the row storage (fixed at construction)."""
        return int(self.features.nbytes + self.labels.nbytes + self.arrivals.nbytes)

    def add(self, features, label=None) -> bool:
        """Offers one row to the reservoir.

        Args:
            features: The row's feature values, in ``feature_columns`` order.
            label: The row's label, or None.

        Returns:
            True if the row was inserted.
        """
        return self.add_many(np.asarray([features], dtype=np.float64), [label]) == 1

    def add_many(self, features: np.ndarray, labels=None) -> int:
        """Offers rows in arrival order.

        The result is that of offering them one by one, with three random numbers per row
        (insert?, replace?, which slot?) drawn for the whole batch at once. Only the appends
        depend on each other (the fill fraction grows with each); once they are known, every
        inserted row's slot follows, and each slot takes the last row written to it, as it
        would one by one, in one vectorized assignment.

        Args:
            features: Array ``[rows, num_features]``.
            labels: Sequence of ``rows`` labels (None entries allowed), or None.

        Returns:
            How many rows were inserted.
        """
        features = np.asarray(features, dtype=np.float64)
        m = len(features)
        if m == 0:
            return 0
        label_array = np.empty(m, dtype=object)
        if labels is not None:
            label_array[:] = labels if isinstance(labels, np.ndarray) else list(labels)
        u = self.rng.random((m, 3))
        start = self.seen
        self.seen += m
        chosen = np.flatnonzero(u[:, 0] < self.p_in) if self.p_in < 1.0 else np.arange(m)
        slots = self._slots(u[chosen, 1], u[chosen, 2])
        last = np.full(self.capacity, -1, dtype=np.int64)
        np.maximum.at(last, slots, np.arange(len(chosen)))  # the last write to each slot
        written = np.flatnonzero(last >= 0)
        take = chosen[last[written]]
        self.features[written] = features[take]
        self.labels[written] = label_array[take]
        self.arrivals[written] = start + take
        return len(chosen)

    def _slots(self, replace_u: np.ndarray, slot_u: np.ndarray) -> np.ndarray:
        """Returns the slot of each inserted row, and grows ``size`` by the appends.

        A row is appended when its replace draw is not below the fill fraction at its
        arrival, else it replaces the resident in slot ``floor(slot draw * size)``.
        """
        size, capacity = self.size, self.capacity
        sizes = np.full(len(replace_u), capacity, dtype=np.int64)  # the size each row sees
        appended = []
        if size < capacity:
            for k, draw in enumerate(replace_u.tolist()):
                sizes[k] = size
                if draw >= size / capacity:
                    appended.append(k)
                    size += 1
                    if size == capacity:
                        break  # full: the rest replace, seeing the whole capacity
        slots = np.minimum((slot_u * sizes).astype(np.int64), sizes - 1)
        slots[appended] = sizes[appended]
        self.size = size
        return slots

    def ages(self) -> np.ndarray:
        """Returns the age (arrivals since) of every resident row."""
        return (self.seen - 1) - self.arrivals[: self.size]

    def summary(self) -> dict:
        """Returns a JSON-able summary: capacity, size, rows seen, bias rate, ages."""
        ages = self.ages()
        return {
            "capacity": self.capacity,
            "size": self.size,
            "seen": self.seen,
            "bias_rate": self.bias_rate,
            "insert_probability": self.p_in,
            "bytes": self.nbytes,
            "mean_age": float(ages.mean()) if len(ages) else None,
            "median_age": float(np.median(ages)) if len(ages) else None,
        }

    def to_frame(self):
        """Returns the resident rows as a pandas DataFrame (features then label), oldest first."""
        import pandas as pd

        order = np.argsort(self.arrivals[: self.size], kind="stable")
        frame = pd.DataFrame(self.features[: self.size][order], columns=self.feature_columns)
        frame[self.label_column] = list(self.labels[: self.size][order])
        return frame

    def _state(self) -> dict:
        order = np.argsort(self.arrivals[: self.size], kind="stable")
        return {
            "format": STATE_FORMAT,
            "feature_columns": self.feature_columns,
            "label_column": self.label_column,
            "bias_rate": self.bias_rate,
            "capacity": self.capacity,
            "seen": self.seen,
            "size": self.size,
            "arrivals": self.arrivals[: self.size][order].tolist(),
            "rng": self.rng.bit_generator.state,
        }

    def save(self, directory: str | os.PathLike) -> Path:
        """Saves the reservoir to ``directory`` by one atomic rename.

        The rows and the state travel in one Parquet file (the state in its key-value
        metadata), so a reader or a crash never sees rows of one save with the state of
        another. ``reservoir.json`` is a readable copy of the state, written afterwards.

        Returns:
            The path of the Parquet file.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = self._state()
        table = pa.Table.from_pandas(self.to_frame(), preserve_index=False)
        metadata = dict(table.schema.metadata or {})
        metadata[METADATA_KEY] = json.dumps(state).encode()
        table = table.replace_schema_metadata(metadata)
        tmp = directory / f".{DATA_FILE}.{os.getpid()}.tmp"
        try:
            pq.write_table(table, tmp)
            os.replace(tmp, directory / DATA_FILE)
        finally:
            tmp.unlink(missing_ok=True)
        write_json_atomic(directory / STATE_FILE, state)
        return directory / DATA_FILE

    @classmethod
    def load(cls, directory: str | os.PathLike) -> BiasedReservoir:
        """Loads a reservoir saved by :meth:`save`.

        Raises:
            FileNotFoundError: If the directory holds no saved reservoir.
            ValueError: If the file is not a saved reservoir or its rows and state disagree.
        """
        import pyarrow.parquet as pq

        path = Path(directory) / DATA_FILE
        if not path.exists():
            raise FileNotFoundError(f"{path}: no saved reservoir")
        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise ValueError(f"{path}: not a readable Parquet file: {exc}") from exc
        raw = (table.schema.metadata or {}).get(METADATA_KEY)
        if raw is None:
            raise ValueError(f"{path}: no reservoir state in the file's metadata")
        state = json.loads(raw)
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"{path}: unknown reservoir format {state.get('format')!r}")
        size = state["size"]
        if table.num_rows != size or len(state["arrivals"]) != size:
            raise ValueError(f"{path}: holds {table.num_rows} rows but its state says {size}")
        reservoir = cls(
            state["feature_columns"], state["label_column"], state["bias_rate"], state["capacity"]
        )
        for k, column in enumerate(reservoir.feature_columns):
            reservoir.features[:size, k] = table.column(column).to_numpy()
        reservoir.labels[:size] = table.column(reservoir.label_column).to_pylist()
        reservoir.arrivals[:size] = state["arrivals"]
        reservoir.size = size
        reservoir.seen = int(state["seen"])
        reservoir.rng.bit_generator.state = state["rng"]
        return reservoir
