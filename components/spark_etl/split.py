"""Split phase of the ETL: train, validation and test without leakage, scaling with executors.

Three methods (``split_by``):

- ``row``: each example by itself, stratified by label with exact per-class counts. Examples
  are ordered by their hash ``(_h, _h2)`` (seeded ``xxhash64`` of the raw line, or of device and
  window); per class the first 60 % go to train, the next 20 % to validation, the rest to test.
  No global sort: counts per (class, hash bucket) locate the boundary buckets, whose few keys
  are fetched to find the exact threshold keys; the split is then a comparison with them.
  Identical lines have the same hash and stay in one split.
- ``group``: each group (the device column: a device or a session) lands wholly in one split.
  Groups are dealt largest first (ties in seeded hash order) to the split whose per-class
  shortfall against its target is largest, so the split is stratified as far as the groups
  allow; train and test get at least one group each, validation too when there are three.
- ``time``: per device, the latest part of its time range is test and the part before it
  validation (fractions of the range). With sliding windows a window crossing a cut would share
  readings with the next split, so it is dropped (``dropped_at_cuts`` in the summary).

Each method only adds a ``_split`` column (0, 1, 2), no shuffle, and returns the examples per
split when it knows them without a pass over the data (``row`` and ``group``; ``time`` does not).
"""

from __future__ import annotations

import bisect
import hashlib
import math

from kfp_edge.dataset import LABEL_INDEX_COLUMN, SPLITS
from kfp_edge.spark_etl.schema import BadDataError

SPLIT_METHODS = ("row", "group", "time")
GROUP = "_group"
TIME = "_time"
BUCKET_BITS = 12


def resolve_method(split_by: str, device_column: str) -> str:
    """``auto`` (or empty) is ``group`` when a device column is known, else ``row``.

    Raises:
        ValueError: On an unknown method, or ``group``/``time`` without a device column.
    """
    method = split_by or "auto"
    if method == "auto":
        return "group" if device_column else "row"
    if method not in SPLIT_METHODS:
        raise ValueError(f"split_by must be auto, row, group or time, got {split_by!r}")
    if method == "group" and not device_column:
        raise ValueError("split_by=group needs a device column (device_column or the schema)")
    return method


def class_counts(per_class: dict[int, int], fractions) -> dict[int, tuple[int, int, int]]:
    """Per-class (train, validation, test) counts: validation and test rounded, train the rest."""
    cuts = {}
    for k, n in per_class.items():
        n_val, n_test = round(n * fractions[1]), round(n * fractions[2])
        cuts[k] = (n - n_val - n_test, n_val, n_test)
    return cuts


def _bucket():
    from pyspark.sql import functions as F

    return F.shiftright(F.col("_h"), 64 - BUCKET_BITS)


def bucket_counts(examples, label_column: str) -> dict[str, list[tuple[int, int]]]:
    """Examples per label and hash bucket: ``{label: [(bucket, count), ...]}`` (one job).

    Their sums are the label counts; :func:`row_split` locates its thresholds with them.
    """
    counts = examples.groupBy(label_column, _bucket().alias("_b")).count().collect()
    buckets: dict[str, list[tuple[int, int]]] = {}
    for r in counts:
        buckets.setdefault(r[label_column], []).append((int(r["_b"]), int(r["count"])))
    return buckets


def row_split(spark, examples, per_class: dict[int, int], fractions, buckets):
    """Adds ``_split`` by per-class hash thresholds (exact counts, see the module doc).

    Returns:
        ``(frame, examples per split)``; the counts are exact (identical lines at a threshold
        stay below or above it together, and the count follows them).

    Args:
        spark: The session.
        examples: Examples with ``label_index``, ``_h`` and ``_h2``.
        per_class: Examples per class id.
        fractions: Train, validation and test fractions.
        buckets: :func:`bucket_counts` keyed by class id.
    """
    from pyspark.sql import functions as F

    wanted = []  # (class, rank, bucket, rank within the bucket, examples in earlier buckets)
    for k, (n_train, n_val, _) in class_counts(per_class, fractions).items():
        for rank in (n_train, n_train + n_val):
            if rank >= per_class[k]:
                continue
            before = 0
            for b, n in sorted(buckets[k]):
                if rank < before + n:
                    wanted.append((k, rank, b, rank - before, before))
                    break
                before += n
    keys = _boundary_keys(examples, wanted)
    rows, per_split = [], [0, 0, 0]
    for k, (n_train, n_val, _) in class_counts(per_class, fractions).items():
        (t, below_t), (v, below_v) = (
            keys.get((k, rank), ((None, None), per_class[k])) for rank in (n_train, n_train + n_val)
        )
        rows.append((k, *t, *v))
        for s, n in enumerate((below_t, below_v - below_t, per_class[k] - below_v)):
            per_split[s] += n
    bounds = spark.createDataFrame(
        rows, f"{LABEL_INDEX_COLUMN} long, _th long, _th2 long, _vh long, _vh2 long"
    )

    def below(h, h2):
        return (
            F.col(h).isNull()
            | (F.col("_h") < F.col(h))
            | ((F.col("_h") == F.col(h)) & (F.col("_h2") < F.col(h2)))
        )

    split = F.when(below("_th", "_th2"), 0).when(below("_vh", "_vh2"), 1).otherwise(2)
    joined = examples.join(F.broadcast(bounds), LABEL_INDEX_COLUMN)
    return joined.select(*examples.columns, split.alias("_split")), per_split


