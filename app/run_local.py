"""Run the edge pipeline on this machine: kfp.local's SubprocessRunner in the current environment.

Each step runs as a subprocess of this Python, the workspace is a local directory standing for
the PersistentVolume, and training runs the same TFJob spec on the local TFJob engine.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

from kfp_edge.workspace import DEFAULT_LOCAL_WORKSPACE, read_report, run_dir


def new_run_id() -> str:
    """Returns a fresh run id of the form ``edge-YYYYmmdd-HHMMSS-ffffff`` (UTC)."""
    return "edge-" + _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S-%f")


def parse_params(pairs: list[str]) -> dict:
    """Parses ``NAME=VALUE`` pairs; values are read as YAML (numbers, lists, booleans).

    Raises:
        ValueError: If a pair has no ``=``.
    """
    import yaml

    params = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"pipeline parameter {pair!r} is not NAME=VALUE")
        params[name.strip()] = yaml.safe_load(value) if value else ""
    return params


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
    pipeline, workspace: str | None, run_id: str, **params
) -> tuple[Path, str | None]:
    """Runs a kfp-edge pipeline function under kfp.local's SubprocessRunner in this environment.

    Args:
        pipeline: A ``@dsl.pipeline`` function with ``workspace`` and ``run_id`` parameters.
        workspace: Directory standing for the workspace PV (default ``./.kfp-edge``).
        run_id: Run id passed to the pipeline.
        **params: Other pipeline parameters; ``training_engine`` defaults to ``local``.

    Returns:
        ``(workspace path, error)``: the resolved workspace and the failure message or None.
    """
    from kfp import local

    workspace_path = Path(workspace or DEFAULT_LOCAL_WORKSPACE).resolve()
    workspace_path.mkdir(parents=True, exist_ok=True)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(workspace_path / "kfp-local"),
        raise_on_error=True,
    )
    params.setdefault("training_engine", "local")
    params = whole_numbers_as_floats(pipeline, params)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        pipeline(workspace=str(workspace_path), run_id=run_id, **params)
    except RuntimeError as exc:  # kfp.local raises when a task fails; its log says why
        return workspace_path, str(exc)
    return workspace_path, None


def run_local(workspace: str | None = None, run_id: str | None = None, **params) -> dict:
    """Runs the edge pipeline locally and returns what it produced.

    Args:
        workspace: Directory standing for the workspace PV (default ``./.kfp-edge``).
        run_id: Run id (default: a fresh timestamped id).
        **params: Other pipeline parameters (see ``kfp_edge.pipelines.edge_pipeline``);
            ``training_engine`` defaults to ``local``.

    Returns:
        A dict with ``run_id``, ``run_dir``, ``report`` (the run's report.json), ``published``
        (bool), ``model_dir`` (or None) and ``error`` (the failure message, or None).
    """
    from kfp_edge.pipelines.edge_pipeline import build_edge_pipeline

    run_id = run_id or new_run_id()
    workspace_path, error = run_pipeline_locally(build_edge_pipeline(), workspace, run_id, **params)
    directory = run_dir(workspace_path, run_id)
    report = read_report(directory)
    publish = report.get("publish") or {}
    return {
        "run_id": run_id,
        "run_dir": str(directory),
        "report": report,
        "published": bool(publish) and error is None,
        "model_dir": publish.get("model_dir"),
        "error": error,
    }


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
        print(
            f"ETL: {etl.get('rows_good', '?')} good rows, {etl.get('rows_bad', 0)} quarantined, "
            f"splits {etl.get('rows_per_split', {})}"
        )
    rows = variant_table(report)
    if rows:
        print(format_table(rows))
    print(f"\nrun report: {Path(result['run_dir']) / 'report.json'}")
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
