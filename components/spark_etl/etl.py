"""The Spark ETL: messy CSV or Parquet in; quarantine, clean stratified splits, TFRecord out.

Steps, all in Spark (no collect of rows to the driver):

1. **Read.** CSV is read as text lines (BOM removed, blank and header lines dropped) and parsed
   with Spark's own CSV parser (``from_csv``: delimiter, quoting). Spark does not mark rows with
   too few or too many fields as corrupt, so the fields are counted separately (delimiters
   outside quotes). Parquet columns are read typed. Quoted fields spanning lines are not
   supported (one record per line).
2. **Classify.** Each row gets the first reason that applies, or none: ``wrong_field_count``,
   ``missing_value``, ``unparsable``, ``non_finite`` (NaN or inf in a feature),
   ``unknown_label`` (not in the declared classes), ``duplicate_id`` (when an id column is
   declared: of the rows sharing an id, the one with the smallest raw line is kept, so the choice
   does not depend on partitioning). Bad rows go to ``quarantine/`` (Parquet: ``raw_line``,
   ``source_file``, ``reason``, ``detail``); more than ``max_bad_fraction`` fails the step.
3. **Window** (optional). Per device and tumbling window of ``window_seconds`` on the time
   column: mean, std, min, max of each feature and the row count; the label is the window's most
   frequent one.
4. **Split.** Each example gets ``h = xxhash64(seed, key)`` (``key`` = raw line, or device and
   window); within each class examples are ranked by ``h`` and the first 60 % go to train, the
   next 20 % to validation, the rest to test (per-class counts, so the split is stratified and
   exact). Shards are assigned round-robin within a split in that order. The same input and seed
   give the same rows in the same order in every shard, byte for byte.
5. **Write.** TFRecord shards (written by each Spark partition, see :mod:`kfp_edge.tfrecord`),
   Parquet splits, ``preprocessing.json`` (train mean and std, computed in Spark),
   ``schema.json`` (the input schema, to pin it next time), ``etl_summary.json`` and last
   ``manifest.json`` (see :mod:`kfp_edge.dataset`).
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

from kfp_edge.dataset import (
    LABEL_INDEX_COLUMN,
    MANIFEST_FILE,
    PREPROCESSING_FILE,
    SPLITS,
)
from kfp_edge.progress import report_progress
from kfp_edge.spark_etl.schema import (
    BAD_ROW_REASONS,
    Schema,
    infer_csv_schema,
    load_schema,
    read_csv_head,
    schema_from_dict,
)
from kfp_edge.workspace import write_json_atomic

REASONS = BAD_ROW_REASONS
DEFAULT_SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
WINDOW_STATS = ("mean", "std", "min", "max", "count")
SENSOR_DEFAULT_ROWS = 20_000
SENSOR_DEFAULT_WINDOW_SECONDS = 20.0
IRIS_COLUMNS = ("sepal_length", "sepal_width", "petal_length", "petal_width")
SCHEMA_FILE = "schema.json"
SUMMARY_FILE = "etl_summary.json"
QUARANTINE_DIR = "quarantine"
CSV_SUFFIXES = (".csv", ".tsv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")


class BadDataError(ValueError):
    """The input cannot give a dataset: too many bad rows, no rows, or no usable label."""


# ----------------------------------------------------------------------------- input sources


def _list_files(path: Path) -> list[Path]:
    """The data files of a file or directory (hidden and ``_`` files skipped), sorted."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: input not found")
    if path.is_file():
        return [path]
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
    )
    if not files:
        raise BadDataError(f"{path}: empty input directory (no data files)")
    return files


def _format_of(files: list[Path]) -> str:
    kinds = {"parquet" if f.suffix.lower() in PARQUET_SUFFIXES else "csv" for f in files}
    if len(kinds) > 1:
        raise BadDataError(
            f"{files[0].parent}: mixed CSV and Parquet files; give one format per input"
        )
    return kinds.pop()


def download_s3(uri: str, target: Path) -> Path:
    """Downloads the objects under an ``s3://bucket/prefix`` URI to a local directory.

    Spark's S3A connector needs the hadoop-aws jars, which this image does not ship, so the
    objects are fetched with the ``minio`` client (endpoint and credentials from the
    ``KFP_EDGE_S3_*`` environment variables, never from arguments) and read locally.

    Args:
        uri: ``s3://bucket/key`` of one object or ``s3://bucket/prefix/`` of many.
        target: Local directory to download into.

    Returns:
        The local file (one object) or directory (several).

    Raises:
        FileNotFoundError: If no object matches (naming the URI).
    """
    from kfp_edge.s3 import client_from_env, parse_s3_uri

    bucket, prefix = parse_s3_uri(uri)
    client = client_from_env()
    objects = [
        o
        for o in client.list_objects(bucket, prefix=prefix, recursive=True)
        if not o.is_dir
        and (o.object_name == prefix or o.object_name.startswith(prefix + "/") or not prefix)
    ]
    if not objects:
        raise FileNotFoundError(f"{uri}: no objects found")
    target.mkdir(parents=True, exist_ok=True)
    for obj in objects:
        rel = obj.object_name[len(prefix) :].lstrip("/") or Path(obj.object_name).name
        local = target / rel
        local.parent.mkdir(parents=True, exist_ok=True)
        client.fget_object(bucket, obj.object_name, str(local))
    if len(objects) == 1 and objects[0].object_name == prefix:
        return target / Path(prefix).name
    return target


