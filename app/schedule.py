"""A Kubeflow recurring run of the retraining pipeline: drift check on a schedule.

Authentication and parameter checks are those of ``kfp-edge submit`` (:mod:`kfp_edge.app.submit`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

DEFAULT_CRON = "0 0 2 * * *"  # every day at 02:00:00 (KFP cron: seconds first)
DEFAULT_JOB_NAME = "kfp-edge drift check"


def kfp_cron(expression: str) -> str:
    """Returns a cron expression in the six-field form Kubeflow Pipelines expects.

    KFP schedules take ``second minute hour day-of-month month day-of-week``; a classic
    five-field expression gets ``0`` seconds in front.

    Raises:
        ValueError: If the expression has neither five nor six fields.
    """
    fields = expression.split()
    if len(fields) == 5:
        fields.insert(0, "0")
    if len(fields) != 6:
        raise ValueError(
            f"cron expression {expression!r}: expected 6 fields (second minute hour "
            "day-of-month month day-of-week) or 5 classic ones"
        )
    return " ".join(fields)


def create_recurring_retrain(
    arguments: dict,
    cron: str = DEFAULT_CRON,
    host: str | None = None,
    namespace: str | None = None,
    experiment: str | None = None,
    job_name: str = DEFAULT_JOB_NAME,
    resources: str | None = None,
    max_concurrency: int = 1,
    service_account: str | None = None,
) -> dict:
    """Compiles the retraining pipeline and creates a recurring run of it on a KFP server.

    Args:
        arguments: Pipeline parameters (``input_path`` is required: the directory where new
            observations land); checked against the compiled pipeline's inputs.
        cron: Schedule, six-field KFP cron or five-field classic cron.
        host: KFP API address; None lets kfp.Client pick it.
        namespace: Kubeflow profile namespace (multi-user deployments).
        experiment: Experiment name; created when missing (default ``kfp-edge``).
        job_name: Display name of the recurring run.
        resources: Resource profile name or YAML path.
        max_concurrency: Runs of this schedule allowed at once (1: a check never overlaps the
            previous one, which shares the detector state on the volume).
        service_account: Kubernetes service account of the runs' pods.

    Returns:
        ``{"recurring_run_id", "experiment_id", "cron", "arguments"}``.

    Raises:
        ValueError: On a missing ``input_path``, an unknown parameter or a bad cron.
    """
    from kfp_edge.app.submit import (
        DEFAULT_EXPERIMENT,
        coerce_arguments,
        make_client,
        pipeline_parameters,
    )
    from kfp_edge.pipelines.compile import compile_pipeline

    if not arguments.get("input_path"):
        raise ValueError("the retraining pipeline needs input_path: where new observations land")
    cron = kfp_cron(cron)
    with tempfile.TemporaryDirectory(prefix="kfp-edge-schedule-") as tmp:
        package = compile_pipeline("retrain", Path(tmp) / "retrain_pipeline.yaml", resources)
        typed = coerce_arguments(arguments, pipeline_parameters(package))
        client = make_client(host, namespace)
        exp = client.create_experiment(experiment or DEFAULT_EXPERIMENT, namespace=namespace)
        job = client.create_recurring_run(
            experiment_id=exp.experiment_id,
            job_name=job_name,
            description="kfp-edge: ADWIN drift check; retrains and publishes on drift",
            cron_expression=cron,
            max_concurrency=max_concurrency,
            no_catchup=True,
            params=typed,
            pipeline_package_path=os.fspath(package),
            enabled=True,
            service_account=service_account,
        )
    return {
        "recurring_run_id": job.recurring_run_id,
        "experiment_id": exp.experiment_id,
        "cron": cron,
        "arguments": typed,
    }
