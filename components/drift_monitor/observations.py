"""Reading new observations in chunks: a CSV or Parquet file, a directory of them, or stdin.

Every chunk is a pandas DataFrame tagged with where it came from, so that an error can name the
file and the row.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
STDIN = "-"


def input_files(source: str | os.PathLike) -> list[Path]:
    """Returns the data files of a source: the file itself, or a directory's files by name.

    A directory's ``.csv`` and ``.parquet`` files are taken in name order (name new files so
    that they sort by arrival, e.g. with a timestamp); hidden files are skipped.

    Raises:
        FileNotFoundError: If the source does not exist or a directory holds no data file.
        ValueError: If a file is neither CSV nor Parquet.
    """
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory of observations")
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
            and p.suffix.lower() in CSV_SUFFIXES + PARQUET_SUFFIXES
        )
        if not files:
            raise FileNotFoundError(f"{path}: the directory holds no .csv or .parquet file")
        return files
    if path.suffix.lower() not in CSV_SUFFIXES + PARQUET_SUFFIXES:
        raise ValueError(f"{path}: observations must be .csv or .parquet, not {path.suffix!r}")
    return [path]


def _csv_chunks(handle: IO[str] | str, name: str, chunk_rows: int):
    import pandas as pd

    try:
        for chunk in pd.read_csv(handle, chunksize=chunk_rows):
            yield name, chunk
    except pd.errors.EmptyDataError:
        return
    except pd.errors.ParserError as exc:
        raise ValueError(f"{name}: not a well-formed CSV: {exc}") from exc


def iter_chunks(
    source: str | os.PathLike, chunk_rows: int = 4096, stdin: IO[str] | None = None
) -> Iterator[tuple[str, int, object]]:
    """Yields ``(origin, first_row, DataFrame)`` chunks of observations in arrival order.

    Args:
        source: A CSV or Parquet file, a directory of them, or ``-`` for CSV lines (with a
            header line) on standard input.
        chunk_rows: Rows per chunk at most.
        stdin: The stream read for ``-`` (default ``sys.stdin``).

    Yields:
        The file name (or ``<stdin>``), the 1-based data row number of the chunk's first row
        in that file, and the chunk.
    """
    if str(source) == STDIN:
        stream = stdin if stdin is not None else sys.stdin
        row = 1
        for name, chunk in _csv_chunks(stream, "<stdin>", chunk_rows):
            yield name, row, chunk
            row += len(chunk)
        return
    for path in input_files(source):
        row = 1
        if path.suffix.lower() in PARQUET_SUFFIXES:
            import pyarrow.parquet as pq

            try:
                parquet = pq.ParquetFile(path)
            except Exception as exc:  # pyarrow raises several types for a corrupt file
                raise ValueError(f"{path}: not a readable Parquet file: {exc}") from exc
            for batch in parquet.iter_batches(batch_size=chunk_rows):
                frame = batch.to_pandas()
                yield str(path), row, frame
                row += len(frame)
        else:
            for name, chunk in _csv_chunks(str(path), str(path), chunk_rows):
                yield name, row, chunk
                row += len(chunk)