def _iris_csv(directory: Path) -> tuple[Path, Schema]:
    """scikit-learn's bundled Iris as a CSV, with its declared schema."""
    from sklearn.datasets import load_iris

    iris = load_iris()
    path = directory / "iris.csv"
    with open(path, "w", encoding="utf-8") as f:
        f.write(",".join([*IRIS_COLUMNS, "species"]) + "\n")
        for row, target in zip(iris.data, iris.target, strict=True):
            values = ",".join(repr(float(v)) for v in row)
            f.write(f"{values},{iris.target_names[target]}\n")
    schema = schema_from_dict(
        {
            "columns": [{"name": c, "type": "double"} for c in IRIS_COLUMNS]
            + [{"name": "species", "type": "string"}],
            "label_column": "species",
            "classes": [str(n) for n in iris.target_names],
        },
        "iris",
    )
    return path, schema


# ----------------------------------------------------------------------------- spark session


def create_session(master: str = "local[*]", driver_memory: str = "2g"):
    """Creates the local SparkSession the ETL uses when none is given.

    Args:
        master: Spark master URL.
        driver_memory: Driver JVM heap (local mode: the only JVM).
    """
    from pyspark.sql import SparkSession

    # Local mode: the Python workers must be this interpreter (with pyarrow and kfp_edge).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master(master)
        .appName("kfp-edge-etl")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", driver_memory)
        .config("spark.sql.shuffle.partitions", str(max(4, 2 * (os.cpu_count() or 2))))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return session


# ----------------------------------------------------------------------------- reading


def _raw_csv(spark, files: list[Path], schema: Schema, header: bool, delimiter: str, quote: str):
    """CSV lines as string columns plus ``_raw``, ``_source`` and ``_nfields``."""
    import re

    from pyspark.sql import functions as F

    lines = spark.read.text([str(f) for f in files])
    value = F.regexp_replace(F.col("value"), "^\ufeff", "")
    lines = lines.select(value.alias("_raw"), F.input_file_name().alias("_source"))
    lines = lines.where(F.trim(F.col("_raw")) != "")
    if header:
        header_lines = set()
        for f in files:
            with open(f, encoding="utf-8-sig", newline="") as fh:
                for line in fh:
                    if line.strip():
                        header_lines.add(line.rstrip("\r\n"))
                        break
        lines = lines.where(~F.col("_raw").isin(sorted(header_lines)))
    q, d = re.escape(quote), re.escape(delimiter)
    unquoted = F.regexp_replace(F.col("_raw"), f"{q}(?:[^{q}]|{q}{q})*{q}", "")
    nfields = F.size(F.split(unquoted, d, -1))
    ddl = ", ".join(f"`_c{i}` STRING" for i in range(len(schema.columns)))
    options = {"sep": delimiter, "quote": quote, "escape": quote, "mode": "PERMISSIVE"}
    parsed = F.from_csv(F.col("_raw"), ddl, options)
    return lines.select(
        "_raw",
        "_source",
        nfields.alias("_nfields"),
        *[parsed[f"_c{i}"].alias(name) for i, name in enumerate(schema.names)],
    )


def _raw_parquet(spark, files: list[Path], schema: Schema):
    """Parquet rows as string columns plus ``_raw`` (the row as JSON) and ``_source``."""
    from pyspark.sql import functions as F

    frame = spark.read.parquet(*[str(f) for f in files])
    missing = [n for n in schema.names if n not in frame.columns]
    if missing:
        raise BadDataError(f"{files[0]}: columns {missing} not found; columns are {frame.columns}")
    return frame.select(
        F.to_json(F.struct(*[F.col(n) for n in schema.names])).alias("_raw"),
        F.input_file_name().alias("_source"),
        F.lit(len(schema.names)).alias("_nfields"),
        *[F.col(n).cast("string").alias(n) for n in schema.names],
    )


