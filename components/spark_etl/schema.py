"""The ETL's declared input schema: a small YAML or JSON file, or inferred and written out.

Example (``schema.yaml``)::

    columns:                    # in file order; types: double, long, string, timestamp
      - {name: reading_id, type: string}
      - {name: timestamp, type: timestamp}
      - {name: device_id, type: string}
      - {name: temp, type: double}
      - {name: fault, type: string}
    label_column: fault
    feature_columns: [temp]     # default: every numeric column except id and time
    id_column: reading_id       # optional: duplicate ids are quarantined
    time_column: timestamp      # optional: needed by windowed aggregation
    device_column: device_id    # optional: windows are per device
    classes: [normal, overheating]  # optional: other label values are quarantined

Without a schema file the ETL infers one from the first 1000 rows: a column is ``double`` when
at least 90 % of its non-empty sampled values parse as numbers (``NaN`` and ``inf`` included;
the rows holding the others are then quarantined as ``unparsable``); the time column
named with ``time_column`` is ``double`` (epoch seconds) when numeric, else ``timestamp``; the
label, id, device and all other columns are ``string``. The inferred schema is written to
``<output>/schema.json``, so the next run can pin it with ``schema_path``. The id, time and device
columns can be named without a schema file (``id_column``, ``time_column``, ``device_column``).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Why a row is quarantined, in the order the ETL checks them. The generator injects exactly
# these defects, so the ETL's counts can be checked against what it wrote.
BAD_ROW_REASONS = (
    "wrong_field_count",
    "missing_value",
    "unparsable",
    "non_finite",
    "unknown_label",
    "duplicate_id",
)

ROLE_KEYS = ("id_column", "time_column", "device_column")


class BadDataError(ValueError):
    """The input cannot give a dataset: too many bad rows, no rows, or no usable label."""


TYPES = ("double", "long", "string", "timestamp")
NUMERIC_TYPES = ("double", "long")
NUMERIC_SHARE = 0.9  # of the sampled values, for an inferred column to be numeric


@dataclass
class Schema:
    """Column names and types of the input, and the role of each column.

    Attributes:
        columns: ``[(name, type), ...]`` in file order.
        label_column: The column holding the class label.
        feature_columns: Numeric columns fed to the model, in order.
        id_column: Optional unique id column.
        time_column: Optional event time column.
        device_column: Optional device (series) column for windowed aggregation.
        classes: Declared label values (index = class id); empty means learned from the data.
    """

    columns: list[tuple[str, str]]
    label_column: str
    feature_columns: list[str] = field(default_factory=list)
    id_column: str = ""
    time_column: str = ""
    device_column: str = ""
    classes: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        """Column names in file order."""
        return [name for name, _ in self.columns]

    def type_of(self, name: str) -> str:
        """Returns the declared type of a column."""
        return dict(self.columns)[name]

    def to_dict(self) -> dict:
        """Returns the JSON-able form (the one :func:`load_schema` reads)."""
        data = asdict(self)
        data["columns"] = [{"name": n, "type": t} for n, t in self.columns]
        return data


def schema_from_dict(data: dict, source: str = "schema") -> Schema:
    """Builds and validates a schema from its dict form.

    Args:
        data: The parsed YAML or JSON.
        source: Where it came from, for error messages.

    Raises:
        ValueError: Naming the source and the offending key or column.
    """
    if not isinstance(data, dict) or "columns" not in data:
        raise ValueError(f"{source}: a schema needs a 'columns' list")
    columns = []
    for i, col in enumerate(data["columns"]):
        if not isinstance(col, dict) or "name" not in col:
            raise ValueError(f"{source}: columns[{i}] needs a 'name'")
        ctype = str(col.get("type", "string")).lower()
        ctype = {"float": "double", "int": "long", "integer": "long", "str": "string"}.get(
            ctype, ctype
        )
        if ctype not in TYPES:
            raise ValueError(
                f"{source}: column {col['name']!r} has type {ctype!r}; expected one of {TYPES}"
            )
        columns.append((str(col["name"]), ctype))
    names = [n for n, _ in columns]
    if len(set(names)) != len(names):
        raise ValueError(f"{source}: duplicate column names in {names}")
    label = data.get("label_column") or ""
    if not label:
        raise ValueError(f"{source}: 'label_column' is required")
    for key in ("label_column", "id_column", "time_column", "device_column"):
        value = data.get(key) or ""
        if value and value not in names:
            raise ValueError(f"{source}: {key} {value!r} is not a column (columns: {names})")
    roles = {label, *(data.get(k) or "" for k in ROLE_KEYS)}
    features = list(data.get("feature_columns") or [])
    if not features:
        features = [n for n, t in columns if t in NUMERIC_TYPES and n not in roles]
    for name in features:
        if name not in names:
            raise ValueError(f"{source}: feature column {name!r} is not a column")
        if dict(columns)[name] not in NUMERIC_TYPES:
            raise ValueError(f"{source}: feature column {name!r} must be double or long")
        if name == label:
            raise ValueError(f"{source}: the label column {name!r} cannot be a feature")
    if not features:
        raise ValueError(f"{source}: no numeric feature columns")
    classes = [str(c) for c in data.get("classes") or []]
    if len(set(classes)) != len(classes):
        raise ValueError(f"{source}: duplicate values in 'classes'")
    return Schema(
        columns=columns,
        label_column=label,
        feature_columns=features,
        id_column=data.get("id_column") or "",
        time_column=data.get("time_column") or "",
        device_column=data.get("device_column") or "",
        classes=classes,
    )


def load_schema(path: str | os.PathLike) -> Schema:
    """Reads a schema from a YAML (``.yaml``/``.yml``) or JSON file.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If it is not a valid schema (the message names the file).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: schema file not found")
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    return schema_from_dict(data, str(path))


