"""The Spark ETL: messy CSV or Parquet in; quarantine, clean leakage-free splits, TFRecord out.

The phases, each a module testable on a tiny DataFrame, all in Spark (no rows collected to the
driver):

1. **Read** (:mod:`.reading`): CSV lines parsed once, or typed Parquet columns.
2. **Classify** (:mod:`.classify`): the first reason a row is bad, in one typed projection and
   one CASE; profile (:mod:`.profile`) in the same pass. Bad rows go to ``quarantine/``; more
   than ``max_bad_fraction`` fails the step (the quarantine is published for inspection).
3. **Window** (:mod:`.windowing`, optional): per device, tumbling or sliding windows of the
   time column, the aggregates :mod:`kfp_edge.features` defines for the device side too.
4. **Split** (:mod:`.split`): ``row``, ``group`` (whole devices) or ``time`` (per device, the
   latest part is test).
5. **Write** (:mod:`.writing`): one shuffle by shard feeds the TFRecord shards and the Parquet
   splits; ``preprocessing.json`` (train mean and std), ``schema.json``, ``etl_summary.json``
   and ``manifest.json`` (see :mod:`kfp_edge.dataset`) into a staging directory published by
   one rename.

Timestamps without an offset are read as UTC: the session time zone is pinned to UTC for the
run (and restored after), so the same input and seed give byte-identical shards on any machine.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import tempfile
import time
from pathlib import Path

from kfp_edge.dataset import LABEL_INDEX_COLUMN, MANIFEST_FILE, PREPROCESSING_FILE, SPLITS
from kfp_edge.features import WINDOW_STATS
from kfp_edge.progress import report_progress
from kfp_edge.spark_etl import reading, split, writing
from kfp_edge.spark_etl.classify import classify, duplicate_tags, mark_duplicates
from kfp_edge.spark_etl.profile import device_counts, device_summary, first_pass
from kfp_edge.spark_etl.schema import (
    BAD_ROW_REASONS,
    ROLE_KEYS,
    BadDataError,
    load_schema,
    schema_from_dict,
    with_roles,
)
from kfp_edge.spark_etl.windowing import DEVICE, START, seconds_of, window_spec, windowed
from kfp_edge.workspace import write_json_atomic

__all__ = ["BadDataError", "REASONS", "create_session", "run_etl", "main"]

REASONS = BAD_ROW_REASONS
DEFAULT_SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
SENSOR_DEFAULT_ROWS = 20_000
SENSOR_DEFAULT_WINDOW_SECONDS = 20.0
SCHEMA_FILE = "schema.json"
SUMMARY_FILE = "etl_summary.json"
QUARANTINE_DIR = writing.QUARANTINE_DIR
GIVEN_TEST = "_given_test"  # a row of test_path
create_session = reading.create_session


def run_etl(output_dir: str, *, spark=None, driver_memory: str = "2g", **options) -> dict:
    """Runs the ETL and writes ``output_dir`` in the data contract of :mod:`kfp_edge.dataset`.

    Args:
        output_dir: Output directory; must not exist, be empty, or be the unfinished output of
            an earlier attempt. If it holds a finished output of the same options, that
            output's summary is returned and nothing is written (a retried step).
        spark: A SparkSession; ``None`` uses the active one, or creates a ``local[*]`` one
            and stops it at the end.
        driver_memory: Driver memory of the session created when ``spark`` is None.
        **options: The ETL options, see :class:`EtlOptions`.

    Returns:
        The summary: ``rows_in``, ``rows_good``, ``rows_bad``, ``bad_by_reason``,
        ``bad_fraction``, ``rows_per_split``, ``examples`` (after windowing), ``split_by``,
        ``groups_per_split``, ``num_features``, ``num_classes``, ``feature_columns``,
        ``classes``, ``approx_distinct``, ``feature_profile`` (with approximate quantiles),
        ``devices`` and ``rows_per_device``, ``shards``, ``seconds``, ``source``.

    Raises:
        BadDataError: Empty or header-only input, missing label column, too many bad rows.
        FileExistsError: If ``output_dir`` holds other files.
        FileNotFoundError: If the input does not exist.
        ValueError: On a bad option (naming it).
    """
    opts = EtlOptions(**options)
    given = opts.as_dict()  # before the defaults the input fills in (label, sensor window)
    started = time.perf_counter()
    out = Path(output_dir)
    done = _finished(out, given)
    if done is not None:
        return done
    staging = writing.staging_dir(out)
    try:
        with tempfile.TemporaryDirectory(prefix=f".{out.name}-input-", dir=out.parent) as tmp:
            local, schema, source = _stage_input(opts, Path(tmp))
            test_local = _stage_test(opts, Path(tmp))
            summary, manifest = _with_session(
                spark,
                driver_memory,
                lambda s: _run(s, (local, test_local), schema, staging, out, opts),
            )
    except BaseException as exc:
        if getattr(exc, "publish_quarantine", False):
            writing.publish(staging, out)  # the quarantine, for the user to look at
        else:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    summary["source"] = manifest["source"] = source
    summary["options"] = given
    summary["seconds"] = round(time.perf_counter() - started, 3)
    write_json_atomic(staging / SUMMARY_FILE, summary)
    write_json_atomic(staging / MANIFEST_FILE, manifest)
    writing.publish(staging, out)
    return summary


@dataclasses.dataclass
class EtlOptions:
    """The ETL's options, checked (keyword arguments of :func:`run_etl`).

    Attributes:
        dataset: ``iris`` (scikit-learn's copy) or ``sensor`` (the synthetic generator);
            ignored when ``input_path`` is given.
        input_path: A CSV or Parquet file or directory, local or ``s3://bucket/prefix``.
        test_path: Labelled held-out rows of the same columns and format (a file or directory,
            local or ``s3://``), cleaned like the input: they alone are the test split, and the
            input is split into train and validation in the ratio of their fractions.
        label_column: The label column of ``input_path`` (required with it unless the schema
            file names it).
        seed: Seed of the split (same input and seed: byte-identical shards).
        max_bad_fraction: Fail when more than this fraction of the rows is quarantined.
        schema_path: Declared schema (YAML or JSON); empty to infer one.
        id_column: Unique id column (duplicates quarantined), without a schema file.
        time_column: Time column (needed by windows and ``split_by=time``).
        device_column: Device or session column (windows per device, ``split_by=group``).
        header: Whether CSV files start with a header line (without one, a schema is needed).
        delimiter: CSV field delimiter.
        quote: CSV quote character (doubled inside a quoted field to escape it).
        window_seconds: Window per device; ``None``: 20 s for ``sensor``, else off; 0: off.
        hop_seconds: Distance between window starts; 0: tumbling (= ``window_seconds``).
        window_stats: Comma-separated window statistics among mean, std, min, max, count.
        split_by: ``auto`` (``group`` with a device column, else ``row``), ``row``, ``group``
            or ``time``.
        split_fractions: Train, validation and test fractions.
        rows_per_shard: Target rows per TFRecord shard.
        min_shards: Minimum shards per split (when the split has that many rows).
        sensor_rows: Rows generated for ``dataset="sensor"``.
    """

    dataset: str = "iris"
    input_path: str = ""
    test_path: str = ""
    label_column: str = ""
    seed: int = 42
    max_bad_fraction: float = 0.05
    schema_path: str = ""
    id_column: str = ""
    time_column: str = ""
    device_column: str = ""
    header: bool = True
    delimiter: str = ","
    quote: str = '"'
    window_seconds: float | None = None
    hop_seconds: float = 0.0
    window_stats: str = ",".join(WINDOW_STATS)
    split_by: str = "auto"
    split_fractions: tuple[float, float, float] = DEFAULT_SPLIT_FRACTIONS
    rows_per_shard: int = 100_000
    min_shards: int = 2
    sensor_rows: int = SENSOR_DEFAULT_ROWS

    def __post_init__(self):
        given = self.split_fractions
        self.split_fractions = tuple(float(f) for f in given)
        if (
            len(self.split_fractions) != 3
            or abs(sum(self.split_fractions) - 1) > 1e-9
            or min(self.split_fractions) < 0
        ):
            raise ValueError(
                f"split_fractions must be three non-negative numbers summing to 1, got {given}"
            )
        if not 0 <= self.max_bad_fraction <= 1:
            raise ValueError(f"max_bad_fraction must be in [0, 1], got {self.max_bad_fraction}")
        if not self.delimiter or self.delimiter == self.quote:
            raise ValueError(
                "delimiter must be one or more characters other than the quote, "
                f"got {self.delimiter!r}"
            )
        unknown = [s for s in self.stats if s not in WINDOW_STATS]
        if unknown:
            raise ValueError(f"unknown window statistics {unknown}; choose from {WINDOW_STATS}")
        if self.hop_seconds < 0 or (self.window_seconds or 0) < 0:
            raise ValueError("window_seconds and hop_seconds must not be negative")
        if self.split_by not in ("auto", "", *split.SPLIT_METHODS):
            raise ValueError(f"split_by must be auto, row, group or time, got {self.split_by!r}")

    @property
    def stats(self) -> tuple[str, ...]:
        """The window statistics, in order."""
        return tuple(s.strip() for s in self.window_stats.split(",") if s.strip())

    @property
    def roles(self) -> dict:
        """The id, time and device columns given without a schema file."""
        return {k: getattr(self, k) for k in ROLE_KEYS if getattr(self, k)}

    def as_dict(self) -> dict:
        """The options as given (JSON-able), recorded in the summary."""
        data = dataclasses.asdict(self)
        data["split_fractions"] = list(self.split_fractions)
        return data


def _finished(out: Path, given: dict) -> dict | None:
    """The summary of a finished output of the same options (a retried step), else None."""
    summary_path = out / SUMMARY_FILE
    if not (out / MANIFEST_FILE).is_file() or not summary_path.is_file():
        return None
    summary = json.loads(summary_path.read_text())
    if summary.get("options") == json.loads(json.dumps(given)):
        return summary
    raise FileExistsError(
        f"{out}: output directory is not empty (a finished ETL of other options); "
        "nothing is overwritten"
    )


def _stage_input(opts: EtlOptions, tmp: Path):
    """The local input path, declared schema (or None) and source name."""
    schema = load_schema(opts.schema_path) if opts.schema_path else None
    if opts.input_path:
        if not opts.label_column and schema is None:
            raise ValueError("input_path needs label_column (or a schema naming it)")
        if schema is not None and opts.label_column and opts.label_column != schema.label_column:
            raise ValueError(
                f"label_column {opts.label_column!r} differs from the schema's "
                f"{schema.label_column!r} ({opts.schema_path})"
            )
        opts.label_column = opts.label_column or schema.label_column
        return _local(opts.input_path, tmp / "s3"), schema, opts.input_path
    if opts.dataset == "iris":
        local, declared = reading.iris_csv(tmp)
        return local, schema or declared, "iris"
    if opts.dataset == "sensor":
        from kfp_edge.spark_etl.datagen import generate_sensor_data

        info = generate_sensor_data(tmp / "sensor.csv", opts.sensor_rows, seed=opts.seed)
        if opts.window_seconds is None:
            opts.window_seconds = SENSOR_DEFAULT_WINDOW_SECONDS
        return Path(info["path"]), schema or schema_from_dict(info["schema"], "sensor"), "sensor"
    raise ValueError(f"unknown dataset {opts.dataset!r}: use iris, sensor or input_path")


def _stage_test(opts: EtlOptions, tmp: Path) -> Path | None:
    """The local copy of ``test_path`` (None without one)."""
    return _local(opts.test_path, tmp / "s3-test") if opts.test_path else None


def _local(path: str, download_dir: Path) -> Path:
    """A local path, or an ``s3://`` URI downloaded into ``download_dir``."""
    if path.startswith("s3://"):
        return reading.download_s3(path, download_dir)
    return Path(path)


def _with_session(spark, driver_memory: str, work):
    """Runs ``work(session)`` with :data:`reading.RUN_CONF` (UTC; split size), then restores."""
    if spark is None:
        from pyspark.sql import SparkSession

        spark = SparkSession.getActiveSession()  # reuse the caller's session, never stop it
    own = spark is None
    if own:
        spark = reading.create_session(driver_memory=driver_memory)
    try:
        with reading.scoped_conf(spark, reading.RUN_CONF):
            return work(spark)
    finally:
        if own:
            spark.stop()


def _read(spark, local: Path, test_local: Path | None, schema, opts: EtlOptions):
    """``(files, format, schema, raw rows, source names of the test files or None)``."""
    files = reading.list_files(local)
    fmt = reading.format_of(files)
    test_sources = None
    if test_local is not None:
        test_files = reading.list_files(test_local)
        test_fmt = reading.format_of(test_files)
        if test_fmt != fmt:
            raise BadDataError(
                f"{test_local}: test_path is {test_fmt}, the input is {fmt}; "
                "give both in one format"
            )
        test_sources = _source_names(spark, test_files, fmt)
        files = [*files, *test_files]
    schema, raw = _read_files(spark, files, fmt, schema, opts)
    return files, fmt, schema, raw, test_sources


def _source_names(spark, files: list[Path], fmt: str) -> list[str]:
    """The names Spark's ``input_file_name`` gives these files (the ``_source`` column)."""
    from pyspark.sql import functions as F

    paths = [str(f) for f in files]
    frame = spark.read.text(paths) if fmt == "csv" else spark.read.parquet(*paths)
    return [r[0] for r in frame.select(F.input_file_name()).distinct().collect()]


def _read_files(spark, files: list[Path], fmt: str, schema, opts: EtlOptions):
    """``(schema, raw rows)`` of the files."""
    if fmt == "csv":
        args = (opts.header, opts.delimiter, opts.quote)
        schema = reading.csv_schema(files, schema, opts.label_column, *args, roles=opts.roles)
        schema = with_roles(schema, opts.roles, str(files[0]))
        return schema, reading.raw_csv(spark, files, schema, *args)
    schema = schema or reading.parquet_schema(spark, files, opts.label_column)
    schema = with_roles(schema, opts.roles, str(files[0]))
    return schema, reading.raw_parquet(spark, files, schema)


def _run(spark, inputs: tuple, schema, staging: Path, out: Path, opts: EtlOptions):
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    phases = _Phases()
    files, fmt, schema, raw, test_sources = _read(spark, *inputs, schema, opts)
    classified, _ = classify(raw, schema)
    if test_sources is not None:  # before the good rows' file names are dropped
        classified = classified.withColumn(GIVEN_TEST, F.col("_source").isin(test_sources))
    cached = _keep_lines_of_bad_rows(classified, opts.seed).persist(StorageLevel.MEMORY_AND_DISK)
    persisted = [cached]
    try:
        rows = cached.count()  # built once here, not by the concurrent stages of the next jobs
        dups = None
        if schema.id_column:
            dups = duplicate_tags(cached, schema.id_column)
            persisted.append(dups)
            classified = mark_duplicates(cached, dups, schema.id_column)
        else:
            classified = cached
        counts = first_pass(classified, schema, rows)
        phases.done("read_classify_profile")
        bad = _bad_rows(cached, raw, dups, schema.id_column)
        counts = _check_bad_rows(counts, bad, files, staging, out, opts)
        phases.done("quarantine")
        good = classified.where("_reason IS NULL")
        examples, features, spec = _examples(good, schema, opts)
        if spec is not None:  # windows: an aggregation, kept for the split and the writers
            counts.update(device_counts(good, schema.device_column))  # else the split stats'
            examples = examples.persist(StorageLevel.MEMORY_AND_DISK)
            persisted.append(examples)
        summary, manifest = _split_and_write(
            spark, examples, features, schema, staging, opts, phases
        )
    finally:
        for frame in persisted:
            frame.unpersist()
    manifest["window"] = spec.to_dict() if spec else None
    if opts.test_path:
        manifest["split"]["test_path"] = opts.test_path
    per_device = summary.pop("rows_per_group")
    if spec is None and schema.device_column:  # an example a row: the split stats counted them
        counts.update(device_summary(per_device))
    summary.update(counts)
    summary.update(format=fmt, phase_seconds=phases.seconds, window=manifest["window"])
    write_json_atomic(staging / SCHEMA_FILE, schema.to_dict())
    return summary, manifest


def _keep_lines_of_bad_rows(classified, seed: int):
    """Adds the split hashes of each line (``_h``, ``_h2``) and drops good rows' raw lines.

    Only the quarantine needs the raw line; dropping it from good rows keeps the cached frame
    small (the few duplicates among them get theirs back by ``_tag``, see :func:`_bad_rows`).
    """
    from pyspark.sql import functions as F

    bad = F.col("_reason").isNotNull()
    return classified.select(
        *[
            F.when(bad, F.col(c)).alias(c) if c in ("_raw", "_source") else c
            for c in classified.columns
        ],
        F.xxhash64(F.lit(seed), "_raw").alias("_h"),
        F.xxhash64(F.lit(seed + 1), "_raw").alias("_h2"),
    )


def _bad_rows(cached, raw, dups, ident: str):
    """The quarantined rows: ``_raw``, ``_source``, ``_reason``, ``_detail``.

    The rows bad by themselves keep their line in the cached frame; the duplicates' lines are
    read again by their tags.
    """
    from pyspark.sql import functions as F

    columns = ["_raw", "_source", "_reason", "_detail"]
    bad = cached.where(F.col("_reason").isNotNull()).select(*columns)
    if dups is None:
        return bad
    again = reading.raw_lines_of(raw, dups).select(
        "_raw", "_source", F.lit("duplicate_id").alias("_reason"), F.lit(ident).alias("_detail")
    )
    return bad.unionByName(again)


def _check_bad_rows(counts, bad, files, staging: Path, out: Path, opts) -> dict:
    """Writes the quarantine and fails on too many bad rows; adds the good and bad counts."""
    rows_in, bad_by_reason = counts["rows_in"], counts["bad_by_reason"]
    rows_bad = sum(bad_by_reason.values())
    names = ", ".join(str(f) for f in files[:5]) + (" ..." if len(files) > 5 else "")
    if rows_in == 0:
        raise BadDataError(f"{names}: no data rows (header-only input)")
    parts = bad.sparkSession.sparkContext.defaultParallelism
    bad = bad if rows_bad else None
    writing.write_quarantine(bad, staging / QUARANTINE_DIR, parts)
    fraction = rows_bad / rows_in
    if fraction > opts.max_bad_fraction:
        samples = [
            f"{r['_source']}: {r['_reason']} ({r['_detail']}): {r['_raw'][:120]!r}"
            for r in bad.limit(5).collect()
        ]
        error = BadDataError(
            f"{names}: {rows_bad} of {rows_in} rows are bad ({fraction:.2%} > "
            f"max_bad_fraction {opts.max_bad_fraction:.2%}); by reason "
            f"{ {k: v for k, v in bad_by_reason.items() if v} }; quarantined rows in "
            f"{out / QUARANTINE_DIR}; first ones:\n  " + "\n  ".join(samples)
        )
        error.publish_quarantine = True
        raise error
    if rows_in == rows_bad:
        raise BadDataError(f"{names}: no good rows")
    counts.update(rows_good=rows_in - rows_bad, rows_bad=rows_bad, bad_fraction=round(fraction, 6))
    return counts


# The phases of an ETL run, in order, as the summary's phase_seconds names them.
ETL_PHASES = ("read_classify_profile", "quarantine", "labels_split", "write")


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


def _examples(good, schema, opts: EtlOptions):
    """The model's examples: ``(frame, feature columns, window spec or None)``.

    The frame has the features, the label, ``_h``/``_h2`` (the split hashes), ``_group`` and
    ``_time`` (for grouped and time splits) and the columns kept in the Parquet splits.
    """
    from pyspark.sql import functions as F

    seed = opts.seed
    window = opts.window_seconds or 0.0
    given = [F.col(GIVEN_TEST)] if GIVEN_TEST in good.columns else []
    if window > 0:
        spec = window_spec(schema, window, opts.hop_seconds, opts.stats)
        if given:  # the test rows' windows apart: no window mixes the two inputs
            train, test = (
                windowed(good.where(F.col(GIVEN_TEST) == flag), schema, spec).select(
                    "*", F.lit(flag).alias(GIVEN_TEST)
                )
                for flag in (False, True)
            )
            frame = train.unionByName(test)
        else:
            frame = windowed(good, schema, spec)
        key = F.concat_ws("|", DEVICE, F.col(START).cast("string"))
        keep = [
            F.col(DEVICE).alias(schema.device_column or "device"),
            F.col(START).alias("window_start"),
        ]
        group, t = F.col(DEVICE), F.col(START)
        features = spec.output_columns
    else:
        spec, frame, key = None, good, None
        keep = [F.col(c) for c in (schema.id_column, schema.device_column, schema.time_column) if c]
        group = F.col(schema.device_column).cast("string") if schema.device_column else F.lit("")
        t = seconds_of(schema, schema.time_column) if schema.time_column else F.lit(0.0)
        features = list(schema.feature_columns)
    examples = frame.select(
        *[F.col(c).cast("double").alias(c) for c in features],
        F.col(schema.label_column).cast("string").alias("_label"),
        F.xxhash64(F.lit(seed), key).alias("_h") if key is not None else "_h",
        F.xxhash64(F.lit(seed + 1), key).alias("_h2") if key is not None else "_h2",
        group.alias(split.GROUP),
        t.alias(split.TIME),
        *keep,
        *given,
    )
    return examples, features, spec


def _split_and_write(spark, examples, features, schema, staging: Path, opts, phases):
    from pyspark.sql import functions as F

    given_test = GIVEN_TEST in examples.columns
    test = examples.where(F.col(GIVEN_TEST)).drop(GIVEN_TEST) if given_test else None
    examples = examples.where(~F.col(GIVEN_TEST)).drop(GIVEN_TEST) if given_test else examples
    buckets = split.bucket_counts(examples, "_label")
    label_counts = {label: sum(n for _, n in cells) for label, cells in buckets.items()}
    test_counts = _label_counts(test) if given_test else {}
    classes = list(schema.classes) or _sorted_labels({**test_counts, **label_counts})
    per_class = {classes.index(label): n for label, n in label_counts.items()}
    label_index = F.array_position(F.array(*[F.lit(c) for c in classes]), F.col("_label")) - 1
    keep = [c for c in examples.columns if not c.startswith("_") and c not in features]

    def indexed(frame):
        return frame.select("*", label_index.cast("long").alias(LABEL_INDEX_COLUMN)).drop("_label")

    examples = indexed(examples)
    method = split.resolve_method(opts.split_by, schema.device_column)
    fractions = opts.split_fractions
    if given_test:  # test_path is the test split: the input gives train and validation
        total = fractions[0] + fractions[1]
        fractions = (fractions[0] / total, fractions[1] / total, 0.0)
    if method == "row":
        by_class = {classes.index(label): cells for label, cells in buckets.items()}
        assigned, per_split = split.row_split(spark, examples, per_class, fractions, by_class)
    elif method == "group":
        assigned, per_split = split.group_split(spark, examples, fractions, opts.seed)
    else:
        sliding = bool(opts.window_seconds) and 0 < opts.hop_seconds < opts.window_seconds
        assigned, per_split = split.time_split(
            spark, examples, fractions, opts.window_seconds or 0.0, sliding
        )
    if per_split is None:  # one small job: the plan needs the examples per split
        per_split = [0, 0, 0]
        for r in assigned.groupBy("_split").count().collect():
            per_split[int(r["_split"])] = int(r["count"])
    if given_test:
        test = indexed(test).select("*", F.lit(2).alias("_split"))
        assigned = assigned.unionByName(test.select(*assigned.columns))
        per_split[2] += sum(test_counts.values())
    rows = dict(zip(SPLITS, per_split, strict=True))
    for s in ("train", "test"):
        if rows[s] == 0:
            raise BadDataError(f"too few examples ({sum(rows.values())}) for a {s} split")
    phases.done("labels_split")
    plan = _shard_plan(rows, opts.rows_per_shard, opts.min_shards)
    group_column = schema.device_column if schema.device_column in keep else None
    written = _write(assigned, features, keep, plan, staging, len(classes), group_column)
    stats = _split_stats(written, plan, rows, features, classes)
    phases.done("write")
    return _outputs(
        stats, plan, written, features, classes, per_class, schema, method, staging, opts
    )


def _split_stats(written: dict, plan: dict, rows: dict, features, classes) -> dict:
    """Rows per split and class, groups and rows per group, train mean and std.

    Summed on the driver from the statistics each writer task returns with its shard (in
    shard order, so the same input gives the same floats).

    Raises:
        RuntimeError: If a split's shards hold other than its expected examples.
    """
    per_split_class = {s: dict.fromkeys(classes, 0) for s in SPLITS}
    groups = {s: set() for s in SPLITS}
    per_group: dict[str, int] = {}
    sums, squares = [0.0] * len(features), [0.0] * len(features)
    for s in SPLITS:
        held = 0
        for p in range(plan["first"][s], plan["first"][s] + plan["shards"][s]):
            if p not in written:
                continue
            held += written[p]["rows"]
            stats = written[p]["stats"]
            for k, n in enumerate(stats["per_class"]):
                per_split_class[s][classes[k]] += n
            for g, n in stats["per_group"].items():
                groups[s].add(g)
                per_group[g] = per_group.get(g, 0) + n
            if s == "train":
                sums = [a + b for a, b in zip(sums, stats["sums"], strict=True)]
                squares = [a + b for a, b in zip(squares, stats["squares"], strict=True)]
        if held != rows[s]:
            raise RuntimeError(f"split {s}: shards hold {held} rows, expected {rows[s]}")
    n_train = rows["train"]
    mean = [v / n_train for v in sums]
    var = [max(q / n_train - m * m, 0.0) for q, m in zip(squares, mean, strict=True)]
    std = [math.sqrt(v) if v > 0 and math.isfinite(v) else 1.0 for v in var]
    return {
        "rows": dict(rows),
        "rows_per_split_class": per_split_class,
        "groups": groups,
        "rows_per_group": per_group,
        "mean": mean,
        "std": std,
    }


def _shard_plan(rows: dict[str, int], rows_per_shard: int, min_shards: int) -> dict:
    """Shard ids per split (a split's shards are consecutive ids) and their file names."""
    shards, first, paths, parquet = {}, {}, [], []
    for s in SPLITS:
        wanted = max(min_shards, math.ceil(rows[s] / max(rows_per_shard, 1)))
        shards[s] = min(wanted, rows[s])
        first[s] = len(paths)
        for i in range(shards[s]):
            paths.append(f"{s}/part-{i:05d}.tfrecord")
            parquet.append(f"parquet/{s}/part-{i:05d}.parquet")
    return {"shards": shards, "first": first, "paths": paths, "parquet": parquet}


def _write(
    assigned, features, keep, plan, staging: Path, num_classes: int, group_column: str | None
) -> dict[int, dict]:
    """One shuffle by shard id; each task writes its TFRecord shard and Parquet file.

    ``group_column`` is the kept column holding the groups (the device column), or None.

    Returns:
        Per shard id: ``rows``, ``sha256`` and ``stats`` (see :func:`writing.shard_writer`).
    """
    from pyspark.sql import functions as F

    for s in SPLITS:
        (staging / s).mkdir(parents=True, exist_ok=True)
        (staging / "parquet" / s).mkdir(parents=True, exist_ok=True)
    if not plan["paths"]:
        return {}
    count = F.element_at(
        F.array(*[F.lit(max(plan["shards"][s], 1)) for s in SPLITS]), F.col("_split") + 1
    )
    first = F.element_at(F.array(*[F.lit(plan["first"][s]) for s in SPLITS]), F.col("_split") + 1)
    part = (first + F.pmod(F.col("_h2"), count)).cast("int")
    writer = writing.shard_writer(
        str(staging), plan["paths"], plan["parquet"], features, keep, num_classes, group_column
    )
    columns = [*features, LABEL_INDEX_COLUMN, *keep, "_h", "_h2"]
    written = (
        assigned.select(part.alias("_part"), *columns)
        .repartitionById(len(plan["paths"]), "_part")
        .sortWithinPartitions("_h", "_h2")
        .drop("_h", "_h2")  # sorted by them; the writers do not need them
        .mapInArrow(writer, writing.WRITTEN_SCHEMA)
        .collect()
    )
    return {
        int(r["part"]): {
            "rows": int(r["rows"]),
            "sha256": r["sha256"],
            "stats": json.loads(r["stats"]),
        }
        for r in written
    }


def _outputs(stats, plan, written, features, classes, per_class, schema, method, staging, opts):
    """Writes preprocessing.json; returns the summary and the manifest."""
    manifest_splits = {}
    for s in SPLITS:
        shards = [
            {"path": plan["paths"][p], "rows": written[p]["rows"], "sha256": written[p]["sha256"]}
            for p in range(plan["first"][s], plan["first"][s] + plan["shards"][s])
            if p in written
        ]
        manifest_splits[s] = {"rows": stats["rows"][s], "shards": shards, "parquet": f"parquet/{s}"}
    preprocessing = {
        "type": "standardize",
        "feature_columns": features,
        "mean": stats["mean"],
        "std": stats["std"],
    }
    write_json_atomic(staging / PREPROCESSING_FILE, preprocessing)
    groups = {s: sorted(stats["groups"][s]) for s in SPLITS}
    split_info = {"method": method, "fractions": list(opts.split_fractions), "seed": opts.seed}
    if schema.device_column:
        split_info["groups"] = groups
    manifest = {
        "feature_columns": features,
        "label_column": schema.label_column,
        "classes": classes,
        "num_features": len(features),
        "num_classes": len(classes),
        "preprocessing": PREPROCESSING_FILE,
        "schema": SCHEMA_FILE,
        "seed": opts.seed,
        "window_seconds": opts.window_seconds or 0.0,
        "quarantine": QUARANTINE_DIR,
        "split": split_info,
        "splits": manifest_splits,
    }
    summary = {
        "examples": sum(stats["rows"].values()),
        "rows_per_split": dict(stats["rows"]),
        "rows_per_split_class": stats["rows_per_split_class"],
        "rows_per_class": {classes[k]: v for k, v in sorted(per_class.items())},
        "split_by": method,
        "groups_per_split": {s: len(groups[s]) for s in SPLITS} if schema.device_column else {},
        "num_features": len(features),
        "num_classes": len(classes),
        "feature_columns": features,
        "classes": classes,
        "label_column": schema.label_column,
        "shards": {s: len(manifest_splits[s]["shards"]) for s in SPLITS},
        "window_seconds": opts.window_seconds or 0.0,
        "rows_per_group": stats["rows_per_group"],
    }
    return summary, manifest


def _label_counts(frame) -> dict[str, int]:
    """Examples per label value."""
    return {r["_label"]: int(r["count"]) for r in frame.groupBy("_label").count().collect()}


def _sorted_labels(labels) -> list[str]:
    """Label values in class-id order: numerically when all are numbers, else as text."""
    try:
        return sorted(labels, key=lambda v: (float(v), v))
    except ValueError:
        return sorted(labels)


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