def _parquet_schema(spark, files: list[Path], label_column: str) -> Schema:
    frame = spark.read.parquet(str(files[0]))
    types = {
        "double": "double",
        "float": "double",
        "int": "long",
        "bigint": "long",
        "smallint": "long",
        "tinyint": "long",
        "timestamp": "timestamp",
        "timestamp_ntz": "timestamp",
        "date": "timestamp",
    }
    columns = [
        {"name": f.name, "type": types.get(f.dataType.simpleString(), "string")}
        for f in frame.schema.fields
    ]
    if label_column not in frame.columns:
        raise BadDataError(
            f"{files[0]}: label column {label_column!r} not found; columns are {frame.columns}"
        )
    for col in columns:
        if col["name"] == label_column:
            col["type"] = "string"
    return schema_from_dict({"columns": columns, "label_column": label_column}, str(files[0]))


# ----------------------------------------------------------------------------- classification


def _classify(raw, schema: Schema):
    """Adds ``_reason`` and ``_detail`` (null for good rows) and typed columns."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    required = list(
        dict.fromkeys(
            [*schema.feature_columns, schema.label_column]
            + [c for c in (schema.id_column, schema.time_column, schema.device_column) if c]
        )
    )
    typed = {}
    for name in required:
        ctype = schema.type_of(name)
        col = F.col(name)
        typed[name] = col if ctype == "string" else F.trim(col).try_cast(ctype)
    checks = [
        (
            F.col("_nfields") != len(schema.names),
            F.concat(
                F.col("_nfields").cast("string"), F.lit(f" fields, expected {len(schema.names)}")
            ),
            "wrong_field_count",
        ),
    ]
    for name in required:
        checks.append(
            (F.col(name).isNull() | (F.trim(F.col(name)) == ""), F.lit(name), "missing_value")
        )
    for name in required:
        if schema.type_of(name) != "string":
            checks.append((typed[name].isNull(), F.lit(name), "unparsable"))
    for name in schema.feature_columns:
        checks.append(
            (F.isnan(typed[name]) | (F.abs(typed[name]) == float("inf")), F.lit(name), "non_finite")
        )
    if schema.classes:
        checks.append(
            (
                ~F.col(schema.label_column).isin(schema.classes),
                F.lit(schema.label_column),
                "unknown_label",
            )
        )
    reason = None
    detail = None
    for cond, det, name in checks:
        reason = F.when(cond, F.lit(name)) if reason is None else reason.when(cond, F.lit(name))
        detail = F.when(cond, det) if detail is None else detail.when(cond, det)
    frame = raw.select(
        "_raw",
        "_source",
        reason.alias("_reason"),
        detail.alias("_detail"),
        *[typed[n].alias(n) for n in required],
    )
    if schema.id_column:
        ident = schema.id_column
        rank = F.row_number().over(
            Window.partitionBy(F.col("_reason").isNull(), ident).orderBy("_raw", "_source")
        )
        dup = F.col("_reason").isNull() & (rank > 1)
        frame = frame.select("*", dup.alias("_dup")).select(
            "_raw",
            "_source",
            F.when(F.col("_dup"), F.lit("duplicate_id"))
            .otherwise(F.col("_reason"))
            .alias("_reason"),
            F.when(F.col("_dup"), F.lit(ident)).otherwise(F.col("_detail")).alias("_detail"),
            *required,
        )
    return frame, required


# ----------------------------------------------------------------------------- windowing


def _windowed(good, schema: Schema, window_seconds: float, stats: tuple[str, ...]):
    """Tumbling-window aggregates per device: returns ``(frame, feature_columns)``."""
    from pyspark.sql import functions as F

    if not schema.time_column:
        raise BadDataError("windowed aggregation needs a time column in the schema")
    t = F.col(schema.time_column)
    seconds = F.unix_micros(t) / 1e6 if schema.type_of(schema.time_column) == "timestamp" else t
    window_id = F.floor(seconds / window_seconds).cast("long")
    device = F.col(schema.device_column) if schema.device_column else F.lit("")
    keys = [device.cast("string").alias("_device"), window_id.alias("_window")]
    aggs, names = [], []
    makers = {"mean": F.avg, "std": F.stddev_pop, "min": F.min, "max": F.max}
    for c in schema.feature_columns:
        for s in stats:
            if s in makers:
                aggs.append(makers[s](c).cast("double").alias(f"{c}_{s}"))
                names.append(f"{c}_{s}")
    if "count" in stats:
        aggs.append(F.count(F.lit(1)).cast("double").alias("count"))
        names.append("count")
    aggs.append(F.mode(schema.label_column, True).alias(schema.label_column))
    frame = good.groupBy(*keys).agg(*aggs)
    frame = frame.withColumn("_key", F.concat_ws("|", "_device", F.col("_window").cast("string")))
    return frame, names


# ----------------------------------------------------------------------------- writing shards


def _shard_writer(out_dir: str, paths: list[str], features: list[str]):
    """The function each Spark partition runs (mapInArrow) to write its TFRecord shards."""

    def write(batches):
        import numpy as np
        import pyarrow as pa

        from kfp_edge.tfrecord import ExampleEncoder, TFRecordWriter

        encoder = ExampleEncoder(len(features))
        writer, done = None, []
        try:
            for batch in batches:
                parts = batch.column("_part").to_numpy()
                x = np.zeros((batch.num_rows, 0), dtype=np.float32)
                if features:
                    x = np.stack([batch.column(c).to_numpy() for c in features], axis=1)
                y = batch.column(LABEL_INDEX_COLUMN).to_numpy()
                starts = np.flatnonzero(np.r_[True, parts[1:] != parts[:-1]])
                ends = np.r_[starts[1:], len(parts)]
                for s, e in zip(starts, ends, strict=True):
                    part = int(parts[s])
                    if writer is None or part != done[-1][0]:
                        if writer is not None:
                            done[-1][2] = writer.close()
                            done[-1][1] = writer.rows
                        writer = TFRecordWriter(os.path.join(out_dir, paths[part]))
                        done.append([part, 0, ""])
                    writer.write_many(encoder.encode(x[s:e], y[s:e]))
            if writer is not None:
                done[-1][2] = writer.close()
                done[-1][1] = writer.rows
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        if done:
            yield pa.RecordBatch.from_pydict(
                {
                    "part": [d[0] for d in done],
                    "rows": [d[1] for d in done],
                    "sha256": [d[2] for d in done],
                },
                schema=pa.schema(
                    [("part", pa.int32()), ("rows", pa.int64()), ("sha256", pa.string())]
                ),
            )

    return write


# ----------------------------------------------------------------------------- main entry


def run_etl(
    output_dir: str,
    *,
    dataset: str = "iris",
    input_path: str = "",
    label_column: str = "",
    seed: int = 42,
    max_bad_fraction: float = 0.05,
    spark=None,
    schema_path: str = "",
    header: bool = True,
    delimiter: str = ",",
    quote: str = '"',
    window_seconds: float | None = None,
    window_stats: str = ",".join(WINDOW_STATS),
    split_fractions: tuple[float, float, float] = DEFAULT_SPLIT_FRACTIONS,
    rows_per_shard: int = 100_000,
    min_shards: int = 2,
    sensor_rows: int = SENSOR_DEFAULT_ROWS,
    driver_memory: str = "2g",
) -> dict:
    """Runs the ETL and writes ``output_dir`` in the data contract of :mod:`kfp_edge.dataset`.

    Args:
        output_dir: Output directory; must not exist or be empty (nothing is overwritten).
        dataset: ``iris`` (scikit-learn's copy) or ``sensor`` (the synthetic generator);
            ignored when ``input_path`` is given.
        input_path: A CSV or Parquet file or directory, local or ``s3://bucket/prefix``.
        label_column: The label column of ``input_path`` (required with it unless the schema
            file names it).
        seed: Seed of the split (same input and seed: byte-identical shards).
        max_bad_fraction: Fail when more than this fraction of the rows is quarantined.
        spark: A SparkSession; ``None`` uses the active one, or creates a ``local[*]`` one
            and stops it at the end.
        schema_path: Declared schema (YAML or JSON); empty to infer one.
        header: Whether CSV files start with a header line (without one, a schema is needed).
        delimiter: CSV field delimiter.
        quote: CSV quote character (doubled inside a quoted field to escape it).
        window_seconds: Tumbling window per device; ``None``: 20 s for ``sensor``, else off;
            0: off.
        window_stats: Comma-separated window statistics among mean, std, min, max, count.
        split_fractions: Train, validation and test fractions.
        rows_per_shard: Target rows per TFRecord shard.
        min_shards: Minimum shards per split (when the split has that many rows).
        sensor_rows: Rows generated for ``dataset="sensor"``.
        driver_memory: Driver memory of the session created when ``spark`` is None.

    Returns:
        The summary: ``rows_in``, ``rows_good``, ``rows_bad``, ``bad_by_reason``,
        ``bad_fraction``, ``rows_per_split``, ``examples`` (after windowing),
        ``num_features``, ``num_classes``, ``feature_columns``, ``classes``, ``approx_distinct``
        (per input column), ``feature_profile``, ``shards``, ``seconds``, ``source``.

    Raises:
        BadDataError: Empty or header-only input, missing label column, too many bad rows.
        FileExistsError: If ``output_dir`` holds files.
        FileNotFoundError: If the input does not exist.
    """
    started = time.perf_counter()
    out = Path(output_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out}: output directory is not empty; nothing is overwritten")
    if (
        len(split_fractions) != 3
        or abs(sum(split_fractions) - 1) > 1e-9
        or min(split_fractions) < 0
    ):
        raise ValueError(
            f"split_fractions must be three non-negative numbers summing to 1, "
            f"got {split_fractions}"
        )
    if not 0 <= max_bad_fraction <= 1:
        raise ValueError(f"max_bad_fraction must be in [0, 1], got {max_bad_fraction}")
    stats = tuple(s.strip() for s in window_stats.split(",") if s.strip())
    unknown_stats = [s for s in stats if s not in WINDOW_STATS]
    if unknown_stats:
        raise ValueError(f"unknown window statistics {unknown_stats}; choose from {WINDOW_STATS}")
    if spark is None:
        from pyspark.sql import SparkSession

        spark = SparkSession.getActiveSession()  # reuse the caller's session, never stop it
    own_session = spark is None
    # Staged inputs (bundled data, s3:// downloads) sit next to the output, on the workspace
    # volume, so that Spark executors in other pods can read them too.
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}-staging-", dir=out.parent) as tmp:
        tmp_dir = Path(tmp)
        schema = load_schema(schema_path) if schema_path else None
        if input_path:
            if not label_column and schema is None:
                raise ValueError("input_path needs label_column (or a schema naming it)")
            if schema is not None and label_column and label_column != schema.label_column:
                raise ValueError(
                    f"label_column {label_column!r} differs from the schema's "
                    f"{schema.label_column!r} ({schema_path})"
                )
            label_column = label_column or schema.label_column
            source = input_path
            local = (
                download_s3(input_path, tmp_dir / "s3")
                if input_path.startswith("s3://")
                else Path(input_path)
            )
        elif dataset == "iris":
            source = "iris"
            local, declared = _iris_csv(tmp_dir)
            schema = schema or declared
        elif dataset == "sensor":
            from kfp_edge.spark_etl.datagen import generate_sensor_data

            source = "sensor"
            info = generate_sensor_data(tmp_dir / "sensor.csv", sensor_rows, seed=seed)
            local = Path(info["path"])
            schema = schema or schema_from_dict(info["schema"], "sensor")
            if window_seconds is None:
                window_seconds = SENSOR_DEFAULT_WINDOW_SECONDS
        else:
            raise ValueError(f"unknown dataset {dataset!r}: use iris, sensor or input_path")
        files = _list_files(local)
        fmt = _format_of(files)
        if own_session:
            spark = create_session(driver_memory=driver_memory)
        try:
            if fmt == "csv":
                schema = _csv_schema(files, schema, label_column, header, delimiter, quote)
                raw = _raw_csv(spark, files, schema, header, delimiter, quote)
            else:
                schema = schema or _parquet_schema(spark, files, label_column)
                raw = _raw_parquet(spark, files, schema)
            result = _process(
                spark,
                raw,
                files,
                schema,
                out,
                seed=seed,
                max_bad_fraction=max_bad_fraction,
                window_seconds=window_seconds or 0.0,
                stats=stats,
                split_fractions=split_fractions,
                rows_per_shard=rows_per_shard,
                min_shards=min_shards,
            )
        finally:
            if own_session:
                spark.stop()
    summary, manifest = result
    summary["source"] = manifest["source"] = source
    summary["format"] = fmt
    summary["seconds"] = round(time.perf_counter() - started, 3)
    write_json_atomic(out / SUMMARY_FILE, summary)
    write_json_atomic(out / MANIFEST_FILE, manifest)  # last: its presence marks a finished ETL
    return summary


def _csv_schema(files, schema, label_column, header, delimiter, quote) -> Schema:
    """Checks every file's header against the declared schema, or infers one."""
    if not header and schema is None:
        raise ValueError(f"{files[0]}: CSV without a header needs a schema file (schema_path)")
    heads = {}
    for f in files:
        if f.stat().st_size == 0:
            raise BadDataError(f"{f}: empty file (no header line)")
        if header:
            heads[f] = read_csv_head(f, delimiter, quote)
    if schema is None:
        with_rows = [f for f in files if heads[f][1]]
        if not with_rows:
            names = ", ".join(str(f) for f in files[:5])
            if label_column not in heads[files[0]][0]:
                infer_csv_schema(heads[files[0]][0], [], label_column, str(files[0]))
            raise BadDataError(f"{names}: no data rows (header-only input)")
        schema = infer_csv_schema(*heads[with_rows[0]], label_column, str(with_rows[0]))
    for f, (names, _) in heads.items():
        if names != schema.names:
            if schema.label_column not in names:
                raise BadDataError(
                    f"{f}: label column {schema.label_column!r} not found; columns are {names}"
                )
            raise BadDataError(f"{f}: header {names} does not match the schema {schema.names}")
    return schema


def _process(
    spark,
    raw,
    files,
    schema: Schema,
    out: Path,
    *,
    seed,
    max_bad_fraction,
    window_seconds,
    stats,
    split_fractions,
    rows_per_shard,
    min_shards,
) -> dict:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    classified, required = _classify(raw, schema)
    key = F.col("_raw")
    classified = classified.select(
        F.when(F.col("_reason").isNotNull(), F.col("_raw")).alias("_raw"),
        F.when(F.col("_reason").isNotNull(), F.col("_source")).alias("_source"),
        "_reason",
        "_detail",
        *required,
        F.xxhash64(F.lit(seed), key).alias("_h"),
        F.xxhash64(F.lit(seed + 1), key).alias("_h2"),
    ).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        return _process_classified(
            spark,
            classified,
            files,
            schema,
            out,
            seed=seed,
            max_bad_fraction=max_bad_fraction,
            window_seconds=window_seconds,
            stats=stats,
            split_fractions=split_fractions,
            rows_per_shard=rows_per_shard,
            min_shards=min_shards,
        )
    finally:
        classified.unpersist()


def _process_classified(
    spark,
    classified,
    files,
    schema,
    out,
    *,
    seed,
    max_bad_fraction,
    window_seconds,
    stats,
    split_fractions,
    rows_per_shard,
    min_shards,
) -> dict:
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    phases = _Phases()
    # one pass: rows per reason and the profile of the good rows
    is_good = F.col("_reason").isNull()
    row = classified.agg(
        F.count(F.lit(1)).alias("rows_in"),
        *[F.sum(F.when(F.col("_reason") == r, 1).otherwise(0)).alias(r) for r in REASONS],
        *_profile_aggs(classified, schema, is_good, F),
    ).collect()[0]
    phases.done("read_classify_profile")
    bad_by_reason = {r: int(row[r] or 0) for r in REASONS}
    rows_bad = sum(bad_by_reason.values())
    rows_in = int(row["rows_in"])
    rows_good = rows_in - rows_bad
    names = ", ".join(str(f) for f in files[:5]) + (" ..." if len(files) > 5 else "")
    if rows_in == 0:
        raise BadDataError(f"{names}: no data rows (header-only input)")
    bad = classified.where(~is_good).select(
        F.col("_raw").alias("raw_line"),
        F.col("_source").alias("source_file"),
        F.col("_reason").alias("reason"),
        F.col("_detail").alias("detail"),
    )
    out.mkdir(parents=True, exist_ok=True)
    if rows_bad:
        bad.coalesce(1).write.parquet(str(out / QUARANTINE_DIR))
    else:
        _empty_quarantine(out / QUARANTINE_DIR)
    phases.done("quarantine")
    bad_fraction = rows_bad / rows_in
    if bad_fraction > max_bad_fraction:
        samples = [
            f"{r['source_file']}: {r['reason']} ({r['detail']}): {r['raw_line'][:120]!r}"
            for r in bad.limit(5).collect()
        ]
        raise BadDataError(
            f"{names}: {rows_bad} of {rows_in} rows are bad ({bad_fraction:.2%} > "
            f"max_bad_fraction {max_bad_fraction:.2%}); by reason "
            f"{ {k: v for k, v in bad_by_reason.items() if v} }; quarantined rows in "
            f"{out / QUARANTINE_DIR}; first ones:\n  " + "\n  ".join(samples)
        )
    if rows_good == 0:
        raise BadDataError(f"{names}: no good rows")
    profile = _profile(row, classified, schema)
    good = classified.where(is_good)

    features = list(schema.feature_columns)
    examples = good.select(
        *[F.col(c).cast("double") for c in features],
        F.col(schema.label_column).cast("string"),
        "_h",
        "_h2",
        *([schema.time_column] if schema.time_column else []),
        *([schema.device_column] if schema.device_column else []),
    )
    if window_seconds > 0:
        examples, features = _windowed(examples, schema, window_seconds, stats)
        examples = examples.select(
            *features,
            schema.label_column,
            F.xxhash64(F.lit(seed), "_key").alias("_h"),
            F.xxhash64(F.lit(seed + 1), "_key").alias("_h2"),
        )
    label_counts = {
        r[0]: int(r[1]) for r in examples.groupBy(schema.label_column).count().collect()
    }
    classes = list(schema.classes) or _sorted_labels(label_counts)
    per_class = {classes.index(label): n for label, n in label_counts.items()}
    phases.done("labels")
    label_index = (
        F.array_position(F.array(*[F.lit(c) for c in classes]), F.col(schema.label_column)) - 1
    ).cast("long")
    examples = examples.select(*features, label_index.alias(LABEL_INDEX_COLUMN), "_h", "_h2")
    plan = _split_plan(per_class, classes, split_fractions, rows_per_shard, min_shards)
    bounds = spark.createDataFrame(
        plan["bounds"],
        [LABEL_INDEX_COLUMN, "_train_end", "_val_end", "_off_train", "_off_val", "_off_test"],
    )
    rank = F.row_number().over(Window.partitionBy(LABEL_INDEX_COLUMN).orderBy("_h", "_h2")) - 1
    ranked = examples.select("*", rank.alias("_rank")).join(F.broadcast(bounds), LABEL_INDEX_COLUMN)
    split = (
        F.when(F.col("_rank") < F.col("_train_end"), 0)
        .when(F.col("_rank") < F.col("_val_end"), 1)
        .otherwise(2)
    )
    pos = (
        F.when(split == 0, F.col("_rank") + F.col("_off_train"))
        .when(split == 1, F.col("_rank") - F.col("_train_end") + F.col("_off_val"))
        .otherwise(F.col("_rank") - F.col("_val_end") + F.col("_off_test"))
    )
    n_shards = F.array(*[F.lit(max(plan["shards"][s], 1)) for s in SPLITS])
    first = F.array(*[F.lit(plan["first_part"][s]) for s in SPLITS])
    part = F.element_at(first, split + 1) + F.pmod(pos, F.element_at(n_shards, split + 1))
    final = ranked.select(
        *features,
        LABEL_INDEX_COLUMN,
        "_h",
        "_h2",
        split.alias("_split"),
        pos.alias("_pos"),
        part.cast("int").alias("_part"),
    )
    final = final.persist()
    try:
        stats_row = (
            final.where(F.col("_split") == 0)
            .agg(
                *[F.avg(c).alias(f"m_{i}") for i, c in enumerate(features)],
                *[F.stddev_pop(c).alias(f"s_{i}") for i, c in enumerate(features)],
            )
            .collect()[0]
        )
        mean = [float(stats_row[f"m_{i}"]) for i in range(len(features))]
        std = [float(stats_row[f"s_{i}"]) for i in range(len(features))]
        std = [s if s > 0 and math.isfinite(s) else 1.0 for s in std]
        phases.done("split_standardize")
        total_parts = plan["total_parts"]
        paths = plan["paths"]
        for s in SPLITS:
            (out / s).mkdir(parents=True, exist_ok=True)
        written = (
            final.select("_part", "_split", "_pos", *features, LABEL_INDEX_COLUMN)
            .repartition(total_parts, "_part")
            .sortWithinPartitions("_part", "_pos")
            .mapInArrow(
                _shard_writer(str(out), paths, features), "part int, rows long, sha256 string"
            )
            .collect()
        )
        shard_info = {int(r["part"]): (int(r["rows"]), r["sha256"]) for r in written}
        phases.done("tfrecord")
        split_names = F.array(*[F.lit(s) for s in SPLITS])
        (
            final.select(
                *features,
                LABEL_INDEX_COLUMN,
                F.element_at(split_names, F.col("_split") + 1).alias("split"),
                "_part",
                "_pos",
            )
            .repartition(total_parts, "_part")
            .sortWithinPartitions("_part", "_pos")
            .drop("_part", "_pos")
            .write.partitionBy("split")
            .parquet(str(out / "parquet"))
        )
        phases.done("parquet")
    finally:
        final.unpersist()
    for s in SPLITS:
        hive = out / "parquet" / f"split={s}"
        if hive.exists():
            hive.rename(out / "parquet" / s)
        else:
            (out / "parquet" / s).mkdir(parents=True)

    manifest_splits = {}
    for s in SPLITS:
        shards = []
        for p in range(plan["first_part"][s], plan["first_part"][s] + plan["shards"][s]):
            rows, digest = shard_info[p]
            shards.append({"path": paths[p], "rows": rows, "sha256": digest})
        manifest_splits[s] = {"rows": plan["rows"][s], "shards": shards, "parquet": f"parquet/{s}"}
        if sum(sh["rows"] for sh in shards) != plan["rows"][s]:
            raise RuntimeError(
                f"split {s}: shards hold {sum(sh['rows'] for sh in shards)} rows, "
                f"expected {plan['rows'][s]}"
            )
    preprocessing = {"type": "standardize", "feature_columns": features, "mean": mean, "std": std}
    write_json_atomic(out / PREPROCESSING_FILE, preprocessing)
    write_json_atomic(out / SCHEMA_FILE, schema.to_dict())
    manifest = {
        "feature_columns": features,
        "label_column": schema.label_column,
        "classes": classes,
        "num_features": len(features),
        "num_classes": len(classes),
        "preprocessing": PREPROCESSING_FILE,
        "schema": SCHEMA_FILE,
        "seed": seed,
        "window_seconds": window_seconds,
        "quarantine": QUARANTINE_DIR,
        "splits": manifest_splits,
    }
    summary = {
        "rows_in": rows_in,
        "rows_good": rows_good,
        "rows_bad": rows_bad,
        "bad_by_reason": bad_by_reason,
        "bad_fraction": round(bad_fraction, 6),
        "examples": sum(plan["rows"].values()),
        "rows_per_split": dict(plan["rows"]),
        "rows_per_class": {classes[k]: v for k, v in sorted(per_class.items())},
        "num_features": len(features),
        "num_classes": len(classes),
        "feature_columns": features,
        "classes": classes,
        "label_column": schema.label_column,
        "shards": {s: len(manifest_splits[s]["shards"]) for s in SPLITS},
        "window_seconds": window_seconds,
        "phase_seconds": phases.seconds,
        **profile,
    }
    return summary, manifest


# The phases of an ETL run, in order, as the summary's phase_seconds names them.
ETL_PHASES = (
    "read_classify_profile",
    "quarantine",
    "labels",
    "split_standardize",
    "tfrecord",
    "parquet",
)


class _Phases:
    """Wall time of each ETL phase, for the summary and the progress line."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def done(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._last, 3)
        self._last = now
        report_progress(len(self.seconds), len(ETL_PHASES), name)


def _profile_columns(frame) -> list[str]:
    return [c for c in frame.columns if not c.startswith("_")]


def _profile_aggs(frame, schema: Schema, is_good, F) -> list:
    """approx_count_distinct per input column, min/max/mean per feature, over good rows."""
    aggs = [
        F.approx_count_distinct(F.when(is_good, F.col(c))).alias(f"d_{i}")
        for i, c in enumerate(_profile_columns(frame))
    ]
    for i, c in enumerate(schema.feature_columns):
        value = F.when(is_good, F.col(c))
        aggs += [F.min(value).alias(f"min_{i}"), F.max(value).alias(f"max_{i}")]
        aggs.append(F.avg(value).alias(f"avg_{i}"))
    return aggs


def _profile(row, frame, schema: Schema) -> dict:
    """The profile figures of the summary from the aggregated row."""
    return {
        "approx_distinct": {c: int(row[f"d_{i}"]) for i, c in enumerate(_profile_columns(frame))},
        "feature_profile": {
            c: {
                "min": float(row[f"min_{i}"]),
                "max": float(row[f"max_{i}"]),
                "mean": float(row[f"avg_{i}"]),
            }
            for i, c in enumerate(schema.feature_columns)
        },
    }


def _empty_quarantine(directory: Path) -> None:
    """Writes an empty quarantine table (same columns) without a Spark job."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory.mkdir(parents=True)
    fields = [(n, pa.string()) for n in ("raw_line", "source_file", "reason", "detail")]
    pq.write_table(
        pa.table({n: [] for n, _ in fields}, schema=pa.schema(fields)),
        directory / "part-00000.parquet",
    )


def _sorted_labels(labels) -> list[str]:
    """Label values in class-id order: numerically when all are numbers, else as text."""
    try:
        return sorted(labels, key=lambda v: (float(v), v))
    except ValueError:
        return sorted(labels)


def _split_plan(per_class: dict[int, int], classes, fractions, rows_per_shard, min_shards) -> dict:
    """Per-class split boundaries, shard counts and shard paths, computed on the driver."""
    rows = dict.fromkeys(SPLITS, 0)
    cuts = {}
    for k in sorted(per_class):
        n = per_class[k]
        n_val = round(n * fractions[1])
        n_test = round(n * fractions[2])
        n_train = n - n_val - n_test
        cuts[k] = (n_train, n_val, n_test)
    offsets = {}
    for k in sorted(per_class):
        offsets[k] = tuple(rows[s] for s in SPLITS)
        for s, n in zip(SPLITS, cuts[k], strict=True):
            rows[s] += n
    for s in ("train", "test"):
        if rows[s] == 0:
            raise BadDataError(f"too few good rows ({sum(per_class.values())}) for a {s} split")
    bounds = [(k, cuts[k][0], cuts[k][0] + cuts[k][1], *offsets[k]) for k in sorted(per_class)]
    shards, first_part, paths = {}, {}, []
    for s in SPLITS:
        wanted = max(min_shards, math.ceil(rows[s] / max(rows_per_shard, 1)))
        shards[s] = min(wanted, rows[s])
        first_part[s] = len(paths)
        count = shards[s]
        paths += [f"{s}/part-{i:05d}-of-{count:05d}.tfrecord" for i in range(count)]
    return {
        "rows": rows,
        "bounds": bounds,
        "shards": shards,
        "first_part": first_part,
        "paths": paths,
        "total_parts": max(len(paths), 1),
    }


def main(argv: list[str] | None = None) -> int:
    """Runs the ETL as a Spark application (``spark-submit etl.py --output-dir ...``).

    This is the main application file of the SparkApplication the component submits in
    ``spark-operator`` mode; it uses the session spark-submit configured.
    """
    import argparse

    p = argparse.ArgumentParser(prog="kfp-edge-etl")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--options", default="{}", help="JSON object of run_etl keyword arguments")
    args = p.parse_args(argv)
    from pyspark.sql import SparkSession

    options = json.loads(args.options)
    spark = SparkSession.builder.getOrCreate()
    summary = run_etl(args.output_dir, spark=spark, **options)
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