def _is_number(text: str) -> bool:
    if "_" in text:  # Python reads 1_000, Spark does not
        return False
    try:
        float(text)
    except ValueError:
        return False
    return True


def with_roles(schema: Schema, roles: dict | None, source: str) -> Schema:
    """The schema with the id, time and device columns given on the command line applied.

    Raises:
        ValueError: If a named column is not in the schema.
    """
    roles = {k: v for k, v in (roles or {}).items() if v}
    if all(getattr(schema, k) == v for k, v in roles.items()):
        return schema
    data = {**schema.to_dict(), **roles}
    data["feature_columns"] = [f for f in schema.feature_columns if f not in roles.values()]
    return schema_from_dict(data, source)


def _is_time(text: str) -> bool:
    import datetime as dt

    try:
        dt.datetime.fromisoformat(text.strip().replace(" ", "T", 1))
    except ValueError:
        return False
    return True


def infer_csv_schema(
    header: list[str],
    sample_rows: list[list[str]],
    label_column: str,
    source: str,
    roles: dict | None = None,
) -> Schema:
    """Infers column types from a CSV header and sample rows.

    A column is ``double`` when at least :data:`NUMERIC_SHARE` of its non-empty sampled values
    parse as finite or non-finite numbers; the time column (``roles["time_column"]``) is
    ``double`` when numeric and ``timestamp`` otherwise; the label, id, device and everything
    else are ``string``.

    Args:
        header: Column names.
        sample_rows: Parsed sample rows (rows of the wrong length are ignored).
        label_column: The label column, which must be in the header.
        source: The file, for error messages.
        roles: Optional ``id_column``, ``time_column``, ``device_column``.

    Raises:
        ValueError: If the label or a role column is missing (naming the file and the column).
    """
    roles = {k: v for k, v in (roles or {}).items() if v}
    for role, name in [("label_column", label_column), *roles.items()]:
        if name not in header:
            what = role.replace("_", " ")
            raise ValueError(f"{source}: {what} {name!r} not found; columns are {header}")
    text_columns = {label_column, roles.get("id_column"), roles.get("device_column")}
    columns = []
    for i, name in enumerate(header):
        values = [r[i].strip() for r in sample_rows if len(r) == len(header) and r[i].strip()]
        parsed = sum(map(_is_number, values))
        numeric = name not in text_columns and values and parsed >= NUMERIC_SHARE * len(values)
        ctype = "double" if numeric else "string"
        if name == roles.get("time_column") and not numeric:
            if values and not all(map(_is_time, values)):
                raise ValueError(f"{source}: time column {name!r} holds values that are not times")
            ctype = "timestamp"
        columns.append((name, ctype))
    return schema_from_dict(
        {
            "columns": [{"name": n, "type": t} for n, t in columns],
            "label_column": label_column,
            **roles,
        },
        source,
    )


def read_csv_head(
    path: str | os.PathLike, delimiter: str, quote: str, sample: int = 1000
) -> tuple[list[str], list[list[str]]]:
    """Returns the header and up to ``sample`` parsed rows of a CSV file (BOM removed).

    Raises:
        ValueError: If the file is empty (naming it).
    """
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=delimiter, quotechar=quote)
        header = next(reader, None)
        while header is not None and not any(h.strip() for h in header):
            header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: empty file (no header line)")
        rows = []
        for row in reader:
            if row:
                rows.append(row)
            if len(rows) >= sample:
                break
    return [h.strip() for h in header], rows
