"""The TFJob launcher: create a TFJob through the Kubernetes API and follow it to the end.

- creates the job in its namespace; a job of the same name that already exists (a retried kfp
  step) is adopted, not duplicated; a finished-and-failed one is replaced;
- follows the job's conditions (Created, Running, Restarting, Succeeded, Failed) with a watch
  on the job (re-opened from the last resourceVersion when the server ends it), not a poll;
- streams the chief's log into the step's log while the job runs;
- enforces its own timeout and attempt limit (the operator ignores backoffLimit for retryable
  exit codes under ``restartPolicy: ExitCode``);
- deletes the job when done unless asked to keep it, and fails with the job's own reason.

The Kubernetes client is configured from the pod's service account (in-cluster), or from
``~/.kube/config`` outside a cluster; tests pass an ``ApiClient`` of their own.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from kfp_edge.tfjob_training.local_tfjob_engine import TFJobFailed
from kfp_edge.tfjob_training.tfjob_spec import GROUP, PLURAL, VERSION

TERMINAL = ("Succeeded", "Failed")
_WATCH_WINDOW_SECONDS = 300


def _api_client(api_client=None):
    if api_client is not None:
        return api_client
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


def current_condition(job: dict) -> dict | None:
    """Returns the latest condition with status True of a TFJob object, or None."""
    conditions = [
        c for c in (job.get("status") or {}).get("conditions") or [] if c.get("status") == "True"
    ]
    if not conditions:
        return None
    return conditions[-1]


def _restart_stamps(job: dict) -> set:
    """Returns the transition times of the job's Restarting condition(s).

    The operator keeps one condition per type and moves its lastTransitionTime at each restart,
    so the launcher counts the distinct stamps it has seen over the watch.
    """
    return {
        c.get("lastTransitionTime") or c.get("lastUpdateTime") or str(i)
        for i, c in enumerate((job.get("status") or {}).get("conditions") or [])
        if c.get("type") == "Restarting"
    }


class _ChiefLog(threading.Thread):
    """Streams the chief pod's log (each container start once) until stopped."""

    def __init__(self, core, namespace: str, job: str, stream: TextIO):
        super().__init__(daemon=True, name=f"chief-log-{job}")
        self.core, self.namespace, self.job, self.stream = core, namespace, job, stream
        self.stop = threading.Event()
        self.seen: set[tuple[str, int]] = set()

    def _chief_pod(self):
        selector = (
            f"training.kubeflow.org/job-name={self.job},"
            "training.kubeflow.org/replica-type=chief,"
            "training.kubeflow.org/replica-index=0"
        )
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=selector).items
        return pods[0] if pods else None

    def run(self):
        from kubernetes.client.exceptions import ApiException

        while not self.stop.is_set():
            try:
                pod = self._chief_pod()
                if pod is None or pod.status is None or pod.status.phase == "Pending":
                    self.stop.wait(1.0)
                    continue
                restarts = sum(s.restart_count or 0 for s in pod.status.container_statuses or [])
                key = (pod.metadata.uid, restarts)
                if key in self.seen:
                    self.stop.wait(1.0)
                    continue
                self.seen.add(key)
                resp = self.core.read_namespaced_pod_log(
                    pod.metadata.name,
                    self.namespace,
                    container="tensorflow",
                    follow=True,
                    _preload_content=False,
                )
                for chunk in resp.stream(4096):
                    self.stream.write(chunk.decode(errors="replace"))
                    self.stream.flush()
                    if self.stop.is_set():
                        break
                resp.release_conn()
            except ApiException as exc:
                self.stream.write(f"[launcher] chief log unavailable: {exc.status} {exc.reason}\n")
                self.stop.wait(2.0)
            except Exception as exc:  # noqa: BLE001 - the log is best effort; the watch decides
                self.stream.write(f"[launcher] chief log interrupted: {exc}\n")
                self.stop.wait(2.0)


