"""The local TFJob engine: runs a TFJob manifest as local processes, the way the operator would.

One process per replica (``Chief``, ``Worker``, ...), each with the ``TF_CONFIG`` the Training
Operator generates (here with loopback addresses and free ports instead of the job's headless
services), the container's command, args and env. The engine follows the replica
``restartPolicy`` and ``spec.runPolicy``:

- ``ExitCode``: exit codes 1-127 are permanent (the job fails at once, no retry); 128-255, and
  processes killed by a signal (reported as 128 + signal, like a container), are retryable;
- ``OnFailure`` / ``Always`` retry every failure, ``Never`` none;
- MultiWorkerMirroredStrategy cannot continue without a peer, so a retryable failure of any
  replica restarts ALL replicas (the survivors get SIGTERM, then SIGKILL after a grace period);
  BackupAndRestore lets the restarted replicas resume the interrupted epoch;
- ``backoffLimit`` bounds the restarts, ``activeDeadlineSeconds`` the job's run time;
- the job succeeds when the chief (or, without a chief, every worker) exits 0.

Replica logs are written to ``<log_dir>/<type>-<index>.attempt-<n>.log``; the chief's log is
streamed to the caller as it is written.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TextIO

from kfp_edge.tfjob_training.replica_trainer import is_retryable

# Replica types in the order the operator lists them in TF_CONFIG's cluster.
REPLICA_ORDER = ("Chief", "Master", "Worker", "PS", "Evaluator")


class TFJobFailed(RuntimeError):
    """The TFJob ended in the Failed condition; ``reason`` and ``status`` say why."""

    def __init__(self, reason: str, message: str, status: dict):
        super().__init__(f"TFJob failed ({reason}): {message}")
        self.reason = reason
        self.status = status


@dataclass
class _Replica:
    rtype: str
    index: int
    command: list[str]
    env: dict
    log_path: Path | None = None
    proc: subprocess.Popen | None = None
    exit_code: int | None = None

    @property
    def key(self) -> str:
        return f"{self.rtype.lower()}-{self.index}"


@dataclass
class _Status:
    conditions: list = field(default_factory=list)
    restarts: int = 0
    attempts: list = field(default_factory=list)
    start_time: float = field(default_factory=time.time)
    completion_time: float | None = None

    def condition(self, ctype: str, reason: str, message: str) -> dict:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for c in self.conditions:
            c["status"] = "False" if c["type"] in ("Running", "Restarting") else c["status"]
        cond = {
            "type": ctype,
            "status": "True",
            "reason": reason,
            "message": message,
            "lastTransitionTime": now,
        }
        self.conditions.append(cond)
        return cond

    def as_dict(self) -> dict:
        return {
            "conditions": self.conditions,
            "restarts": self.restarts,
            "attempts": self.attempts,
            "startTime": self.start_time,
            "completionTime": self.completion_time,
        }


def free_ports(n: int) -> list[int]:
    """Returns ``n`` distinct free TCP ports on the loopback interface."""
    sockets, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in sockets:
            s.close()
    return ports


def replica_counts(manifest: dict) -> list[tuple[str, int]]:
    """Returns ``[(replica type, replicas)]`` of a TFJob in the operator's cluster order.

    Raises:
        ValueError: If the manifest is not a TFJob or has unknown replica types.
    """
    if manifest.get("kind") != "TFJob":
        raise ValueError(f"not a TFJob manifest: kind={manifest.get('kind')!r}")
    specs = manifest["spec"]["tfReplicaSpecs"]
    unknown = set(specs) - set(REPLICA_ORDER)
    if unknown:
        raise ValueError(f"spec.tfReplicaSpecs has unknown replica types {sorted(unknown)}")
    return [(t, int(specs[t].get("replicas", 1))) for t in REPLICA_ORDER if t in specs]


def tf_configs(manifest: dict, host: str = "127.0.0.1", ports: list[int] | None = None) -> dict:
    """Returns the TF_CONFIG of every replica, as the operator builds it.

    The operator lists every replica type but the evaluator in ``cluster`` (lower-case keys,
    ``<job>-<type>-<i>.<ns>.svc:2222`` addresses); here each replica gets ``host:port``.

    Args:
        manifest: The TFJob.
        host: Address of every replica.
        ports: One port per replica in cluster order; free loopback ports when None.

    Returns:
        ``{(replica type, index): TF_CONFIG dict}``.
    """
    counts = replica_counts(manifest)
    total = sum(n for _, n in counts)
    ports = list(ports) if ports is not None else free_ports(total)
    cluster: dict[str, list[str]] = {}
    addresses = {}
    i = 0
    for rtype, n in counts:
        for index in range(n):
            addresses[(rtype, index)] = f"{host}:{ports[i]}"
            i += 1
        if rtype != "Evaluator":
            cluster[rtype.lower()] = [addresses[(rtype, k)] for k in range(n)]
    return {
        (rtype, index): {
            "cluster": cluster,
            "task": {"type": rtype.lower(), "index": index},
            "environment": "cloud",
        }
        for rtype, n in counts
        for index in range(n)
    }


def _container(manifest: dict, rtype: str) -> dict:
    containers = manifest["spec"]["tfReplicaSpecs"][rtype]["template"]["spec"]["containers"]
    for c in containers:
        if c.get("name") == "tensorflow":
            return c
    raise ValueError(f"{rtype} replica has no container named 'tensorflow'")


def _command(container: dict, python: str) -> list[str]:
    command = list(container.get("command") or []) + list(container.get("args") or [])
    if not command:
        raise ValueError("the tensorflow container has neither command nor args")
    if command[0] in ("python", "python3"):
        command[0] = python  # the image's interpreter is this environment's here
    return command


def _die_with_parent() -> None:
    """In the replica before exec: SIGTERM it when the engine's process dies (Linux)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _exit_code(returncode: int) -> int:
    """A container's exit code: 128 + N when the process was killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def _stop(replicas: list[_Replica], grace_seconds: float) -> None:
    """SIGTERM to every live replica's process group, SIGKILL after the grace period."""
    live = [r for r in replicas if r.proc is not None and r.proc.poll() is None]
    for r in live:
        try:
            os.killpg(r.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.time() + grace_seconds
    for r in live:
        try:
            r.proc.wait(timeout=max(0.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(r.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            r.proc.wait()
    for r in replicas:
        if r.proc is not None and r.exit_code is None:
            r.exit_code = _exit_code(r.proc.returncode)


def _tail(path: Path | None, lines: int = 15) -> str:
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def run_tfjob(
    manifest: dict,
    log_dir: str | os.PathLike,
    *,
    stream: TextIO | None = None,
    on_event: Callable[[str, dict], None] | None = None,
    grace_seconds: float = 5.0,
    poll_seconds: float = 0.1,
    python: str = sys.executable,
    extra_env: dict | None = None,
) -> dict:
    """Runs a TFJob manifest locally until it succeeds or fails.

    Args:
        manifest: The TFJob (see :func:`kfp_edge.tfjob_training.tfjob_spec.build_tfjob`).
        log_dir: Directory of the replicas' log files.
        stream: Where the chief's log is streamed; ``sys.stdout`` when None.
        on_event: Called with ``(condition or event, details)`` at every transition and with
            ``("ReplicasStarted", {"attempt", "pids"})`` after each (re)start.
        grace_seconds: Time between SIGTERM and SIGKILL when replicas are stopped.
        poll_seconds: How often the processes are checked (they are local children).
        python: Interpreter that replaces ``python`` in the container command.
        extra_env: Environment added to every replica (after the container's env).

    Returns:
        The job status: conditions (Created, Running, Restarting, Succeeded), restarts,
        attempts with each replica's exit code and log file.

    Raises:
        TFJobFailed: With the reason (``PermanentError``, ``BackoffLimitExceeded``,
            ``DeadlineExceeded``) and the failing replica's log tail.
    """
    counts = replica_counts(manifest)
    stream = stream or sys.stdout
    on_event = on_event or (lambda event, details: None)
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    name = manifest["metadata"]["name"]
    run_policy = manifest["spec"].get("runPolicy", {})
    backoff_limit = int(run_policy.get("backoffLimit", 6))
    deadline_s = run_policy.get("activeDeadlineSeconds")
    specs = manifest["spec"]["tfReplicaSpecs"]
    total = sum(n for _, n in counts)
    threads = max(1, (os.cpu_count() or 1) // total)
    status = _Status()

    def transition(ctype: str, reason: str, message: str) -> None:
        cond = status.condition(ctype, reason, message)
        on_event(ctype, dict(cond))
        print(f"[tfjob {name}] {ctype}: {message}", file=stream, flush=True)

    def fail(reason: str, message: str, replicas: list[_Replica]):
        _stop(replicas, grace_seconds)
        record_attempt(replicas)
        status.completion_time = time.time()
        transition("Failed", reason, message)
        raise TFJobFailed(reason, message, status.as_dict())

    def record_attempt(replicas: list[_Replica]) -> None:
        status.attempts.append(
            {r.key: {"exit_code": r.exit_code, "log": str(r.log_path)} for r in replicas}
        )

    transition("Created", "TFJobCreated", f"TFJob {name} is created (local engine).")
    attempt = 0
    while True:
        configs = tf_configs(manifest)
        replicas = []
        for rtype, n in counts:
            container = _container(manifest, rtype)
            env = {e["name"]: str(e.get("value", "")) for e in container.get("env") or []}
            for index in range(n):
                replicas.append(_Replica(rtype, index, _command(container, python), env))
        for r in replicas:
            r.log_path = log_dir / f"{r.key}.attempt-{attempt}.log"
            env = {
                **os.environ,
                "TF_NUM_INTRAOP_THREADS": str(threads),
                "TF_NUM_INTEROP_THREADS": "1",
                **r.env,
                **(extra_env or {}),
                "TF_CONFIG": json.dumps(configs[(r.rtype, r.index)]),
            }
            with open(r.log_path, "wb") as log:
                r.proc = subprocess.Popen(
                    r.command,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
                )
        chief = next((r for r in replicas if r.rtype in ("Chief", "Master")), None)
        streamed = 0
        outcome = None
        try:
            on_event(
                "ReplicasStarted",
                {"attempt": attempt, "pids": {r.key: r.proc.pid for r in replicas}},
            )
            transition("Running", "TFJobRunning", f"TFJob {name} is running (attempt {attempt}).")
            while outcome is None:
                time.sleep(poll_seconds)
                if chief is not None:
                    streamed = _forward(chief.log_path, streamed, stream)
                for r in replicas:
                    if r.exit_code is None and r.proc.poll() is not None:
                        r.exit_code = _exit_code(r.proc.returncode)
                # a permanent failure outranks the retryable ones it causes in its peers
                failed = sorted(
                    (r for r in replicas if r.exit_code not in (None, 0)),
                    key=lambda r: is_retryable(r.exit_code),
                )
                if failed:
                    outcome = ("failed", failed[0])
                elif chief is not None and chief.exit_code == 0:
                    outcome = ("succeeded", chief)
                elif chief is None and all(r.exit_code == 0 for r in replicas):
                    outcome = ("succeeded", replicas[0])
                elif deadline_s is not None and time.time() - status.start_time > int(deadline_s):
                    fail(
                        "DeadlineExceeded",
                        f"TFJob {name} ran longer than activeDeadlineSeconds={deadline_s}",
                        replicas,
                    )
        except BaseException:
            if any(r.proc.poll() is None for r in replicas):
                _stop(replicas, grace_seconds)  # the caller was interrupted: leave no orphans
            raise
        if chief is not None:
            _forward(chief.log_path, streamed, stream)
        kind, replica = outcome
        if kind == "succeeded":
            # Other replicas finish on their own (their last collective was the save); give
            # them the grace period, then stop them, as cleanPodPolicy Running would.
            end = time.time() + grace_seconds
            while time.time() < end and any(r.proc.poll() is None for r in replicas):
                time.sleep(poll_seconds)
            _stop(replicas, grace_seconds)
            record_attempt(replicas)
            status.completion_time = time.time()
            transition(
                "Succeeded",
                "TFJobSucceeded",
                f"TFJob {name} successfully completed after {status.restarts} restarts.",
            )
            return status.as_dict()
        code = replica.exit_code
        policy = specs[replica.rtype].get("restartPolicy", "Never")
        retry = (policy == "ExitCode" and is_retryable(code)) or policy in ("OnFailure", "Always")
        detail = (
            f"{replica.key} exited with code {code}; last log lines:\n{_tail(replica.log_path)}"
        )
        if not retry:
            fail(
                "PermanentError" if policy == "ExitCode" else "ReplicaFailed",
                f"{detail}\n(restartPolicy {policy}: not retried)",
                replicas,
            )
        if status.restarts >= backoff_limit:
            fail(
                "BackoffLimitExceeded",
                f"{detail}\n(backoffLimit {backoff_limit} reached after {status.restarts} "
                "restarts)",
                replicas,
            )
        _stop(replicas, grace_seconds)
        record_attempt(replicas)
        status.restarts += 1
        attempt += 1
        transition(
            "Restarting",
            "TFJobRestarting",
            f"{replica.key} exited with retryable code {code}; restarting all replicas "
            f"(restart {status.restarts} of at most {backoff_limit}).",
        )


def _forward(path: Path, offset: int, stream: TextIO) -> int:
    """Copies what was appended to a log file since ``offset`` to the stream."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return offset
    if data:
        stream.write(data.decode(errors="replace"))
        stream.flush()
    return offset + len(data)
