"""The TFJob launcher: create a TFJob through the Kubernetes API and follow it to the end.

:func:`launch` runs these steps (each a function of its own):

1. :func:`create_or_adopt`: checks that the Training Operator is installed, then creates the
   job; a job of the same name that already exists (a retried kfp step) is adopted, with its
   owner moved to this pod; a failed one (or one being deleted) is replaced;
2. :func:`follow`: follows the job's conditions with a watch on the job (transient API errors
   retried with backoff, re-listed on 410 Gone), streams the chief's log, fails pods that stay
   Pending too long with the scheduler's message, and enforces the launcher's own timeout and
   attempt limit (the operator ignores backoffLimit for retryable exit codes);
3. :func:`explain_failure`: on failure, reads the failed replicas' exit codes, termination
   reasons and log tails before anything is deleted;
4. :func:`finish`: deletes the job when it finished or the launcher gave up for a stated reason
   (unless asked to keep it), never because the launcher's own connection failed.

SIGTERM (the run was cancelled) deletes the job before the launcher exits; the job also carries
an ownerReference to the launcher's pod, so Kubernetes collects it even after a SIGKILL.

The Kubernetes client is configured from the pod's service account (in-cluster), or from
``~/.kube/config`` outside a cluster; tests pass an ``ApiClient`` of their own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, TextIO

from kfp_edge.tfjob_training.chief_log import ChiefLog
from kfp_edge.tfjob_training.job_api import ApiUnavailable, JobApi, OperatorMissing
from kfp_edge.tfjob_training.job_outcome import (
    TERMINAL,
    Outcome,
    current_condition,
    describe_failures,
    job_outcome,
    pending_too_long,
    replica_failures,
    restart_stamps,
)
from kfp_edge.tfjob_training.local_tfjob_engine import TFJobFailed

_WATCH_WINDOW_SECONDS = 300
SA_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


class Cancelled(BaseException):
    """The launcher received SIGTERM: the run was cancelled.

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` swallows it.
    """


@dataclass
class Limits:
    """When the launcher gives up on a job."""

    timeout_seconds: float = 3600
    attempt_limit: int = 3
    pending_timeout_seconds: float = 600
    deadline: float = 0.0

    def __post_init__(self):
        self.deadline = time.monotonic() + float(self.timeout_seconds)


@dataclass
class _Followed:
    job: dict
    resource_version: str | None = None
    stamps: set = field(default_factory=set)
    last_type: str | None = None
    pending_since: dict = field(default_factory=dict)


def _api_client(api_client=None):
    if api_client is not None:
        return api_client
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


def launcher_owner(namespace: str, environ=None, sa_namespace: str = SA_NAMESPACE) -> dict | None:
    """Returns the ownerReference to this launcher's pod, or None outside such a pod.

    KFP sets ``KFP_POD_NAME`` and ``KFP_POD_UID`` in every step's pod from the downward API.
    An owner must live in the TFJob's namespace (Kubernetes deletes a dependent whose owner is
    in another one), so there is no owner when the namespaces differ.

    Args:
        namespace: The TFJob's namespace.
        environ: The environment (``os.environ`` when None).
        sa_namespace: The file with the pod's own namespace.
    """
    env = os.environ if environ is None else environ
    name, uid = env.get("KFP_POD_NAME"), env.get("KFP_POD_UID")
    try:
        own_namespace = open(sa_namespace).read().strip()
    except OSError:
        own_namespace = env.get("KFP_POD_NAMESPACE", "")
    if not (name and uid) or own_namespace != namespace:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": name,
        "uid": uid,
        "controller": False,
        "blockOwnerDeletion": False,
    }


def create_or_adopt(
    api: JobApi, manifest: dict, limits: Limits, say, before_create=None
) -> tuple[dict, bool]:
    """Creates the TFJob, or adopts a live one of the same name; returns ``(job, adopted)``.

    Raises:
        OperatorMissing: If the API server has no TFJob resource.
    """
    from kubernetes.client.exceptions import ApiException

    api.check_operator()
    owner = ((manifest["metadata"].get("ownerReferences")) or [None])[0]
    existing = api.get()
    if existing is not None:
        cond = current_condition(existing)
        if cond and cond["type"] == "Failed" or existing["metadata"].get("deletionTimestamp"):
            say(f"a failed or deleted job of this name exists ({_describe(cond)}); replacing it")
            api.delete()
            api.wait_gone(limits.deadline)
        else:
            say(f"already exists ({_describe(cond)}); adopting it")
            if owner is not None:
                _move_owner(api, owner, say)
            return existing, True
    if before_create is not None:
        before_create()
    try:
        job = api.create(manifest)
    except ApiException as exc:
        if exc.status != 409:
            raise
        say("created by someone else meanwhile; adopting it")
        return api.get() or manifest, True
    say("created")
    return job, False


def _move_owner(api: JobApi, owner: dict, say) -> None:
    """Makes this pod the adopted job's owner (best effort: the right to patch may lack)."""
    from kubernetes.client.exceptions import ApiException

    try:
        api.set_owner(owner)
    except ApiException as exc:
        if exc.status != 403:
            raise
        say("cannot patch the job's owner (no 'patch' right on tfjobs); it keeps its old one")


def _describe(cond: dict | None) -> str:
    return f"{cond['type']}: {cond.get('reason', '')}" if cond else "no condition yet"


def _watch_once(api: JobApi, state: _Followed, window: float) -> Outcome | None:
    """Waits (one watch) for the job's next change; returns an outcome if it was deleted."""
    cond, stamps = current_condition(state.job), state.stamps
    for event in api.watch(state.resource_version, window):
        obj = event["object"]
        state.resource_version = (obj.get("metadata") or {}).get("resourceVersion")
        if event["type"] == "DELETED":
            return Outcome("Failed", "Deleted", "the TFJob was deleted by someone else")
        if event["type"] in ("ADDED", "MODIFIED"):
            state.job = obj
            if current_condition(obj) != cond or restart_stamps(obj) - stamps:
                return None
    return None


def _wait_for_change(api: JobApi, state: _Followed, window: float) -> Outcome | None:
    """One watch, and what to do when it fails: re-list on 410, retry transient errors."""
    from kubernetes.client.exceptions import ApiException

    from kfp_edge.tfjob_training.job_api import is_transient

    try:
        return _watch_once(api, state, window)
    except ApiException as exc:
        if exc.status != 410 and not is_transient(exc):
            raise
        if exc.status == 410:  # our resourceVersion is too old: re-list, then watch anew
            state.resource_version = None
        else:
            api.say(f"watch failed ({exc.status} {exc.reason}); re-reading the job")
    except Exception as exc:  # noqa: BLE001 - classified just below
        if not is_transient(exc):
            raise
        api.say(f"watch connection lost ({type(exc).__name__}); re-reading the job")
        api.sleep(0.5)
    job = api.get()
    if job is None:
        return Outcome("Failed", "Deleted", "the TFJob was deleted by someone else")
    state.job = job
    return None


def _report_condition(state: _Followed, say, log_thread) -> None:
    cond = current_condition(state.job)
    if cond and cond["type"] != state.last_type:
        state.last_type = cond["type"]
        say(f"{cond['type']} ({cond.get('reason', '')}): {cond.get('message', '')}")
        if cond["type"] in ("Running", "Restarting") and log_thread and not log_thread.is_alive():
            if not log_thread.stop.is_set():
                log_thread.start()


def follow(
    api: JobApi, job: dict, limits: Limits, say, log_thread=None
) -> tuple[dict, Outcome, int]:
    """Follows the job until it ends or the launcher gives up.

    Returns:
        ``(the job as last read, its outcome, the restarts seen)``.
    """
    state = _Followed(job)
    while True:
        _report_condition(state, say, log_thread)
        state.stamps |= restart_stamps(state.job)
        remaining = limits.deadline - time.monotonic()
        outcome = job_outcome(
            state.job,
            len(state.stamps),
            attempt_limit=limits.attempt_limit,
            timed_out=remaining <= 0,
            timeout_seconds=limits.timeout_seconds,
        )
        if outcome is None:
            outcome = pending_too_long(
                api.pods(), state.pending_since, time.monotonic(), limits.pending_timeout_seconds
            )
        if outcome is not None:
            return state.job, outcome, len(state.stamps)
        window = min(remaining, _WATCH_WINDOW_SECONDS)
        if state.pending_since:  # wake up when the first Pending pod reaches its limit
            first = min(state.pending_since.values()) + limits.pending_timeout_seconds
            window = min(window, max(1.0, first - time.monotonic() + 0.5))
        outcome = _wait_for_change(api, state, window)
        if outcome is not None:
            return state.job, outcome, len(state.stamps)


def explain_failure(api: JobApi, tail_lines: int = 20) -> list[dict]:
    """Returns the failed replicas (exit code, reason, log tail) of the job, read from its pods."""
    failures = replica_failures(api.pods())
    for f in failures:
        try:
            f["log_tail"] = api.log_tail(f["pod"], f.get("previous", False), tail_lines)
        except Exception as exc:  # noqa: BLE001 - the log may be gone with an evicted pod
            f["log_tail"] = f"(log unavailable: {exc})".splitlines()[0]
    return failures


def finish(api: JobApi, outcome: Outcome, *, keep_job: bool, keep_failed_job: bool, say) -> None:
    """Deletes the finished job unless it is to be kept (or already gone)."""
    if outcome.reason == "Deleted":
        return
    if keep_job or (keep_failed_job and not outcome.succeeded):
        say(f"kept ({'keep_job' if keep_job else 'keep_failed_job'}=True)")
        return
    if api.delete():
        say("deleted")


@contextlib.contextmanager
def cancel_on_sigterm():
    """Turns SIGTERM into :class:`Cancelled` in the main thread while the block runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Cancelled("SIGTERM received: the run was cancelled")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def launch(
    manifest: dict,
    *,
    timeout_seconds: float = 3600,
    attempt_limit: int = 3,
    keep_job: bool = False,
    keep_failed_job: bool = False,
    pending_timeout_seconds: float = 600,
    stream: TextIO | None = None,
    api_client=None,
    stream_logs: bool = True,
    retry_seconds: float = 300,
    before_create: Callable[[], None] | None = None,
) -> dict:
    """Creates (or adopts) a TFJob and follows it until it succeeds or fails.

    Steps: create or adopt the job; follow it (chief log streamed); on failure explain it from
    its pods; delete or keep it; return its status or raise with its reason. SIGTERM at any
    point deletes the job and raises ``TFJobFailed("Cancelled")``.

    Args:
        manifest: The TFJob (see :func:`kfp_edge.tfjob_training.tfjob_spec.build_tfjob`).
        timeout_seconds: The launcher's own timeout for the whole job.
        attempt_limit: Restarts allowed before the launcher fails the job itself.
        keep_job: Keep the TFJob after it finished instead of deleting it.
        keep_failed_job: Keep the TFJob (pods, logs) when it failed, for debugging.
        pending_timeout_seconds: How long a replica pod may stay Pending (0: forever).
        stream: Where progress and the chief's log go (stdout when None).
        api_client: A ``kubernetes.client.ApiClient``; in-cluster configuration when None.
        stream_logs: Stream the chief's log.
        retry_seconds: How long transient API errors are retried before the launcher gives up.
        before_create: Called just before a new job is created (not when one is adopted).

    Returns:
        The job's final status (conditions, restarts, and whether it was adopted).

    Raises:
        TFJobFailed: With the job's failure reason and the failed replicas, or the launcher's
            own (``LauncherTimeout``, ``AttemptLimitExceeded``, ``PodPending``, ``Deleted``,
            ``Cancelled``, ``OperatorNotInstalled``, ``ApiUnavailable``).
    """
    stream = stream or sys.stdout
    name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]

    def say(message: str) -> None:
        stream.write(f"[launcher] TFJob {namespace}/{name}: {message}\n")
        stream.flush()

    api = JobApi(_api_client(api_client), namespace, name, retry_seconds=retry_seconds, say=say)
    limits = Limits(timeout_seconds, attempt_limit, pending_timeout_seconds)
    with cancel_on_sigterm():
        try:
            return _run(
                api,
                manifest,
                limits,
                say,
                stream if stream_logs else None,
                before_create,
                keep_job=keep_job,
                keep_failed_job=keep_failed_job,
            )
        except Cancelled as exc:
            say(f"{exc}; deleting the job")
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # finish the cleanup
            api.delete(propagation="Background")
            raise TFJobFailed("Cancelled", str(exc), {"result": "Failed"}) from exc
        except OperatorMissing as exc:
            raise TFJobFailed("OperatorNotInstalled", str(exc), {"result": "Failed"}) from exc
        except ApiUnavailable as exc:
            say("giving up; the job is left to its activeDeadlineSeconds and its owner")
            raise TFJobFailed("ApiUnavailable", str(exc), {"result": "Failed"}) from exc


def _run(api, manifest, limits, say, log_stream, before_create, **keep) -> dict:
    job, adopted = create_or_adopt(api, manifest, limits, say, before_create)
    log_thread = ChiefLog(api, log_stream) if log_stream is not None else None
    try:
        job, outcome, restarts = follow(api, job, limits, say, log_thread)
    except BaseException:
        if log_thread is not None:
            log_thread.stop.set()
        raise
    if log_thread is not None:  # the chief's last lines, when its container has ended
        ended = (current_condition(job) or {}).get("type") in TERMINAL
        log_thread.finish(timeout=15.0 if ended else 0.0)
    failures = [] if outcome.succeeded or outcome.reason == "Deleted" else explain_failure(api)
    finish(api, outcome, say=say, **keep)
    status = {
        "conditions": (job.get("status") or {}).get("conditions") or [],
        "restarts": restarts,
        "adopted": adopted,
        "result": outcome.result,
        "failed_replicas": failures,
    }
    if not outcome.succeeded:
        message = outcome.message + (f"\n{describe_failures(failures)}" if failures else "")
        say(f"failed: {outcome.reason}: {message}")
        raise TFJobFailed(outcome.reason, message, status)
    say("succeeded")
    return status
