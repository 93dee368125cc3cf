"""The ``kfp-edge`` command line.

``run`` and ``compile`` live here; every other subcommand is registered by the package that owns
it (``register(subparsers)`` in ``kfp_edge.<package>.cli``), so that each command sits next to its
logic. Nothing here imports TensorFlow or PySpark.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

# Packages that add subcommands; a missing module is skipped so a slim install still works.
_SUBCOMMAND_MODULES = (
    "kfp_edge.spark_etl.cli",  # datagen
    "kfp_edge.model_store.cli",  # pull, rollback, models
    "kfp_edge.drift_monitor.cli",  # drift
    "kfp_edge.app.submit",  # submit
    "kfp_edge.app.serve_web",  # serve-web
)


def _add_run(subparsers) -> None:
    p = subparsers.add_parser("run", help="run the edge pipeline locally (kfp.local)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--dataset", default=None, help="bundled dataset: iris (default) or sensor")
    src.add_argument("--input", dest="input_path", default=None, help="your own CSV or Parquet")
    p.add_argument("--label", dest="label_column", default=None, help="label column of --input")
    p.add_argument("--workspace", default=None, help="directory standing for the PV")
    p.add_argument("--run-id", default=None, help="run id (default: edge-<timestamp>)")
    p.add_argument("--model-name", default=None, help="name in the model store")
    p.add_argument("--workers", type=int, default=None, help="TFJob workers (default 2)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any other pipeline parameter (repeatable)",
    )
    p.set_defaults(func=_cmd_run)


def _cmd_run(args) -> int:
    from kfp_edge.app.run_local import parse_params, print_summary, run_local

    params = parse_params(args.param)
    for key in ("dataset", "input_path", "label_column", "model_name", "workers", "epochs"):
        value = getattr(args, key)
        if value is not None:
            params[key] = value
    if args.input_path and not args.label_column:
        raise SystemExit("kfp-edge run: --input needs --label COLUMN")
    result = run_local(workspace=args.workspace, run_id=args.run_id, **params)
    print_summary(result)
    return 0 if result["published"] else 1


def _add_compile(subparsers) -> None:
    p = subparsers.add_parser("compile", help="compile the Kubeflow pipeline (kfp v2 IR YAML)")
    p.add_argument("-o", "--output", default="edge_pipeline.yaml", help="output YAML path")
    p.add_argument(
        "--pipeline",
        default="edge",
        help="which pipeline: edge (default) or retrain",
    )
    p.add_argument("--resources", default=None, help="resource profile: name or YAML file")
    p.set_defaults(func=_cmd_compile)


def _cmd_compile(args) -> int:
    from kfp_edge.pipelines.compile import compile_pipeline

    path = compile_pipeline(args.pipeline, Path(args.output), resources=args.resources)
    print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Returns the argument parser of ``kfp-edge`` with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog="kfp-edge", description="Kubeflow Pipelines components for ML at the edge."
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_run(subparsers)
    _add_compile(subparsers)
    for name in _SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue  # that package's command is not part of this install
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``kfp-edge`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except (ValueError, FileNotFoundError, FileExistsError, PermissionError) as exc:
        print(f"kfp-edge {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
