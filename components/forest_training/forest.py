"""Random forests trained with Spark MLlib on the ETL's Parquet splits, several at once.

Every configuration (``"<trees>x<depth>"``) is fitted in its own thread of one SparkSession:
Spark runs jobs from several threads concurrently, so the configurations share the executors
(the talk's "parallel training of models"). Each fitted model is saved with MLlib's own writer
and read back as plain arrays (:class:`ForestArrays`) from the saved Parquet node table, which
is what :mod:`kfp_edge.forest_training.tflite_forest` compiles into a TFLite model.

MLlib's probability of a random forest is the mean over trees of each reached leaf's class
distribution (its ``impurityStats``, normalised): :func:`predict_proba` computes exactly that
with numpy, so the compiled model can be checked against Spark without Spark.

Only multi-class random forests: MLlib's ``GBTClassifier`` is binary only, so gradient-boosted
trees are not offered for the multi-class data sets this project ships.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from kfp_edge.dataset import LABEL_INDEX_COLUMN, read_manifest

_CONFIG = re.compile(r"([1-9][0-9]{0,3})x([1-9][0-9]?)")
MAX_DEPTH = 16  # the compiled traversal unrolls one step per level


@dataclasses.dataclass(frozen=True)
class ForestSpec:
    """One configuration of the random forest.

    Attributes:
        num_trees: Number of trees.
        max_depth: Maximum depth of each tree (1-16).
    """

    num_trees: int
    max_depth: int

    @property
    def name(self) -> str:
        """The candidate's name: ``random_forest_<trees>x<depth>``."""
        return f"random_forest_{self.num_trees}x{self.max_depth}"


def parse_config(text: str) -> ForestSpec:
    """Parses ``"<trees>x<depth>"`` (e.g. ``"30x6"``).

    Raises:
        ValueError: Naming the configuration when it is malformed or too deep.
    """
    match = _CONFIG.fullmatch(str(text).strip())
    if not match or int(match.group(2)) > MAX_DEPTH:
        raise ValueError(
            f"forest configuration {text!r}: expected '<trees>x<depth>' with 1-9999 trees and "
            f"depth 1-{MAX_DEPTH}, e.g. '30x6'"
        )
    return ForestSpec(int(match.group(1)), int(match.group(2)))


@dataclasses.dataclass
class ForestArrays:
    """A fitted forest as arrays, every tree padded to the same number of nodes.

    Attributes:
        feature: int32 ``[trees, nodes]``: feature index tested at a node (0 at leaves).
        threshold: float64 ``[trees, nodes]``: go left when ``x[feature] <= threshold``
            (+inf at leaves, so a leaf keeps every row on its left, itself).
        left: int32 ``[trees, nodes]``: left child (the node itself at leaves).
        right: int32 ``[trees, nodes]``: right child (the node itself at leaves).
        leaf_proba: float64 ``[trees, nodes, classes]``: normalised class counts of leaves.
        depth: The deepest leaf's depth (traversal steps needed).
    """

    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    leaf_proba: np.ndarray
    depth: int


def predict_proba(forest: ForestArrays, x: np.ndarray) -> np.ndarray:
    """MLlib's random-forest probabilities computed from the arrays with numpy (float64)."""
    x = np.asarray(x, dtype=np.float64)
    trees = forest.feature.shape[0]
    node = np.zeros((len(x), trees), dtype=np.int64)
    tree_index = np.arange(trees)[None, :]
    for _ in range(forest.depth):
        feature = forest.feature[tree_index, node]
        value = np.take_along_axis(x, feature, axis=1)
        go_left = value <= forest.threshold[tree_index, node]
        node = np.where(go_left, forest.left[tree_index, node], forest.right[tree_index, node])
    return forest.leaf_proba[tree_index, node].mean(axis=1)


def read_saved_forest(model_dir: str | Path, num_classes: int) -> ForestArrays:
    """Reads the node table MLlib's writer saved (``<model_dir>/data``) into arrays.

    Raises:
        ValueError: If a split is categorical (the ETL only produces continuous features).
    """
    import pyarrow.parquet as pq

    rows = pq.read_table(Path(model_dir) / "data").to_pylist()
    trees: dict[int, dict[int, dict]] = {}
    for row in rows:
        trees.setdefault(row["treeID"], {})[row["nodeData"]["id"]] = row["nodeData"]
    width = max(len(nodes) for nodes in trees.values())
    shape = (len(trees), width)
    arrays = ForestArrays(
        feature=np.zeros(shape, np.int32),
        threshold=np.full(shape, np.inf),
        left=np.tile(np.arange(width, dtype=np.int32), (len(trees), 1)),
        right=np.tile(np.arange(width, dtype=np.int32), (len(trees), 1)),
        leaf_proba=np.zeros((*shape, num_classes)),
        depth=0,
    )
    for t, tree_id in enumerate(sorted(trees)):
        arrays.depth = max(arrays.depth, _fill_tree(arrays, t, trees[tree_id]))
    return arrays


