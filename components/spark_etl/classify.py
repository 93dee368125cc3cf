"""Classification phase of the ETL: each raw row gets the first reason it is bad, or none.

Each field is parsed once, in one typed projection; one CASE over the typed columns then gives
``_reason`` and ``_detail`` together (Spark does not share subexpressions across CASE branches,
so nothing is parsed inside the CASE). The reasons, in order: ``wrong_field_count``,
``missing_value``, ``unparsable``, ``non_finite`` (NaN, inf, or beyond the float32 range the
TFRecord holds), ``unknown_label`` (not in the declared classes), ``duplicate_id`` (when an id
column is declared: of the good rows sharing an id, the one with the smallest row hash
``xxhash64(raw line)`` is kept, so the choice depends neither on partitioning nor on the seed;
of identical lines, the first read). Duplicates are found on the cached classified rows by
:func:`duplicate_tags` (no shuffle of whole rows) and marked by :func:`mark_duplicates`.
Labels are trimmed of surrounding white space.
"""

from __future__ import annotations

from kfp_edge.spark_etl.reading import BYPASS_PARTIAL_AGGREGATION, ROW_TAG, scoped_conf
from kfp_edge.spark_etl.schema import BAD_ROW_REASONS, Schema

FLOAT32_MAX = 3.4028234663852886e38
ROW_HASH = "_rh"


def required_columns(schema: Schema) -> list[str]:
    """Features, label and the declared id, time and device columns, without repeats."""
    roles = [c for c in (schema.id_column, schema.time_column, schema.device_column) if c]
    return list(dict.fromkeys([*schema.feature_columns, schema.label_column, *roles]))


def _checks(schema: Schema, required: list[str]):
    """``(condition, detail, reason)`` in check order, over the ``_t_<name>`` typed columns."""
    from pyspark.sql import functions as F

    def typed(name):
        return F.col(f"_t_{name}")

    expected = len(schema.names)
    checks = [
        (
            F.col("_nfields") != expected,
            F.concat(F.col("_nfields").cast("string"), F.lit(f" fields, expected {expected}")),
            "wrong_field_count",
        ),
    ]
    checks += [(F.col(f"_e_{n}"), F.lit(n), "missing_value") for n in required]
    checks += [
        (typed(n).isNull(), F.lit(n), "unparsable")
        for n in required
        if schema.type_of(n) != "string"
    ]
    checks += [
        (F.isnan(typed(n)) | (F.abs(typed(n)) > FLOAT32_MAX), F.lit(n), "non_finite")
        for n in schema.feature_columns
    ]
    if schema.classes:
        label = typed(schema.label_column)
        checks.append((~label.isin(schema.classes), F.lit(schema.label_column), "unknown_label"))
    return checks


def classify(raw, schema: Schema):
    """Adds ``_reason`` and ``_detail`` (null for good rows), typed columns and the row hash.

    Duplicate ids are not marked here (that needs the whole input, see
    :func:`duplicate_tags`).

    Args:
        raw: Rows from :mod:`kfp_edge.spark_etl.reading` (string columns, ``_raw``,
            ``_source``, ``_tag``, ``_nfields``).
        schema: The input schema.

    Returns:
        ``(frame, required)``: columns ``_raw``, ``_source``, ``_tag``, ``_reason``,
        ``_detail``, ``_rh`` and the typed ``required`` columns.
    """
    from pyspark.sql import functions as F

    required = required_columns(schema)
    typed = []
    for name in required:
        text = F.trim(F.col(name))
        value = text if schema.type_of(name) == "string" else text.try_cast(schema.type_of(name))
        empty = F.col(name).isNull() | (text == "")
        typed += [value.alias(f"_t_{name}"), empty.alias(f"_e_{name}")]
    frame = raw.select("_raw", "_source", ROW_TAG, "_nfields", *typed)  # each field parsed once
    outcome = None
    for cond, detail, reason in _checks(schema, required):
        value = F.struct(F.lit(reason).alias("reason"), detail.cast("string").alias("detail"))
        outcome = F.when(cond, value) if outcome is None else outcome.when(cond, value)
    frame = frame.select(
        "_raw",
        "_source",
        ROW_TAG,
        outcome.alias("_outcome"),
        F.xxhash64("_raw").alias(ROW_HASH),
        *[F.col(f"_t_{n}").alias(n) for n in required],
    ).select(
        "_raw",
        "_source",
        ROW_TAG,
        F.col("_outcome.reason").alias("_reason"),
        F.col("_outcome.detail").alias("_detail"),
        ROW_HASH,
        *required,
    )
    return frame, required


def duplicate_tags(frame, ident: str):
    """The ``_tag`` of each good row whose id a good row with a smaller row hash has.

    Without shuffling whole rows: one aggregation of the id hashes (8 bytes a row) finds the ids
    seen more than once; only their rows are ranked by ``(_rh, _tag)`` (the tag breaks ties of
    identical lines). Run it on a cached frame. Nearly every id hash is distinct, so a map-side
    partial count reduces nothing and only costs: the aggregation is planned without it
    (Spark's ``bypassPartialAggregation``, for this job alone; 10M rows: 5.9 s instead of 10.0).

    Args:
        frame: Classified rows (:func:`classify`) with ``_tag``, ``_rh`` and the id column.
        ident: The id column.

    Returns:
        A persisted DataFrame of one column ``_tag``, already built (the caller unpersists it).
    """
    from pyspark import StorageLevel
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    good = frame.where(F.col("_reason").isNull()).select(
        ROW_TAG, ROW_HASH, ident, F.xxhash64(ident).alias("_ih")
    )
    repeated = good.groupBy("_ih").count().where("count > 1").select("_ih")
    rows = good.join(F.broadcast(repeated), "_ih")
    rank = F.row_number().over(Window.partitionBy(ident).orderBy(ROW_HASH, ROW_TAG))
    tags = rows.select(ROW_TAG, rank.alias("_rank")).where("_rank > 1").select(ROW_TAG)
    with scoped_conf(frame.sparkSession, {BYPASS_PARTIAL_AGGREGATION: "true"}):
        tags = tags.persist(StorageLevel.MEMORY_AND_DISK)  # planned here
        tags.count()  # and built here
    return tags


def mark_duplicates(frame, tags, ident: str):
    """``frame`` with the rows of ``tags`` (:func:`duplicate_tags`) marked ``duplicate_id``."""
    from pyspark.sql import functions as F

    marks = F.broadcast(tags.select(ROW_TAG, F.lit(True).alias("_dup")))
    dup = F.col("_dup").isNotNull()
    columns = [
        F.when(dup, F.lit("duplicate_id")).otherwise(F.col("_reason")).alias("_reason")
        if c == "_reason"
        else F.when(dup, F.lit(ident)).otherwise(F.col("_detail")).alias("_detail")
        if c == "_detail"
        else F.col(c)
        for c in frame.columns
    ]
    return frame.join(marks, ROW_TAG, "left").select(*columns)


REASONS = BAD_ROW_REASONS