def _boundary_keys(examples, wanted) -> dict[tuple[int, int], tuple[tuple[int, int], int]]:
    """Per wanted per-class rank: the ``(_h, _h2)`` key there and the examples below that key.

    Only the boundary buckets' keys are fetched. Below the key at a rank are the earlier
    buckets' examples and the bucket's smaller keys: the rank itself, unless equal keys (the
    same line) precede it.
    """
    from pyspark.sql import functions as F

    if not wanted:
        return {}
    cells = sorted({(k, b) for k, _, b, _, _ in wanted})
    cond = None
    for k, b in cells:
        c = (F.col(LABEL_INDEX_COLUMN) == k) & (_bucket() == b)
        cond = c if cond is None else cond | c
    found: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for r in examples.where(cond).select(LABEL_INDEX_COLUMN, "_h", "_h2").collect():
        cell = (int(r[0]), int(r[1]) >> (64 - BUCKET_BITS))
        found.setdefault(cell, []).append((int(r[1]), int(r[2])))
    for cell in found.values():
        cell.sort()
    keys = {}
    for k, rank, b, offset, before in wanted:
        key = found[(k, b)][offset]
        keys[(k, rank)] = (key, before + bisect.bisect_left(found[(k, b)], key))
    return keys


def assign_groups(counts: dict[str, dict[int, int]], fractions, seed: int) -> dict[str, int]:
    """Deals whole groups to splits, stratified by label as far as the groups allow.

    Args:
        counts: Group -> class id -> examples.
        fractions: Train, validation and test fractions.
        seed: Orders groups of equal size.

    Returns:
        Group -> split index (0 train, 1 validation, 2 test).

    Raises:
        BadDataError: With fewer than two groups.
    """
    if len(counts) < 2:
        raise BadDataError(
            f"split_by=group needs at least 2 devices/groups, found {len(counts)}; "
            "use split_by=row or time"
        )
    classes = sorted({k for c in counts.values() for k in c})
    total = {k: sum(c.get(k, 0) for c in counts.values()) for k in classes}
    target = [{k: f * total[k] for k in classes} for f in fractions]
    have = [dict.fromkeys(classes, 0) for _ in SPLITS]

    def order(g):
        digest = hashlib.sha256(f"{seed}:{g}".encode()).hexdigest()
        return (-sum(counts[g].values()), digest)

    groups = sorted(counts, key=order)
    assignment = {}
    for g in groups:
        scores = [
            sum(n * (target[s][k] - have[s][k]) / max(total[k], 1) for k, n in counts[g].items())
            if fractions[s] > 0
            else float("-inf")
            for s in range(len(SPLITS))
        ]
        s = max(range(len(SPLITS)), key=lambda i: (scores[i], -i))
        assignment[g] = s
        for k, n in counts[g].items():
            have[s][k] += n
    needed = [i for i in (0, 2) if fractions[i] > 0]  # no test split when test_path gives it
    needed += [1] if len(groups) >= 3 and fractions[1] > 0 else []
    for s in needed:
        if s not in assignment.values():
            sizes = [list(assignment.values()).count(i) for i in range(len(SPLITS))]
            spare = [
                i for i in range(len(SPLITS)) if sizes[i] > 1 or (sizes[i] and i not in needed)
            ]
            donor = max(spare, key=lambda i: sizes[i])
            smallest = min(
                (g for g in groups if assignment[g] == donor), key=lambda g: order(g)[::-1]
            )
            assignment[smallest] = s
    return assignment


def group_split(spark, examples, fractions, seed: int):
    """Adds ``_split`` from a whole-group assignment (:func:`assign_groups`).

    Returns:
        ``(frame, examples per split)``.
    """
    from pyspark.sql import functions as F

    counts: dict[str, dict[int, int]] = {}
    for r in examples.groupBy(GROUP, LABEL_INDEX_COLUMN).count().collect():
        counts.setdefault(str(r[GROUP]), {})[int(r[LABEL_INDEX_COLUMN])] = int(r["count"])
    assignment = assign_groups(counts, fractions, seed)
    table = spark.createDataFrame(sorted(assignment.items()), f"{GROUP} string, _split int")
    per_split = [0, 0, 0]
    for g, s in assignment.items():
        per_split[s] += sum(counts[g].values())
    return examples.join(F.broadcast(table), GROUP), per_split


def time_split(spark, examples, fractions, window_seconds: float = 0.0, sliding: bool = False):
    """Adds ``_split`` by per-device time cuts; sliding windows crossing a cut are dropped.

    Returns:
        ``(frame, None)``: the examples per split are known only after a pass over the frame.
    """
    from pyspark.sql import functions as F

    ranges = examples.groupBy(GROUP).agg(F.min(TIME).alias("_lo"), F.max(TIME).alias("_hi"))
    rows = []
    for r in ranges.collect():
        lo, hi = float(r["_lo"]), float(r["_hi"])
        span = hi - lo
        test_cut = lo + (fractions[0] + fractions[1]) * span if fractions[2] > 0 else math.inf
        rows.append((r[GROUP], lo + fractions[0] * span, test_cut))
    cuts = spark.createDataFrame(rows, f"{GROUP} string, _cv double, _ct double")
    t = F.col(TIME)
    split = F.when(t >= F.col("_ct"), 2).when(t >= F.col("_cv"), 1).otherwise(0)
    frame = examples.join(F.broadcast(cuts), GROUP).select("*", split.alias("_split"))
    if sliding:
        end = t + F.lit(window_seconds)
        crosses = ((F.col("_split") == 0) & (end > F.col("_cv"))) | (
            (F.col("_split") == 1) & (end > F.col("_ct"))
        )
        frame = frame.where(~crosses)
    return frame.drop("_cv", "_ct"), None