def _fill_tree(arrays: ForestArrays, t: int, nodes: dict[int, dict]) -> int:
    """Copies one tree's nodes into row ``t`` of the arrays; returns its depth."""
    depth_of = {0: 0}
    for node_id in sorted(nodes):  # MLlib numbers nodes in pre-order: parents come first
        node = nodes[node_id]
        if node["leftChild"] < 0:
            stats = np.asarray(node["impurityStats"], dtype=np.float64)
            total = stats.sum()
            arrays.leaf_proba[t, node_id] = stats / total if total > 0 else 0.0
            continue
        split = node["split"]
        if split["numCategories"] >= 0:
            raise ValueError(f"tree {t} node {node_id}: categorical split; features are numeric")
        arrays.feature[t, node_id] = split["featureIndex"]
        arrays.threshold[t, node_id] = split["leftCategoriesOrThreshold"][0]
        arrays.left[t, node_id] = node["leftChild"]
        arrays.right[t, node_id] = node["rightChild"]
        for child in (node["leftChild"], node["rightChild"]):
            depth_of[child] = depth_of[node_id] + 1
    return max(depth_of.values())


def _vectors(spark, data_dir: Path, manifest: dict, split: str):
    """A split as MLlib's (features vector, label) DataFrame, features as float32 values."""
    from pyspark.ml.feature import VectorAssembler
    from pyspark.sql import functions as F

    frame = spark.read.parquet(str(data_dir / manifest["splits"][split]["parquet"]))
    # The TFLite model sees float32 inputs: train and score Spark on the same values.
    columns = [F.col(c).cast("float").cast("double").alias(c) for c in manifest["feature_columns"]]
    frame = frame.select(*columns, F.col(LABEL_INDEX_COLUMN).cast("double").alias("label"))
    assembler = VectorAssembler(inputCols=manifest["feature_columns"], outputCol="features")
    return assembler.transform(frame).select("features", "label")


def _fit_one(spark, train, spec: ForestSpec, seed: int, max_bins: int, workdir: Path) -> dict:
    """Fits one configuration (in a worker thread), saves it and reads its arrays back."""
    from pyspark.ml.classification import RandomForestClassifier

    started = time.perf_counter()
    spark.sparkContext.setLocalProperty("spark.job.description", spec.name)
    model = RandomForestClassifier(
        numTrees=spec.num_trees, maxDepth=spec.max_depth, maxBins=max_bins, seed=seed
    ).fit(train)
    seconds = time.perf_counter() - started
    path = workdir / spec.name
    model.write().overwrite().save(str(path))
    return {"spec": spec, "model": model, "path": path, "train_seconds": seconds}


def train_forests(
    spark, data_dir: str | Path, specs: list[ForestSpec], seed: int = 42, max_bins: int = 32
) -> list[dict]:
    """Fits every configuration concurrently in one SparkSession and scores it.

    Args:
        spark: The SparkSession.
        data_dir: The ETL output (Parquet splits, manifest).
        specs: The configurations.
        seed: Seed of MLlib's bootstrap and feature subsets.
        max_bins: MLlib's ``maxBins`` (candidate thresholds per feature).

    Returns:
        One dict per configuration, in the given order: ``spec``, ``arrays``
        (:class:`ForestArrays`), ``train_seconds``, ``validation_accuracy`` and
        ``spark_test_proba`` (MLlib's own probabilities on the test split, float64).
    """
    data_dir = Path(data_dir)
    manifest = read_manifest(data_dir)
    train = _vectors(spark, data_dir, manifest, "train").cache()
    train.count()
    with tempfile.TemporaryDirectory(prefix="forests-") as tmp:
        with ThreadPoolExecutor(max_workers=max(1, len(specs))) as pool:
            futures = [
                pool.submit(_fit_one, spark, train, s, seed, max_bins, Path(tmp)) for s in specs
            ]
            fitted = [f.result() for f in futures]
        results = []
        for item in fitted:
            arrays = read_saved_forest(item["path"], manifest["num_classes"])
            results.append(
                {
                    "spec": item["spec"],
                    "arrays": arrays,
                    "train_seconds": round(item["train_seconds"], 3),
                    "validation_accuracy": _accuracy(item["model"], spark, data_dir, manifest),
                    "spark_test_proba": _probabilities(item["model"], spark, data_dir, manifest),
                }
            )
    train.unpersist()
    return results


def _probabilities(model, spark, data_dir: Path, manifest: dict) -> np.ndarray:
    """MLlib's test-split probabilities, rows in :func:`kfp_edge.dataset.load_split` order."""
    from pyspark.ml.linalg import Vectors

    from kfp_edge.dataset import load_split

    x, _ = load_split(data_dir, "test")
    frame = spark.createDataFrame([(Vectors.dense(row.tolist()),) for row in x], ["features"])
    rows = model.transform(frame).select("probability").collect()  # a local list keeps order
    return np.array([r.probability.toArray() for r in rows], dtype=np.float64)


def _accuracy(model, spark, data_dir: Path, manifest: dict) -> float:
    scored = model.transform(_vectors(spark, data_dir, manifest, "validation"))
    rows = scored.select("label", "prediction").collect()
    return round(float(np.mean([r.label == r.prediction for r in rows])), 6) if rows else 0.0
