"""Windowing phase of the ETL: per device and time window, the aggregates of each feature.

The definition is :class:`kfp_edge.features.WindowSpec`, shared with the device side
(:func:`kfp_edge.features.window_features` computes the same rows from raw readings with numpy).
Tumbling windows (hop = window) give each reading one window; sliding windows (hop < window)
give it ``window / hop`` of them. Each window keeps its device, start (epoch seconds), and its
label: the most frequent label of its readings, the smallest on a tie.
"""

from __future__ import annotations

from kfp_edge.features import COUNT_COLUMN, WindowSpec
from kfp_edge.spark_etl.schema import BadDataError, Schema

DEVICE = "_device"
START = "_start"


def window_spec(schema: Schema, window_seconds: float, hop_seconds: float, stats) -> WindowSpec:
    """The window definition of a schema.

    Raises:
        BadDataError: If the schema has no time column.
    """
    if not schema.time_column:
        raise BadDataError(
            "windowed aggregation needs a time column: name it with time_column or in the schema"
        )
    return WindowSpec(
        feature_columns=tuple(schema.feature_columns),
        window_seconds=float(window_seconds),
        hop_seconds=float(hop_seconds or 0.0),
        stats=tuple(stats),
        time_column=schema.time_column,
        device_column=schema.device_column,
    )


def seconds_of(schema: Schema, column: str):
    """A time column as float epoch seconds (``unix_micros / 1e6`` for timestamps)."""
    from pyspark.sql import functions as F

    if schema.type_of(column) == "timestamp":
        return F.unix_micros(F.col(column)) / 1e6
    return F.col(column).cast("double")


def windowed(good, schema: Schema, spec: WindowSpec):
    """Window aggregates of the good rows.

    Args:
        good: Good rows with typed feature, label, time and (optional) device columns.
        schema: The input schema.
        spec: The window definition.

    Returns:
        A frame with ``_device``, ``_start`` (float seconds), the ``spec.output_columns`` and
        the label column.
    """
    from pyspark.sql import functions as F

    t = seconds_of(schema, spec.time_column)
    last = F.floor(t / spec.hop).cast("long")
    first = (F.floor((t - spec.window_seconds) / spec.hop) + 1).cast("long")
    if spec.hop == spec.window_seconds:
        window_id = last
    else:
        window_id = F.explode(F.sequence(first, last))
    device = F.col(spec.device_column).cast("string") if spec.device_column else F.lit("")
    rows = good.select(
        device.alias(DEVICE),
        window_id.alias("_window"),
        *spec.feature_columns,
        schema.label_column,
    )
    makers = {"mean": F.avg, "std": F.stddev_pop, "min": F.min, "max": F.max}
    aggs = [
        makers[s](c).cast("double").alias(f"{c}_{s}")
        for c in spec.feature_columns
        for s in spec.stats
        if s != "count"
    ]
    if "count" in spec.stats:
        aggs.append(F.count(F.lit(1)).cast("double").alias(COUNT_COLUMN))
    aggs.append(F.mode(schema.label_column, True).alias(schema.label_column))
    frame = rows.groupBy(DEVICE, "_window").agg(*aggs)
    return frame.select(
        DEVICE,
        (F.col("_window") * F.lit(spec.hop)).alias(START),
        *spec.output_columns,
        schema.label_column,
    )
