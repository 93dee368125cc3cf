"""Writing phase of the ETL: shards, Parquet splits and quarantine into a staging directory.

Everything goes to ``.<output>.staging`` next to the output directory, which is published by
one rename when the ETL is done (or when it fails on too many bad rows: then it holds only the
quarantine, so the user can look at the bad rows). A retried Spark task rewrites its files (a
shard with identical bytes is accepted, see :class:`kfp_edge.tfrecord.TFRecordWriter`); a retried
step with the same run id starts a fresh staging directory and replaces an unfinished output of
an earlier attempt (recognised by its marker file), never a finished one or anyone else's files.

One shuffle feeds both writers: the examples are partitioned by shard id (one Spark partition a
shard, ``repartitionById``) and sorted by hash within it; each task writes its TFRecord shard and
the Parquet file of the same rows, and returns the statistics of its rows (examples per class
and per group, feature sums and sums of squares) from which the ETL builds the split statistics
and the train mean and std, without another pass over the data.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from kfp_edge.dataset import LABEL_INDEX_COLUMN, MANIFEST_FILE

QUARANTINE_DIR = "quarantine"
MARKER_FILE = ".kfp-edge-etl"
QUARANTINE_COLUMNS = ("raw_line", "source_file", "reason", "detail")


def staging_dir(out: Path) -> Path:
    """A fresh staging directory for ``out`` (a stale one of an earlier attempt is removed).

    Raises:
        FileExistsError: If ``out`` holds files that are not an unfinished ETL output.
    """
    if out.exists() and any(out.iterdir()):
        unfinished = (out / MARKER_FILE).is_file() and not (out / MANIFEST_FILE).exists()
        if not unfinished:
            raise FileExistsError(f"{out}: output directory is not empty; nothing is overwritten")
    staging = out.parent / f".{out.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    (staging / MARKER_FILE).write_text("kfp-edge ETL output; written by a staging rename\n")
    return staging


def publish(staging: Path, out: Path) -> None:
    """Moves the staging directory into place (an unfinished earlier output is replaced)."""
    for partial in staging.rglob(".*.partial"):  # left by killed tasks
        partial.unlink()
    if out.exists():
        old = out.parent / f".{out.name}.replaced"
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(out)


def write_quarantine(bad, directory: Path, parts: int) -> None:
    """Writes the bad rows as Parquet (``raw_line``, ``source_file``, ``reason``, ``detail``).

    Args:
        bad: The bad rows with ``_raw``, ``_source``, ``_reason``, ``_detail``; None if none.
        directory: The quarantine directory (created).
        parts: Upper bound of output files (the rows are not gathered into one task).
    """
    from pyspark.sql import functions as F

    if bad is None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        directory.mkdir(parents=True)
        fields = [(n, pa.string()) for n in QUARANTINE_COLUMNS]
        table = pa.table({n: [] for n, _ in fields}, schema=pa.schema(fields))
        pq.write_table(table, directory / "part-00000.parquet")
        return
    rows = bad.select(
        *[
            F.col(c).alias(n)
            for c, n in zip(
                ("_raw", "_source", "_reason", "_detail"), QUARANTINE_COLUMNS, strict=True
            )
        ]
    )
    rows.coalesce(max(parts, 1)).write.mode("overwrite").parquet(str(directory))


# The columns each writer task returns per shard (``stats``: JSON, see :class:`_ShardFiles`).
WRITTEN_SCHEMA = "part int, rows long, sha256 string, stats string"


def shard_writer(
    out_dir: str,
    paths: list[str],
    parquet_paths: list[str],
    features,
    keep,
    num_classes: int,
    group_column: str | None = None,
):
    """The function each Spark partition runs (mapInArrow) to write its shard and Parquet file.

    Args:
        out_dir: The staging directory.
        paths: TFRecord path of each shard id.
        parquet_paths: Parquet file of each shard id.
        features: Feature columns, in order.
        keep: Extra columns kept in the Parquet splits (id, device, time).
        num_classes: Number of classes (the length of the per-class counts).
        group_column: The column of ``keep`` whose values are the groups (the device column),
            counted per shard; None without one. (Not a column of its own in the shuffle.)

    Returns:
        A function of Arrow batches (columns ``_part``, the features, ``label_index`` and
        ``keep``) giving one row of :data:`WRITTEN_SCHEMA` per shard.
    """

    def write(batches):
        import pyarrow as pa

        done = []
        current = None
        try:
            for batch in batches:
                for part, piece in _runs(batch):
                    if current is None or current.part != part:
                        if current is not None:
                            done.append(current.close())
                        current = _ShardFiles(
                            out_dir,
                            part,
                            (paths, parquet_paths),
                            features,
                            keep,
                            num_classes,
                            group_column,
                        )
                    current.write(piece)
            if current is not None:
                done.append(current.close())
                current = None
        except BaseException:
            if current is not None:
                current.abort()
            raise
        if done:
            yield pa.RecordBatch.from_pylist(
                done,
                schema=pa.schema(
                    [
                        ("part", pa.int32()),
                        ("rows", pa.int64()),
                        ("sha256", pa.string()),
                        ("stats", pa.string()),
                    ]
                ),
            )

    return write


def _runs(batch):
    """``(part, slice)`` for each run of equal ``_part`` in an Arrow batch."""
    import numpy as np

    parts = batch.column("_part").to_numpy()
    starts = np.flatnonzero(np.r_[True, parts[1:] != parts[:-1]])
    ends = np.r_[starts[1:], len(parts)]
    for s, e in zip(starts, ends, strict=True):
        yield int(parts[s]), batch.slice(int(s), int(e - s))


class _ShardFiles:
    """The TFRecord shard and the Parquet file of one shard id, and the statistics of its rows."""

    def __init__(self, out_dir, part, files, features, keep, num_classes, group_column=None):
        import numpy as np
        import pyarrow.parquet as pq

        from kfp_edge.tfrecord import ExampleEncoder, TFRecordWriter

        self.part, self.features, self.columns = (
            part,
            features,
            [*features, LABEL_INDEX_COLUMN, *keep],
        )
        self.encoder = ExampleEncoder(len(features))
        paths, parquet_paths = files
        self.tfrecord = TFRecordWriter(os.path.join(out_dir, paths[part]))
        self.parquet_path = os.path.join(out_dir, parquet_paths[part])
        os.makedirs(os.path.dirname(self.parquet_path), exist_ok=True)
        directory, name = os.path.split(self.parquet_path)
        self.parquet_partial = os.path.join(directory, f".{name}.{os.getpid()}.partial")
        self.parquet, self._pq = None, pq
        self.per_class = np.zeros(num_classes, dtype=np.int64)
        self.per_group: dict[str, int] = {}
        self.group_column = group_column
        self.sums = np.zeros(len(features))
        self.squares = np.zeros(len(features))

    def write(self, piece) -> None:
        import numpy as np

        x = np.zeros((piece.num_rows, 0), dtype=np.float32)
        if self.features:
            x = np.stack([piece.column(c).to_numpy() for c in self.features], axis=1)
        y = piece.column(LABEL_INDEX_COLUMN).to_numpy()
        self.tfrecord.write_framed(self.encoder.framed(x, y), len(y))
        table = piece.select(self.columns)
        if self.parquet is None:
            self.parquet = self._pq.ParquetWriter(self.parquet_partial, table.schema)
        self.parquet.write_batch(table)
        self._count(piece, x, y)

    def _count(self, piece, x, y) -> None:
        import numpy as np
        import pyarrow.compute as pc

        self.per_class += np.bincount(y, minlength=len(self.per_class))
        self.sums += x.sum(axis=0, dtype=np.float64)
        self.squares += np.square(x, dtype=np.float64).sum(axis=0)
        if self.group_column:
            groups = piece.column(self.group_column)
            if groups.type != "string":
                groups = pc.cast(groups, "string")
            counted = pc.value_counts(groups)
            for group, n in zip(
                counted.field("values").to_pylist(),
                counted.field("counts").to_pylist(),
                strict=True,
            ):
                if group is not None:
                    self.per_group[group] = self.per_group.get(group, 0) + n

    def close(self) -> dict:
        digest = self.tfrecord.close()
        if self.parquet is not None:
            self.parquet.close()
            os.replace(self.parquet_partial, self.parquet_path)  # a retried task rewrites it
        stats = {
            "per_class": self.per_class.tolist(),
            "per_group": self.per_group,
            "sums": self.sums.tolist(),
            "squares": self.squares.tolist(),
        }
        return {
            "part": self.part,
            "rows": self.tfrecord.rows,
            "sha256": digest,
            "stats": json.dumps(stats),
        }

    def abort(self) -> None:
        self.tfrecord.abort()
        if self.parquet is not None:
            self.parquet.close()
        Path(self.parquet_partial).unlink(missing_ok=True)
