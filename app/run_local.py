"""Run the edge pipeline on this machine: kfp.local's SubprocessRunner in the current environment.

Each step runs as a subprocess of this Python, the workspace is a local directory standing for
the PersistentVolume, and training runs the same TFJob spec on the local TFJob engine.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import sys
from pathlib import Path

from kfp_edge.app.params import coerce_arguments, function_parameters
from kfp_edge.app.progress import (
    LOGS_DIR,
    ProgressView,
    RunMonitor,
    failure_line,
    log_tail,
    strip_ansi,
)
from kfp_edge.report_html import write_run_report
from kfp_edge.workspace import DEFAULT_LOCAL_WORKSPACE, read_report, run_dir


def new_run_id() -> str:
    """Returns a fresh run id of the form ``edge-YYYYmmdd-HHMMSS-ffffff`` (UTC)."""
    return "edge-" + _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S-%f")


def whole_numbers_as_floats(pipeline, params: dict) -> dict:
    """``10`` for a Float parameter becomes ``10.0`` (kfp refuses an int for a float input).

    Args:
        pipeline: A ``@dsl.pipeline`` function.
        params: Parameter values, e.g. from :func:`parse_params`.
    """
    inputs = pipeline.component_spec.inputs or {}
    return {
        k: float(v)
        if k in inputs
        and inputs[k].type == "Float"
        and isinstance(v, int)
        and not isinstance(v, bool)
        else v
        for k, v in params.items()
    }


def run_pipeline_locally(
    pipeline, workspace: str | None, run_id: str, verbose: bool = False, **params
) -> tuple[Path, str | None]:
    """Runs a kfp-edge pipeline function under kfp.local's SubprocessRunner in this environment.

    The user's own kfp.local configuration (``kfp.local.init``) is restored afterwards. kfp.local's
    full output goes to ``<run>/logs/`` (see :mod:`kfp_edge.app.progress`); the screen shows one
    line per step and progress bars, or, with ``verbose``, the full output as well.

    Args:
        pipeline: A ``@dsl.pipeline`` function with ``workspace`` and ``run_id`` parameters.
        workspace: Directory standing for the workspace PV (default ``./.kfp-edge``).
        run_id: Run id passed to the pipeline.
        verbose: Stream kfp.local's full output instead of the progress display.
        **params: Other pipeline parameters; ``training_engine`` defaults to ``local``.

    Returns:
        ``(workspace path, error)``: the resolved workspace and the failure message or None.
    """
    from kfp import local
    from kfp.local import config as local_config

    workspace_path = Path(workspace or DEFAULT_LOCAL_WORKSPACE).resolve()
    workspace_path.mkdir(parents=True, exist_ok=True)
    params.setdefault("training_engine", "local")
    params = whole_numbers_as_floats(pipeline, params)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    screen = sys.stdout
    view = None if verbose else ProgressView(screen)
    monitor = RunMonitor(
        run_dir(workspace_path, run_id) / LOGS_DIR,
        task_names(pipeline),
        view=view,
        echo=screen if verbose else None,
    )
    users_config = local_config.LocalExecutionConfig.instance
    error = None
    try:
        local.init(
            runner=local.SubprocessRunner(use_venv=False),
            pipeline_root=str(workspace_path / "kfp-local"),
            raise_on_error=True,
        )
        with view or contextlib.nullcontext(), monitor:
            with contextlib.redirect_stdout(monitor), contextlib.redirect_stderr(monitor):
                pipeline(workspace=str(workspace_path), run_id=run_id, **params)
    except RuntimeError as exc:  # kfp.local raises when a task fails; its log says why
        error = _failure(monitor, exc)
    finally:
        local_config.LocalExecutionConfig.instance = users_config
    return workspace_path, error


def task_names(pipeline) -> dict[str, str]:
    """Returns ``{kfp task name: display name}`` of a pipeline's tasks, nested DAGs included."""
    spec = pipeline.pipeline_spec
    dags = [spec.root.dag] + [c.dag for c in spec.components.values() if c.HasField("dag")]
    return {name: task.task_info.name or name for dag in dags for name, task in dag.tasks.items()}


def _failure(monitor: RunMonitor, exc: Exception) -> str:
    """The failure message: which step failed and the end of its log."""
    step = monitor.failed_step
    if step is None:
        return f"{strip_ansi(str(exc))} (logs: {monitor.logs_dir})"
    log = monitor.step_log(step)
    why = failure_line(log)
    if why:
        return f"step {step} failed: {why}\n  its full log: {log}"
    return f"step {step} failed; the end of {log}:\n{log_tail(log)}"


