"""Reading the ETL's dataset manifest and splits without TensorFlow or Spark.

The ETL writes, under ``<run>/data/``:

- ``manifest.json``: ``feature_columns``, ``label_column``, ``classes`` (original label values,
  index = class id), ``num_features``, ``num_classes``, ``preprocessing`` (file name), and
  ``splits`` -> ``{train|validation|test: {"rows": n, "shards": [{"path", "rows", "sha256"}],
  "parquet": "parquet/<split>"}}``;
- ``preprocessing.json``: ``{"type": "standardize", "feature_columns", "mean", "std"}``;
- TFRecord shards of ``tf.train.Example`` with ``features`` (float list, raw values, length
  ``num_features``) and ``label`` (int64 class id);
- Parquet splits with the feature columns (raw) and ``label_index`` (int64 class id).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

MANIFEST_FILE = "manifest.json"
PREPROCESSING_FILE = "preprocessing.json"
FEATURES_KEY = "features"
LABEL_KEY = "label"
LABEL_INDEX_COLUMN = "label_index"
SPLITS = ("train", "validation", "test")


def read_manifest(data_dir: str | os.PathLike) -> dict:
    """Returns the dataset manifest of an ETL output directory.

    Raises:
        FileNotFoundError: If the directory holds no manifest (the ETL did not finish).
    """
    path = Path(data_dir) / MANIFEST_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no dataset manifest; did the ETL step finish?")
    return json.loads(path.read_text())


def read_preprocessing(data_dir: str | os.PathLike) -> dict:
    """Returns the preprocessing spec (standardization statistics) of an ETL output."""
    return json.loads((Path(data_dir) / PREPROCESSING_FILE).read_text())


def shard_paths(data_dir: str | os.PathLike, split: str) -> list[str]:
    """Returns the absolute TFRecord shard paths of a split, in manifest order."""
    manifest = read_manifest(data_dir)
    return [str(Path(data_dir) / s["path"]) for s in manifest["splits"][split]["shards"]]


def load_split(data_dir: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Loads a split from its Parquet copy as raw features and class ids.

    Returns:
        ``(x, y)``: float32 array of shape ``[rows, num_features]`` and int64 array ``[rows]``.
    """
    import pyarrow.parquet as pq

    manifest = read_manifest(data_dir)
    table = pq.read_table(Path(data_dir) / manifest["splits"][split]["parquet"])
    columns = manifest["feature_columns"]
    x = np.stack([table.column(c).to_numpy().astype(np.float32) for c in columns], axis=1)
    y = table.column(LABEL_INDEX_COLUMN).to_numpy().astype(np.int64)
    return x, y
