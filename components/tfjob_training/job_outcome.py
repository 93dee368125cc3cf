"""What a TFJob's state means for the launcher: pure functions of the job and its pods.

Nothing here talks to Kubernetes: the launcher reads the TFJob and its pods (as the API's JSON)
and asks these functions whether the job is over, whether a pod waits too long to be scheduled,
and how a failed replica explains itself. Tests call them with plain dicts.
"""

from __future__ import annotations

from dataclasses import dataclass

TERMINAL = ("Succeeded", "Failed")
JOB_LABEL = "training.kubeflow.org/job-name"
TYPE_LABEL = "training.kubeflow.org/replica-type"
INDEX_LABEL = "training.kubeflow.org/replica-index"


@dataclass(frozen=True)
class Outcome:
    """How a followed TFJob ended: ``result`` Succeeded or Failed, a reason and a message."""

    result: str
    reason: str
    message: str

    @property
    def succeeded(self) -> bool:
        """Whether the job succeeded."""
        return self.result == "Succeeded"


def current_condition(job: dict) -> dict | None:
    """Returns the latest condition with status True of a TFJob object, or None."""
    conditions = [
        c for c in (job.get("status") or {}).get("conditions") or [] if c.get("status") == "True"
    ]
    return conditions[-1] if conditions else None


def restart_stamps(job: dict) -> set:
    """Returns the transition times of the job's Restarting condition(s).

    The operator keeps one condition per type and moves its lastTransitionTime at each restart,
    so the launcher counts the distinct stamps it has seen over the watch.
    """
    return {
        c.get("lastTransitionTime") or c.get("lastUpdateTime") or str(i)
        for i, c in enumerate((job.get("status") or {}).get("conditions") or [])
        if c.get("type") == "Restarting"
    }


def job_outcome(
    job: dict, restarts: int, *, attempt_limit: int, timed_out: bool, timeout_seconds: float
) -> Outcome | None:
    """Returns how the job ended, or None while it runs.

    Args:
        job: The TFJob as the API returns it.
        restarts: Restarts the launcher has seen so far.
        attempt_limit: Restarts allowed before the launcher fails the job itself.
        timed_out: Whether the launcher's own timeout has passed.
        timeout_seconds: That timeout, for the message.
    """
    cond = current_condition(job)
    if cond and cond["type"] in TERMINAL:
        return Outcome(cond["type"], cond.get("reason") or cond["type"], cond.get("message", ""))
    if restarts > attempt_limit:
        return Outcome(
            "Failed",
            "AttemptLimitExceeded",
            f"{restarts} restarts exceed the launcher's attempt limit {attempt_limit}",
        )
    if timed_out:
        return Outcome(
            "Failed",
            "LauncherTimeout",
            f"not finished after the launcher's timeout of {timeout_seconds}s",
        )
    return None


def _replica(pod: dict) -> str:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return f"{labels.get(TYPE_LABEL, '?')}-{labels.get(INDEX_LABEL, '?')}"


def pending_reason(pod: dict) -> str | None:
    """Returns why a pod is not running yet (the scheduler's or kubelet's message), or None."""
    status = pod.get("status") or {}
    if status.get("phase") != "Pending":
        return None
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return f"{cond.get('reason', 'Unschedulable')}: {cond.get('message', '')}".strip()
    for cs in status.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason") not in (None, "ContainerCreating"):
            return f"{waiting['reason']}: {waiting.get('message', '')}".strip()
    return "Pending"


def pending_too_long(
    pods: list[dict], first_seen: dict, now: float, limit_seconds: float
) -> Outcome | None:
    """Fails the job when a pod has been Pending longer than ``limit_seconds``.

    Args:
        pods: The job's pods (API JSON).
        first_seen: ``{pod uid: time first seen Pending}``, updated in place (the launcher's
            clock, not the API server's, so clock skew does not matter).
        now: The current time on the same clock.
        limit_seconds: How long a pod may stay Pending; 0 or less disables the check.
    """
    pending = {}
    for pod in pods:
        reason = pending_reason(pod)
        if reason is not None:
            uid = (pod.get("metadata") or {}).get("uid") or pod["metadata"]["name"]
            pending[uid] = (pod, reason)
    for uid in list(first_seen):
        if uid not in pending:
            del first_seen[uid]
    for uid, (pod, reason) in pending.items():
        since = first_seen.setdefault(uid, now)
        if limit_seconds > 0 and now - since >= limit_seconds:
            return Outcome(
                "Failed",
                "PodPending",
                f"pod {pod['metadata']['name']} ({_replica(pod)}) has been Pending for more "
                f"than {limit_seconds:g}s: {reason}",
            )
    return None


def _terminated(cs: dict) -> dict | None:
    """The container's failed termination: its current state, else its last state."""
    for key in ("state", "lastState"):
        term = (cs.get(key) or {}).get("terminated")
        if term and term.get("exitCode", 0) != 0:
            return {**term, "previous": key == "lastState"}
    return None


def replica_failures(pods: list[dict]) -> list[dict]:
    """Returns what failed in the job's pods: replica, pod, exit code, reason, message.

    A failure is a container that terminated with a non-zero exit code (now or before its last
    restart), a pod evicted or preempted (``status.reason``, or the ``DisruptionTarget``
    condition Kubernetes sets on a pod it is about to delete).
    """
    failures = []
    for pod in pods:
        status = pod.get("status") or {}
        disruption = next(
            (
                c
                for c in status.get("conditions") or []
                if c.get("type") == "DisruptionTarget" and c.get("status") == "True"
            ),
            None,
        )
        entry = {"replica": _replica(pod), "pod": pod["metadata"]["name"], "previous": False}
        for cs in status.get("containerStatuses") or []:
            term = _terminated(cs)
            if term is not None and cs.get("name") == "tensorflow":
                entry.update(
                    exit_code=term.get("exitCode"),
                    reason=term.get("reason") or "Error",
                    message=term.get("message") or "",
                    previous=term["previous"],
                )
        if status.get("reason") in ("Evicted", "Preempting", "OutOfmemory", "Terminated"):
            entry.update(reason=status["reason"], message=status.get("message", ""))
        if disruption is not None:
            entry["disruption"] = f"{disruption.get('reason')}: {disruption.get('message', '')}"
        if "reason" in entry or "disruption" in entry:
            failures.append(entry)
    return failures


def describe_failures(failures: list[dict]) -> str:
    """Formats replica failures (with their log tails) for the error and the report."""
    lines = []
    for f in failures:
        head = f"{f['replica']} (pod {f['pod']})"
        if f.get("exit_code") is not None:
            head += f" exited with code {f['exit_code']}"
        if f.get("reason"):
            head += f", reason {f['reason']}"
        if f.get("message"):
            head += f": {f['message'].strip()}"
        if f.get("disruption"):
            head += f"; disrupted ({f['disruption'].strip()})"
        lines.append(head)
        if f.get("log_tail"):
            lines.append("  last log lines:")
            lines.extend(f"    {line}" for line in f["log_tail"].splitlines())
    return "\n".join(lines)
