"""The ETL's data profile, by approximate counting where exact counts would cost a shuffle.

In one aggregation over the classified rows, next to the rows per quarantine reason:
``approx_count_distinct`` (HyperLogLog++) of each input column, min, max, mean and approximate
quantiles (``percentile_approx``, Greenwald-Khanna) of each feature over the good rows. Counts
per device come from a grouped count with map-side combining (one small shuffle of one row per
device and task).
"""

from __future__ import annotations

from kfp_edge.spark_etl.schema import BAD_ROW_REASONS, Schema

QUANTILES = (0.01, 0.25, 0.5, 0.75, 0.99)
QUANTILE_ACCURACY = 1_000  # relative rank error 1/1000
MAX_DEVICES_LISTED = 1000


def profile_columns(frame) -> list[str]:
    """The input columns of a classified frame (not the ``_`` bookkeeping ones)."""
    return [c for c in frame.columns if not c.startswith("_")]


def first_pass(classified, schema: Schema) -> dict:
    """Rows per reason and the profile of the good rows, in one Spark job.

    Returns:
        ``{"rows_in", "bad_by_reason", "approx_distinct", "feature_profile"}``.
    """
    from pyspark.sql import functions as F

    good = F.col("_reason").isNull()
    columns = profile_columns(classified)
    aggs = [F.count(F.lit(1)).alias("rows_in")]
    aggs += [F.sum((F.col("_reason") == r).cast("long")).alias(r) for r in BAD_ROW_REASONS]
    aggs += [
        F.approx_count_distinct(F.when(good, F.col(c))).alias(f"d_{i}")
        for i, c in enumerate(columns)
    ]
    for i, c in enumerate(schema.feature_columns):
        value = F.when(good, F.col(c))
        aggs += [F.min(value).alias(f"min_{i}"), F.max(value).alias(f"max_{i}")]
        aggs += [F.avg(value).alias(f"avg_{i}")]
        aggs += [F.percentile_approx(value, list(QUANTILES), QUANTILE_ACCURACY).alias(f"q_{i}")]
    row = classified.agg(*aggs).collect()[0]
    features = {}
    for i, c in enumerate(schema.feature_columns):
        quantiles = row[f"q_{i}"] or []
        features[c] = {
            "min": _float(row[f"min_{i}"]),
            "max": _float(row[f"max_{i}"]),
            "mean": _float(row[f"avg_{i}"]),
            "approx_quantiles": {
                str(q): float(v) for q, v in zip(QUANTILES, quantiles, strict=False)
            },
        }
    return {
        "rows_in": int(row["rows_in"]),
        "bad_by_reason": {r: int(row[r] or 0) for r in BAD_ROW_REASONS},
        "approx_distinct": {c: int(row[f"d_{i}"]) for i, c in enumerate(columns)},
        "feature_profile": features,
    }


def device_counts(good, device_column: str) -> dict:
    """Good rows per device: ``{"devices", "rows_per_device"}`` (the largest first, capped)."""
    if not device_column:
        return {}
    rows = good.groupBy(device_column).count().collect()
    counts = sorted(((str(r[0]), int(r[1])) for r in rows), key=lambda kv: (-kv[1], kv[0]))
    return {
        "devices": len(counts),
        "rows_per_device": dict(counts[:MAX_DEVICES_LISTED]),
    }


def _float(value):
    return None if value is None else float(value)
