"""The ``kfp-edge`` command line.

``run`` and ``compile`` live here; every other subcommand is registered by the package that owns
it (``register(subparsers)`` in ``kfp_edge.<package>.cli``), so that each command sits next to its
logic. Nothing here imports TensorFlow or PySpark.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from importlib import metadata
from pathlib import Path

from kfp_edge import __version__
from kfp_edge.app.params import add_param_option, parse_params

DATASETS = ("iris", "sensor")
PIPELINES = ("edge", "retrain")
RESOURCES_HELP = "resource profile: cpu-small, gpu-single, gpu-multi or a YAML file"

# Packages that add subcommands; a missing module is skipped so a slim install still works.
_SUBCOMMAND_MODULES = (
    "kfp_edge.spark_etl.cli",  # datagen
    "kfp_edge.model_store.cli",  # pull, rollback, models
    "kfp_edge.drift_monitor.cli",  # drift
    "kfp_edge.app.submit",  # submit
    "kfp_edge.app.serve_web",  # serve-web
)


class _HelpWithParameters(argparse.Action):
    """``-h/--help`` that lists the pipeline's parameters, built only when help is asked for."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="show this help and the parameters")

    def __call__(self, parser, namespace, values, option_string=None):
        from kfp_edge.app.params import describe
        from kfp_edge.pipelines.edge_pipeline import build_edge_pipeline

        parser.epilog = describe(build_edge_pipeline())
        parser.print_help()
        parser.exit()


def _add_run(subparsers) -> None:
    p = subparsers.add_parser(
        "run",
        help="run the edge pipeline locally (kfp.local)",
        add_help=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-h", "--help", action=_HelpWithParameters)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--dataset", default=None, choices=DATASETS, help="bundled dataset (iris)")
    src.add_argument("--input", dest="input_path", default=None, help="your own CSV or Parquet")
    p.add_argument("--label", dest="label_column", default=None, help="label column of --input")
    p.add_argument("--workspace", default=None, help="directory standing for the PV")
    p.add_argument("--run-id", default=None, help="run id (default: edge-<timestamp>)")
    p.add_argument("--model-name", default=None, help="name in the model store")
    p.add_argument("--workers", type=int, default=None, help="TFJob workers (default 2)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("-v", "--verbose", action="store_true", help="stream kfp.local's full logs")
    add_param_option(p)
    p.set_defaults(func=_cmd_run)


def _cmd_run(args) -> int:
    from kfp_edge.app.run_local import print_summary, run_local

    params = parse_params(args.param)
    for key in ("dataset", "input_path", "label_column", "model_name", "workers", "epochs"):
        value = getattr(args, key)
        if value is not None:
            params[key] = value
    if args.input_path and not args.label_column:
        raise ValueError("--input needs --label COLUMN")
    result = run_local(workspace=args.workspace, run_id=args.run_id, verbose=args.verbose, **params)
    print_summary(result)
    return 0 if result["published"] else 1


def _add_report(subparsers) -> None:
    p = subparsers.add_parser("report", help="print the path of a run's report.html")
    p.add_argument("run", nargs="?", default=None, help="run id (default: the latest run)")
    p.add_argument("--workspace", default=None, help="directory standing for the PV")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args) -> int:
    from kfp_edge.app.params import unknown_name
    from kfp_edge.report_html import REPORT_HTML, write_run_report
    from kfp_edge.workspace import DEFAULT_LOCAL_WORKSPACE, REPORT_FILE, run_dir

    workspace = Path(args.workspace or DEFAULT_LOCAL_WORKSPACE)
    runs = sorted(
        (d for d in (workspace / "runs").glob("*") if (d / REPORT_FILE).is_file()),
        key=lambda d: (d / REPORT_FILE).stat().st_mtime,
    )
    if not runs:
        raise FileNotFoundError(f"{workspace / 'runs'}: no runs yet (kfp-edge run makes one)")
    if args.run is None:
        directory = runs[-1]
    else:
        directory = run_dir(workspace, args.run)
        if directory not in runs:
            raise FileNotFoundError(unknown_name(args.run, [d.name for d in runs], "run"))
    page = directory / REPORT_HTML
    if not page.is_file():  # a run from before report pages, or one cut short
        page = write_run_report(directory)
    print(page.resolve())
    return 0


def _add_compile(subparsers) -> None:
    p = subparsers.add_parser("compile", help="compile the Kubeflow pipeline (kfp v2 IR YAML)")
    p.add_argument("-o", "--output", default="edge_pipeline.yaml", help="output YAML path")
    p.add_argument("--pipeline", default="edge", choices=PIPELINES, help="which pipeline")
    p.add_argument("--resources", default=None, help=RESOURCES_HELP)
    p.set_defaults(func=_cmd_compile)


def _cmd_compile(args) -> int:
    from kfp_edge.pipelines.compile import compile_pipeline

    path = compile_pipeline(args.pipeline, Path(args.output), resources=args.resources)
    print(f"wrote {path}")
    return 0


def _version() -> str:
    try:
        kfp = metadata.version("kfp")
    except metadata.PackageNotFoundError:
        kfp = "not installed"
    return f"kfp-edge {__version__} (kfp {kfp}, Python {sys.version.split()[0]})"


def build_parser() -> argparse.ArgumentParser:
    """Returns the argument parser of ``kfp-edge`` with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog="kfp-edge", description="Kubeflow Pipelines components for ML at the edge."
    )
    parser.add_argument("--version", action="version", version=_version())
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(subparsers)
    _add_compile(subparsers)
    _add_report(subparsers)
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