def run_local(
    workspace: str | None = None, run_id: str | None = None, verbose: bool = False, **params
) -> dict:
    """Runs the edge pipeline locally and returns what it produced.

    Shows one line per step and progress bars while it runs; kfp.local's full output goes to
    ``<run>/logs/``. Afterwards ``<run>/report.html`` shows the run, finished or failed.

    Args:
        workspace: Directory standing for the workspace PV (default ``./.kfp-edge``).
        run_id: Run id (default: a fresh timestamped id).
        verbose: Also stream kfp.local's full output.
        **params: Other pipeline parameters (see ``kfp_edge.pipelines.edge_pipeline``);
            ``training_engine`` defaults to ``local``.

    Returns:
        A dict with ``run_id``, ``run_dir``, ``report`` (the run's report.json), ``report_html``
        (its page), ``published`` (bool), ``model_dir`` (or None) and ``error`` (the failure
        message, or None).

    Raises:
        ValueError: An unknown parameter (naming the nearest valid ones) or a value of the
            wrong type, before anything runs.
    """
    from kfp_edge.pipelines.edge_pipeline import build_edge_pipeline

    pipeline = build_edge_pipeline()
    run_id = run_id or new_run_id()
    run_dir(".", run_id)  # an invalid run id fails here, before anything runs
    params = coerce_arguments(params, runnable_parameters(pipeline))
    workspace_path, error = run_pipeline_locally(pipeline, workspace, run_id, verbose, **params)
    directory = run_dir(workspace_path, run_id)
    report = read_report(directory)
    page = write_run_report(directory) if report else None
    publish = report.get("publish") or {}
    return {
        "run_id": run_id,
        "run_dir": str(directory),
        "report": report,
        "report_html": str(page) if page else None,
        "published": bool(publish) and error is None,
        "model_dir": publish.get("model_dir"),
        "error": error,
    }


def runnable_parameters(pipeline) -> dict:
    """The pipeline's parameters a local run takes (workspace and run id are its own)."""
    params = function_parameters(pipeline)
    return {k: v for k, v in params.items() if k not in ("workspace", "run_id")}


def variant_table(report: dict) -> list[dict]:
    """Returns one row per evaluated variant: size, gzip size, accuracy, latency, published."""
    evaluation = report.get("evaluation") or {}
    gate = report.get("gate") or {}
    published = (report.get("publish") or {}).get("variant")
    rows = []
    for v in evaluation.get("variants", []):
        result = (gate.get("results") or {}).get(v["name"], {})
        rows.append(
            {
                "variant": v["name"],
                "size_bytes": v["size_bytes"],
                "gzip_bytes": v["gzip_bytes"],
                "accuracy": v["accuracy"],
                "p50_us": v["latency_us"]["p50"],
                "p95_us": v["latency_us"]["p95"],
                "gate": "pass" if result.get("passed") else "; ".join(result.get("reasons", [])),
                "published": v["name"] == published,
            }
        )
    return rows


def format_table(rows: list[dict]) -> str:
    """Formats :func:`variant_table` rows as a plain-text table."""
    header = ("variant", "size B", "gzip B", "accuracy", "p50 µs", "p95 µs", "published", "gate")
    lines = [
        (
            r["variant"],
            f"{r['size_bytes']:,}",
            f"{r['gzip_bytes']:,}",
            f"{r['accuracy']:.4f}",
            f"{r['p50_us']:.1f}",
            f"{r['p95_us']:.1f}",
            "yes" if r["published"] else "no",
            r["gate"],
        )
        for r in rows
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *lines, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(
        [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
        + [fmt.format(*line) for line in lines]
    )


def print_summary(result: dict) -> None:
    """Prints the variant table and where the published model lies."""
    report = result["report"]
    print()
    etl = report.get("etl") or {}
    if etl:
        splits = ", ".join(f"{k} {v}" for k, v in (etl.get("rows_per_split") or {}).items())
        print(
            f"ETL: {etl.get('rows_good', '?')} good rows, {etl.get('rows_bad', 0)} quarantined"
            f" -> {etl.get('examples', '?')} examples ({splits})"
        )
    rows = variant_table(report)
    if rows:
        print(format_table(rows))
    page = result.get("report_html") or Path(result["run_dir"]) / "report.json"
    print(f"\nrun report: {page}")
    print(f"logs: {Path(result['run_dir']) / LOGS_DIR}")
    if result["published"]:
        publish = report["publish"]
        print(
            f"published: {publish['model_name']} version {publish['version']} "
            f"({publish['variant']}) at {publish['model_dir']}"
        )
    else:
        print(f"nothing published: {result['error'] or 'the pipeline did not finish'}")


def run_retrain_local(
    input_path: str, workspace: str | None = None, run_id: str | None = None, **params
) -> dict:
    """Runs the retraining pipeline locally (kfp.local SubprocessRunner, this environment).

    Args:
        input_path: New observations (file or directory).
        workspace: Directory standing for the workspace PV (default ``./.kfp-edge``).
        run_id: Run id of the drift check (default: a fresh ``retrain-<timestamp>`` id).
        **params: Other pipeline parameters; ``training_engine`` defaults to ``local``.

    Returns:
        ``{"run_id", "drift" (the decision), "retrained" (bool), "train_run_id", "report"
        (the retraining run's report, or {}), "published" (bool), "version" (or None),
        "error" (or None)}``.
    """
    from kfp_edge.pipelines.retrain_pipeline import build_retrain_pipeline

    run_id = run_id or new_run_id().replace("edge-", "retrain-", 1)
    workspace_path, error = run_pipeline_locally(
        build_retrain_pipeline(), workspace, run_id, input_path=str(input_path), **params
    )
    drift_report = read_report(run_dir(workspace_path, run_id))
    train_run_id = f"{run_id}-retrain"
    train_report = read_report(run_dir(workspace_path, train_run_id))
    publish = train_report.get("publish") or {}
    return {
        "run_id": run_id,
        "drift": drift_report.get("drift"),
        "retrained": "retrain_input" in drift_report,
        "train_run_id": train_run_id if train_report else None,
        "report": train_report,
        "published": bool(publish) and error is None,
        "version": publish.get("version"),
        "error": error,
    }
