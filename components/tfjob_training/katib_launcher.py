"""The search on the cluster: create a Katib Experiment, follow it, return its best trial.

Like the TFJob launcher: an Experiment of the same name that already exists (a retried step)
is adopted, a failed one is replaced; reads are retried on transient API errors
(:class:`.job_api.JobApi`); SIGTERM (the run was cancelled) and the launcher's own timeout
delete the Experiment, whose trials and their TFJobs Katib deletes with it. The result is
Katib's ``status.currentOptimalTrial``: the best trial's name (its directory on the workspace
volume), its parameter assignments and its observed metrics.
"""

from __future__ import annotations

import time
from typing import Callable

GROUP, VERSION, PLURAL = "kubeflow.org", "v1beta1", "experiments"
TERMINAL = ("Succeeded", "Failed")


class ExperimentFailed(RuntimeError):
    """The Katib Experiment failed, timed out or was cancelled; the message says which."""


def experiment_condition(experiment: dict) -> str | None:
    """Returns ``Succeeded`` or ``Failed`` once the Experiment is finished, else None."""
    for condition in (experiment.get("status") or {}).get("conditions") or []:
        if condition.get("type") in TERMINAL and condition.get("status") == "True":
            return condition["type"]
    return None


def best_trial(experiment: dict) -> dict:
    """Returns ``{"name", "assignments", "metrics"}`` of the Experiment's optimal trial.

    Raises:
        ExperimentFailed: If Katib reports no optimal trial (no trial succeeded).
    """
    optimal = (experiment.get("status") or {}).get("currentOptimalTrial") or {}
    name = optimal.get("bestTrialName")
    if not name:
        raise ExperimentFailed(
            f"Experiment {experiment['metadata']['name']} finished without a best trial"
        )
    return {
        "name": name,
        "assignments": {a["name"]: a["value"] for a in optimal.get("parameterAssignments") or []},
        "metrics": {
            m["name"]: m.get("max", m.get("latest"))
            for m in (optimal.get("observation") or {}).get("metrics") or []
        },
    }


def _call(api, what: str, method: str, *args, **kwargs):
    return api.retry(what, getattr(api.custom, method), GROUP, VERSION, *args, **kwargs)


def _get(api, namespace: str, name: str) -> dict | None:
    from kubernetes.client.exceptions import ApiException

    try:
        return _call(
            api, "read Experiment", "get_namespaced_custom_object", namespace, PLURAL, name
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _delete(api, namespace: str, name: str) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        _call(api, "delete Experiment", "delete_namespaced_custom_object", namespace, PLURAL, name)
    except ApiException as exc:
        if exc.status != 404:
            raise


def create_or_adopt(api, experiment: dict, say: Callable[[str], None]) -> dict:
    """Creates the Experiment; adopts a running or finished one, replaces a failed one."""
    from kubernetes.client.exceptions import ApiException

    namespace, name = experiment["metadata"]["namespace"], experiment["metadata"]["name"]
    existing = _get(api, namespace, name)
    if existing is not None and experiment_condition(existing) == "Failed":
        say(f"Experiment {name} exists and failed: replacing it")
        _delete(api, namespace, name)
        existing = None
    if existing is not None:
        say(f"Experiment {name} exists: adopting it")
        return existing
    try:
        return _call(
            api,
            "create Experiment",
            "create_namespaced_custom_object",
            namespace,
            PLURAL,
            experiment,
        )
    except ApiException as exc:
        if exc.status == 404:
            raise ExperimentFailed(
                "Katib is not installed: the API server has no experiments.kubeflow.org/v1beta1"
            ) from exc
        raise


def run_experiment(
    experiment: dict,
    *,
    api_client=None,
    timeout_seconds: float = 6 * 3600,
    poll_seconds: float = 15.0,
    retry_seconds: float = 300.0,
    say: Callable[[str], None] = print,
) -> dict:
    """Creates (or adopts) the Experiment, waits until it finishes, returns its best trial.

    Steps: create or adopt; poll the Experiment (transient errors retried) and report its trial
    counts when they change; on Succeeded return :func:`best_trial`; on Failed, on the timeout
    or on SIGTERM delete the Experiment and raise :class:`ExperimentFailed`.

    Args:
        experiment: The Experiment (:func:`.katib.build_experiment`).
        api_client: Kubernetes ``ApiClient``; in-cluster configuration (or kubeconfig) if None.
        timeout_seconds: The launcher's own limit.
        poll_seconds: Seconds between reads.
        retry_seconds: How long transient API errors are retried before giving up.
        say: Where progress lines go.
    """
    from kfp_edge.tfjob_training.job_api import JobApi
    from kfp_edge.tfjob_training.launcher import Cancelled, _api_client, cancel_on_sigterm

    namespace, name = experiment["metadata"]["namespace"], experiment["metadata"]["name"]
    api = JobApi(_api_client(api_client), namespace, name, retry_seconds=retry_seconds, say=say)
    deadline = time.monotonic() + timeout_seconds
    try:
        with cancel_on_sigterm():
            current = create_or_adopt(api, experiment, say)
            seen = None
            while (outcome := experiment_condition(current)) is None:
                if time.monotonic() > deadline:
                    raise ExperimentFailed(
                        f"Experiment {name}: no result after {timeout_seconds:g}s"
                    )
                counts = _counts(current)
                if counts != seen:
                    say(f"Experiment {name}: {counts}")
                    seen = counts
                time.sleep(poll_seconds)
                current = _get(api, namespace, name) or {}
                if not current:
                    raise ExperimentFailed(f"Experiment {name} was deleted by someone else")
    except (ExperimentFailed, Cancelled) as exc:
        _delete(api, namespace, name)
        if isinstance(exc, Cancelled):
            raise ExperimentFailed(f"Experiment {name}: cancelled; deleted") from None
        raise
    if outcome == "Failed":
        message = next(
            (
                c.get("message", "")
                for c in current["status"]["conditions"]
                if c["type"] == "Failed"
            ),
            "",
        )
        raise ExperimentFailed(f"Experiment {name} failed: {message}")
    return best_trial(current)


def _counts(experiment: dict) -> str:
    status = experiment.get("status") or {}
    keys = ("trialsRunning", "trialsSucceeded", "trialsFailed", "trialsEarlyStopped")
    return ", ".join(f"{k[6:].lower()} {status.get(k, 0)}" for k in keys)
