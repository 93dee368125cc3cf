"""``kfp-edge datagen``: the synthetic sensor data generator on the command line."""

from __future__ import annotations

import json


def register(subparsers) -> None:
    """Adds the ``datagen`` subcommand.

    Args:
        subparsers: The ``add_subparsers()`` object of the ``kfp-edge`` parser.
    """
    p = subparsers.add_parser(
        "datagen",
        help="write deterministic synthetic industrial sensor data (CSV or Parquet)",
        description="Devices x sensor channels with labelled fault episodes, optional drift "
        "and malformed rows. Memory stays bounded for tens of millions of rows.",
    )
    p.add_argument("output", help="output file (.csv or .parquet); must not exist")
    p.add_argument("--rows", type=int, default=100_000, help="rows to write (default 100000)")
    p.add_argument("--devices", type=int, default=4, help="number of devices (default 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--drift-at",
        type=float,
        default=None,
        metavar="SECONDS",
        help="sensors drift from this many seconds after the start on",
    )
    p.add_argument(
        "--bad-fraction", type=float, default=0.0, help="fraction of malformed rows (0..1)"
    )
    p.add_argument(
        "--format",
        dest="fmt",
        choices=("csv", "parquet"),
        default=None,
        help="default: from the file suffix",
    )
    p.add_argument("--interval", type=float, default=1.0, help="seconds between readings")
    p.add_argument("--delimiter", default=",", help="CSV delimiter")
    p.set_defaults(func=_cmd_datagen)


def _cmd_datagen(args) -> int:
    from kfp_edge.spark_etl.datagen import generate_sensor_data

    fmt = args.fmt or ("parquet" if args.output.endswith((".parquet", ".pq")) else "csv")
    summary = generate_sensor_data(
        args.output,
        args.rows,
        devices=args.devices,
        seed=args.seed,
        drift_at=args.drift_at,
        bad_fraction=args.bad_fraction,
        fmt=fmt,
        interval_s=args.interval,
        delimiter=args.delimiter,
    )
    summary.pop("schema")
    print(json.dumps(summary, indent=2))
    return 0