def launch(
    manifest: dict,
    *,
    timeout_seconds: float = 3600,
    attempt_limit: int = 3,
    keep_job: bool = False,
    stream: TextIO | None = None,
    api_client=None,
    stream_logs: bool = True,
) -> dict:
    """Creates (or adopts) a TFJob and follows it until it succeeds or fails.

    Args:
        manifest: The TFJob (see :func:`kfp_edge.tfjob_training.tfjob_spec.build_tfjob`).
        timeout_seconds: The launcher's own timeout for the whole job.
        attempt_limit: Restarts allowed before the launcher fails the job itself.
        keep_job: Keep the TFJob after it finished instead of deleting it.
        stream: Where progress and the chief's log go (stdout when None).
        api_client: A ``kubernetes.client.ApiClient``; in-cluster configuration when None.
        stream_logs: Stream the chief's log.

    Returns:
        The job's final status (conditions, restarts, and whether it was adopted).

    Raises:
        TFJobFailed: With the job's failure reason, or ``LauncherTimeout`` /
            ``AttemptLimitExceeded`` / ``Deleted`` when the launcher ends it.
    """
    from kubernetes import client, watch
    from kubernetes.client.exceptions import ApiException

    stream = stream or sys.stdout
    api = _api_client(api_client)
    custom = client.CustomObjectsApi(api)
    core = client.CoreV1Api(api)
    name = manifest["metadata"]["name"]
    namespace = manifest["metadata"]["namespace"]
    deadline = time.monotonic() + float(timeout_seconds)

    def say(message: str) -> None:
        stream.write(f"[launcher] TFJob {namespace}/{name}: {message}\n")
        stream.flush()

    def get_job():
        return custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)

    def delete_job() -> None:
        try:
            custom.delete_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                body=client.V1DeleteOptions(propagation_policy="Foreground"),
            )
            say("deleted")
        except ApiException as exc:
            if exc.status != 404:
                raise

    adopted = False
    try:
        job = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest)
        say("created")
    except ApiException as exc:
        if exc.status != 409:
            raise
        job = get_job()
        cond = current_condition(job)
        if cond and cond["type"] == "Failed":
            say(f"a failed job of this name exists ({cond.get('reason')}); replacing it")
            delete_job()
            while True:
                try:
                    job = custom.create_namespaced_custom_object(
                        GROUP, VERSION, namespace, PLURAL, manifest
                    )
                    break
                except ApiException as again:
                    if again.status != 409 or time.monotonic() > deadline:
                        raise
                    time.sleep(1.0)
            say("created")
        else:
            adopted = True
            say(f"already exists ({cond['type'] if cond else 'no condition yet'}); adopting it")

    log_thread = _ChiefLog(core, namespace, name, stream) if stream_logs else None
    last_type = None
    outcome: tuple[str, str, str] | None = None
    resource_version = None
    restart_stamps: set = set()
    try:
        while outcome is None:
            cond = current_condition(job)
            if cond and cond["type"] != last_type:
                last_type = cond["type"]
                say(f"{cond['type']} ({cond.get('reason', '')}): {cond.get('message', '')}")
                if (
                    cond["type"] in ("Running", "Restarting")
                    and log_thread is not None
                    and not log_thread.is_alive()
                ):
                    log_thread.start()
            restart_stamps |= _restart_stamps(job)
            restarts = len(restart_stamps)
            if cond and cond["type"] == "Succeeded":
                outcome = ("Succeeded", cond.get("reason", ""), cond.get("message", ""))
                break
            if cond and cond["type"] == "Failed":
                outcome = ("Failed", cond.get("reason") or "Failed", cond.get("message", ""))
                break
            if restarts > attempt_limit:
                outcome = (
                    "Failed",
                    "AttemptLimitExceeded",
                    f"{restarts} restarts exceed the launcher's attempt limit {attempt_limit}",
                )
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                outcome = (
                    "Failed",
                    "LauncherTimeout",
                    f"not finished after the launcher's timeout of {timeout_seconds}s",
                )
                break
            # Wait for the next change with a watch on this one object.
            w = watch.Watch()
            changed = False
            try:
                for event in w.stream(
                    custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    namespace,
                    PLURAL,
                    field_selector=f"metadata.name={name}",
                    resource_version=resource_version,
                    timeout_seconds=max(1, int(min(remaining, _WATCH_WINDOW_SECONDS))),
                ):
                    obj = event["object"]
                    resource_version = (obj.get("metadata") or {}).get("resourceVersion")
                    if event["type"] == "DELETED":
                        outcome = ("Failed", "Deleted", "the TFJob was deleted by someone else")
                        break
                    if event["type"] in ("ADDED", "MODIFIED"):
                        job = obj
                        changed = True
                        if current_condition(job) != cond or _restart_stamps(job) - restart_stamps:
                            break
            except ApiException as exc:
                if exc.status != 410:  # 410 Gone: our resourceVersion is too old; re-list
                    raise
                resource_version = None
            finally:
                w.stop()
            if not changed and outcome is None:
                job = get_job()  # the watch window ended quietly: re-read, then watch again
    finally:
        if log_thread is not None and log_thread.is_alive():
            log_thread.stop.set()
            log_thread.join(timeout=5.0)
        if not keep_job:
            delete_job()
        elif outcome:
            say("kept (keep_job=True)")

    status = {
        "conditions": (job.get("status") or {}).get("conditions") or [],
        "restarts": len(restart_stamps),
        "adopted": adopted,
        "result": outcome[0],
    }
    if outcome[0] != "Succeeded":
        say(f"failed: {outcome[1]}: {outcome[2]}")
        raise TFJobFailed(outcome[1], outcome[2], status)
    say("succeeded")
    return status
