"""Reading phase of the ETL: input files, the Spark session, and raw rows as string columns.

CSV is read as text lines (BOM removed, blank and header lines dropped) and each line is parsed
once: split at the delimiter when it has no quote character (the common case, and the array's
size is its field count), else by Spark's own CSV parser (``from_csv``: delimiter, quoting) into
a struct, its fields counted after removing the quoted parts (Spark does not mark rows with too
few or too many fields as corrupt). The next projection unpacks the array or the struct.
Parquet columns are read typed. Quoted fields spanning lines are not supported.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path

from kfp_edge.spark_etl.schema import (
    BadDataError,
    Schema,
    infer_csv_schema,
    read_csv_head,
    schema_from_dict,
)

IRIS_COLUMNS = ("sepal_length", "sepal_width", "petal_length", "petal_width")
PARQUET_SUFFIXES = (".parquet", ".pq")
SESSION_TIME_ZONE = "UTC"
# Settings of the session for the run (restored after on a session passed in): timestamps
# without an offset are UTC; input splits of 32 MB, so that a task's cached rows (the ETL caches
# the classified rows once) stay small in a 2 GB heap, as on 10M-row inputs they must; the
# cached columns uncompressed (the doubles, hashes and ids barely compress: 7 % larger, built
# about 20 % faster).
RUN_CONF = {
    "spark.sql.session.timeZone": SESSION_TIME_ZONE,
    "spark.sql.files.maxPartitionBytes": str(32 << 20),
    "spark.sql.inMemoryColumnarStorage.compressed": "false",
}
# Row number of the scan (``monotonically_increasing_id``: partition and position in it), the
# same in every job over the same read frame; it finds a row's raw line again after the cached
# frame dropped it (see :func:`raw_lines_of`).
ROW_TAG = "_tag"


def list_files(path: Path) -> list[Path]:
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


def format_of(files: list[Path]) -> str:
    """``csv`` or ``parquet`` from the file suffixes; mixed inputs are refused."""
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


def iris_csv(directory: Path) -> tuple[Path, Schema]:
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


def session_conf(cores: int | None = None) -> dict[str, str]:
    """The Spark settings of the ETL's own session, for a machine of ``cores`` cores.

    Shuffles get four partitions a core and AQE does not coalesce them: its coalescing aims at
    Spark's default parallelism, and on 2 cores it merged the 4 partitions of the duplicate-id
    count into 3 tasks (a last wave on one core; bench_etl's max task skew 1.5, 1.05 without).

    The JVM (in local mode the driver runs the tasks) collects garbage with the throughput
    collector (``-XX:+UseParallelGC``) instead of Java 17's default G1: a batch job gains nothing
    from G1's short pauses and pays for its write barriers and concurrent threads, which on two
    cores take turns with the tasks. Measured with bench_etl at 10M rows in a 2 GB heap: the
    ETL took 89-106 s instead of 122-140 s.

    Args:
        cores: Cores of the machine; ``os.cpu_count()`` when None.
    """
    cores = cores or os.cpu_count() or 2
    return {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.shuffle.partitions": str(max(8, 4 * cores)),
        "spark.sql.adaptive.coalescePartitions.enabled": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.session.timeZone": SESSION_TIME_ZONE,
        "spark.driver.extraJavaOptions": "-XX:+UseParallelGC",
    }


BYPASS_PARTIAL_AGGREGATION = "spark.sql.execution.bypassPartialAggregation"


@contextlib.contextmanager
def scoped_conf(spark, settings: dict[str, str]):
    """Sets Spark SQL settings for the jobs planned inside the block, then restores them.

    Args:
        spark: The session.
        settings: Setting names and values.
    """
    previous = {key: spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def create_session(master: str = "local[*]", driver_memory: str = "2g", conf: dict | None = None):
    """Creates the local SparkSession the ETL uses when none is given (see :func:`session_conf`).

    The session time zone is UTC (timestamps without an offset are read as UTC), so the same
    input gives the same shards on every machine.

    Args:
        master: Spark master URL.
        driver_memory: Driver JVM heap (local mode: the only JVM).
        conf: Further Spark settings (e.g. the event log of a benchmark).
    """
    from pyspark.sql import SparkSession

    # Local mode: the Python workers must be this interpreter (with pyarrow and kfp_edge).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = SparkSession.builder.master(master).appName("kfp-edge-etl")
    settings = {**session_conf(), "spark.driver.memory": driver_memory, **(conf or {})}
    for key, value in settings.items():
        session = session.config(key, value)
    session = session.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def _header_lines(files: list[Path]) -> list[str]:
    lines = set()
    for f in files:
        with open(f, encoding="utf-8-sig", newline="") as fh:
            for line in fh:
                if line.strip():
                    lines.add(line.rstrip("\r\n"))
                    break
    return sorted(lines)


def _quoted_field_count(raw, delimiter: str, quote: str):
    """Fields of a line with quotes: delimiters outside the quoted parts, plus one."""
    from pyspark.sql import functions as F

    q, d = re.escape(quote), re.escape(delimiter)
    unquoted = F.regexp_replace(raw, f"{q}(?:[^{q}]|{q}{q})*{q}", "")
    return F.size(F.split(unquoted, d, -1))


def raw_csv(spark, files: list[Path], schema: Schema, header: bool, delimiter: str, quote: str):
    """CSV lines as string columns plus ``_raw``, ``_source``, ``_tag`` and ``_nfields``.

    Each line is parsed once: a line without the quote character is split at the delimiter
    (which also counts its fields); only a line with quotes goes through Spark's CSV parser
    (``from_csv``), its fields counted outside the quoted parts. ``_tag`` numbers the rows
    (see :data:`ROW_TAG`).
    """
    from pyspark.sql import functions as F

    lines = spark.read.text([str(f) for f in files])
    bom = F.col("value").startswith("\ufeff")  # compares bytes: no regex, no Java string a line
    value = F.when(bom, F.expr("substring(value, 2)")).otherwise(F.col("value"))
    lines = lines.select(value.alias("_raw"), F.input_file_name().alias("_source"))
    lines = lines.where(F.trim(F.col("_raw")) != "")
    if header:
        lines = lines.where(~F.col("_raw").isin(_header_lines(files)))
    ddl = ", ".join(f"`_c{i}` STRING" for i in range(len(schema.columns)))
    options = {"sep": delimiter, "quote": quote, "escape": quote, "mode": "PERMISSIVE"}
    raw, plain = F.col("_raw"), F.instr(F.col("_raw"), quote) == 0
    parsed = lines.select(
        "_raw",
        "_source",
        F.when(plain, F.split(raw, re.escape(delimiter), -1)).alias("_a"),
        F.when(~plain, _quoted_field_count(raw, delimiter, quote)).alias("_nq"),
        F.when(~plain, F.from_csv(raw, ddl, options)).alias("_p"),
    )  # one parse per line: the next projection only reads the array's or struct's fields
    is_plain = F.col("_a").isNotNull()
    return parsed.select(
        "_raw",
        "_source",
        F.monotonically_increasing_id().alias(ROW_TAG),
        F.when(is_plain, F.size("_a")).otherwise(F.col("_nq")).alias("_nfields"),
        *[
            F.when(is_plain, F.get("_a", i)).otherwise(F.col("_p")[f"_c{i}"]).alias(name)
            for i, name in enumerate(schema.names)
        ],
    )


def raw_lines_of(raw, tags):
    """``_raw`` and ``_source`` of the rows of ``raw`` whose ``_tag`` is in the frame ``tags``.

    One more scan of the input without parsing; ``tags`` is small (broadcast).
    """
    from pyspark.sql import functions as F

    lines = raw.select(ROW_TAG, "_raw", "_source")
    return lines.join(F.broadcast(tags.select(ROW_TAG)), ROW_TAG)


def raw_parquet(spark, files: list[Path], schema: Schema):
    """Parquet rows as string columns plus ``_raw`` (the row as JSON), ``_source``, ``_tag``."""
    from pyspark.sql import functions as F

    frame = spark.read.parquet(*[str(f) for f in files])
    missing = [n for n in schema.names if n not in frame.columns]
    if missing:
        raise BadDataError(f"{files[0]}: columns {missing} not found; columns are {frame.columns}")
    return frame.select(
        F.to_json(F.struct(*[F.col(n) for n in schema.names])).alias("_raw"),
        F.input_file_name().alias("_source"),
        F.monotonically_increasing_id().alias(ROW_TAG),
        F.lit(len(schema.names)).alias("_nfields"),
        *[F.col(n).cast("string").alias(n) for n in schema.names],
    )


def parquet_schema(spark, files: list[Path], label_column: str) -> Schema:
    """The schema of a Parquet input from its first file; the label is read as text."""
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


def csv_schema(files, schema, label_column, header, delimiter, quote, roles=None) -> Schema:
    """Checks every file's header against the declared schema, or infers one.

    Args:
        files: The CSV files.
        schema: The declared schema, or None to infer one from the first file with rows.
        label_column: The label column (for inference).
        header: Whether the files start with a header line.
        delimiter: Field delimiter.
        quote: Quote character.
        roles: ``id_column``, ``time_column``, ``device_column`` for an inferred schema.
    """
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
        first = with_rows[0]
        schema = infer_csv_schema(*heads[first], label_column, str(first), roles=roles)
    for f, (names, _) in heads.items():
        if names != schema.names:
            if schema.label_column not in names:
                raise BadDataError(
                    f"{f}: label column {schema.label_column!r} not found; columns are {names}"
                )
            raise BadDataError(f"{f}: header {names} does not match the schema {schema.names}")
    return schema
