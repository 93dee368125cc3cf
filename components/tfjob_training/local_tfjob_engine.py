"""The local TFJob engine: runs a TFJob manifest as local processes, the way the operator would.

One process per replica (``Chief``, ``Worker``, ``Evaluator``...), each with the ``TF_CONFIG``
the Training Operator generates (every replica type in ``cluster``, here with loopback
addresses and free ports instead of the job's headless services; no TF_CONFIG at all for a job
of one replica), the container's command, args and env. The engine follows the replica
``restartPolicy`` and ``spec.runPolicy`` as the operator does:

- ``ExitCode``: exit codes 1-127 are permanent (the job fails at once, no retry); 128-255, and
  processes killed by a signal (reported as 128 + signal, like a container), are retryable and
  not bounded by ``backoffLimit`` (the operator recreates the pod without counting it);
- ``OnFailure`` / ``Always`` retry every failure up to ``backoffLimit`` restarts, ``Never``
  none;
- only the failed replica is restarted, with the same TF_CONFIG (the same address), as the
  operator recreates only the failed pod; its peers notice the lost peer in their next
  collective and exit with a retryable code themselves; BackupAndRestore lets the restarted
  replicas resume the interrupted epoch;
- the engine's own attempt limit (like the launcher's) bounds the restarts in all;
  ``activeDeadlineSeconds`` bounds the job's run time;
- the job succeeds when the chief (or, without a chief, every worker) exits 0.

Each replica stands for a pod with CPUs of its own. When the job has no more replicas than this
process may use cores, each replica is pinned to its own share of them (``sched_setaffinity``,
as the kubelet's static CPU manager pins a Guaranteed pod), and TensorFlow's intra-op threads
match that share. Unpinned, two lock-stepped replicas on two cores migrate between the cores
and wake each other's threads on either: measured, a 2-worker step took 3.9 ms against 2.5 ms
pinned (``benchmarks/bench_training.py``).

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

from kfp_edge.tfjob_training.replica_trainer import is_retryable, usable_cpus

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
    policy: str
    attempt: int = 0
    log_path: Path | None = None
    proc: subprocess.Popen | None = None
    exit_code: int | None = None
    cpus: tuple[int, ...] = ()  # the cores it is pinned to; () = not pinned

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


def is_distributed(manifest: dict) -> bool:
    """Returns whether the operator gives the job a TF_CONFIG (its ``isDistributed``).

    Only a job of more than one replica in all gets one; a single replica trains alone.
    """
    return sum(n for _, n in replica_counts(manifest)) != 1


def tf_configs(manifest: dict, host: str = "127.0.0.1", ports: list[int] | None = None) -> dict:
    """Returns the TF_CONFIG of every replica, as the operator builds it.

    The operator (v1.9 ``genClusterSpec``) lists every replica type in ``cluster``, the
    evaluator included (lower-case keys, ``<job>-<type>-<i>.<ns>.svc:2222`` addresses); here
    each replica gets ``host:port``. A job of one replica gets no TF_CONFIG (``{}`` here).

    Args:
        manifest: The TFJob.
        host: Address of every replica.
        ports: One port per replica in cluster order; free loopback ports when None.

    Returns:
        ``{(replica type, index): TF_CONFIG dict}`` (empty dicts for a single replica).
    """
    counts = replica_counts(manifest)
    if not is_distributed(manifest):
        return {(rtype, index): {} for rtype, n in counts for index in range(n)}
    ports = iter(list(ports) if ports is not None else free_ports(sum(n for _, n in counts)))
    cluster = {rtype.lower(): [f"{host}:{next(ports)}" for _ in range(n)] for rtype, n in counts}
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


def cpu_shares(replicas: int, cpus: list[int]) -> list[tuple[int, ...]]:
    """Splits the cores into one disjoint share per replica, or none when they do not fit.

    Args:
        replicas: Replicas of the job (every type, the evaluator too).
        cpus: The cores to share.

    Returns:
        ``replicas`` tuples of ``len(cpus) // replicas`` cores each; ``()`` for every replica
        when there is one replica (it has every core anyway) or more replicas than cores.
    """
    if replicas < 2 or replicas > len(cpus):
        return [()] * replicas
    k = len(cpus) // replicas
    return [tuple(cpus[i * k : (i + 1) * k]) for i in range(replicas)]


def _in_replica(cpus: tuple[int, ...]) -> Callable[[], None]:
    """What runs in a replica's process before exec: die with the engine, take its cores."""

    def setup() -> None:
        _die_with_parent()
        if cpus:
            os.sched_setaffinity(0, cpus)  # threads started later inherit it

    return setup


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


def _tail(path: Path | None, lines: int = 15) -> str:
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def restart_decision(
    policy: str, code: int, restarts: int, backoff_limit: int, attempt_limit: int
) -> tuple[str, str] | None:
    """Decides what a failed replica means: None to restart it, else ``(reason, why)``.

    Args:
        policy: The replica's ``restartPolicy``.
        code: Its exit code.
        restarts: Restarts of the job so far.
        backoff_limit: ``spec.runPolicy.backoffLimit`` (counted for OnFailure and Always).
        attempt_limit: The engine's own limit of restarts in all.
    """
    if policy == "ExitCode" and not is_retryable(code):
        return "PermanentError", "restartPolicy ExitCode: exit codes 1-127 are not retried"
    if policy not in ("ExitCode", "OnFailure", "Always"):
        return "ReplicaFailed", f"restartPolicy {policy}: not retried"
    if policy != "ExitCode" and restarts >= backoff_limit:
        return "BackoffLimitExceeded", f"backoffLimit {backoff_limit} reached"
    if restarts >= attempt_limit:
        return "AttemptLimitExceeded", f"the attempt limit {attempt_limit} reached"
    return None


class _Job:
    """A running local TFJob: its replicas, status and the caller's stream and callback."""

    def __init__(self, manifest, log_dir, stream, on_event, grace_seconds, attempt_limit, env):
        python, extra_env, pin = env
        self.name = manifest["metadata"]["name"]
        run_policy = manifest["spec"].get("runPolicy", {})
        self.backoff_limit = int(run_policy.get("backoffLimit", 6))
        self.attempt_limit = self.backoff_limit if attempt_limit is None else int(attempt_limit)
        self.deadline_s = run_policy.get("activeDeadlineSeconds")
        self.log_dir, self.stream, self.on_event = log_dir, stream, on_event
        self.grace_seconds = grace_seconds
        self.status = _Status()
        self.replicas = _replicas(manifest, extra_env, python, pin)
        self.chief = next((r for r in self.replicas if r.rtype in ("Chief", "Master")), None)
        self.streamed = 0

    def transition(self, ctype: str, reason: str, message: str) -> None:
        cond = self.status.condition(ctype, reason, message)
        self.on_event(ctype, dict(cond))
        print(f"[tfjob {self.name}] {ctype}: {message}", file=self.stream, flush=True)

    def start(self, r: _Replica) -> None:
        r.log_path = self.log_dir / f"{r.key}.attempt-{r.attempt}.log"
        r.exit_code = None
        with open(r.log_path, "wb") as log:
            r.proc = subprocess.Popen(
                r.command,
                env=r.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_in_replica(r.cpus),
            )
        if r is self.chief:
            self.streamed = 0

    def collect(self) -> None:
        """Forwards the chief's new log lines; records the exit code of every ended replica."""
        if self.chief is not None:
            self.streamed = _forward(self.chief.log_path, self.streamed, self.stream)
        for r in self.replicas:
            if r.exit_code is None and r.proc.poll() is not None:
                r.exit_code = _exit_code(r.proc.returncode)
                self.status.attempts.append(
                    {
                        "replica": r.key,
                        "attempt": r.attempt,
                        "exit_code": r.exit_code,
                        "log": str(r.log_path),
                    }
                )

    def restart(self, r: _Replica) -> None:
        self.status.restarts += 1
        self.transition(
            "Restarting",
            "TFJobRestarting",
            f"{r.key} exited with retryable code {r.exit_code}; restarting it alone "
            f"(restart {self.status.restarts}, attempt limit {self.attempt_limit}).",
        )
        r.attempt += 1
        self.start(r)
        self.on_event("ReplicaRestarted", {"replica": r.key, "pid": r.proc.pid})
        self.transition("Running", "TFJobRunning", f"TFJob {self.name} is running.")

    def end(self, ctype: str, reason: str, message: str) -> dict:
        _stop(self.replicas, self.grace_seconds)
        self.collect()
        self.status.completion_time = time.time()
        self.transition(ctype, reason, message)
        if ctype == "Failed":
            raise TFJobFailed(reason, message, self.status.as_dict())
        return self.status.as_dict()


def _replicas(manifest: dict, extra_env: dict, python: str, pin: bool) -> list[_Replica]:
    """The replicas of a TFJob with their commands, full environments and cores."""
    counts = replica_counts(manifest)
    configs = tf_configs(manifest)
    cpus = usable_cpus()
    total = sum(n for _, n in counts)
    threads = max(1, len(cpus) // total)
    shares = iter(cpu_shares(total, cpus) if pin else [()] * total)
    replicas = []
    for rtype, n in counts:
        spec = manifest["spec"]["tfReplicaSpecs"][rtype]
        container = _container(manifest, rtype)
        own = {e["name"]: str(e.get("value", "")) for e in container.get("env") or []}
        for index in range(n):
            env = {
                **os.environ,
                "TF_NUM_INTRAOP_THREADS": str(threads),
                "TF_NUM_INTEROP_THREADS": "1",
                **own,
                **extra_env,
            }
            env.pop("TF_CONFIG", None)
            if configs[(rtype, index)]:
                env["TF_CONFIG"] = json.dumps(configs[(rtype, index)])
            policy = spec.get("restartPolicy", "Never")
            replicas.append(
                _Replica(rtype, index, _command(container, python), env, policy, cpus=next(shares))
            )
    return replicas


def _check(job: _Job) -> tuple[str, str, str] | None:
    """One look at the replicas: restarts the failed retryable ones; returns the job's end."""
    job.collect()
    failed = sorted(  # a permanent failure outranks the retryable ones it causes in its peers
        (r for r in job.replicas if r.exit_code not in (None, 0)),
        key=lambda r: is_retryable(r.exit_code),
    )
    for r in failed:
        decision = restart_decision(
            r.policy, r.exit_code, job.status.restarts, job.backoff_limit, job.attempt_limit
        )
        if decision is not None:
            detail = f"{r.key} exited with code {r.exit_code}; last log lines:\n{_tail(r.log_path)}"
            return "Failed", decision[0], f"{detail}\n({decision[1]})"
        job.restart(r)
    if job.chief is not None and job.chief.exit_code == 0:
        return "Succeeded", "TFJobSucceeded", f"TFJob {job.name} successfully completed."
    workers = [r for r in job.replicas if r.rtype == "Worker"]
    if job.chief is None and workers and all(r.exit_code == 0 for r in workers):
        return "Succeeded", "TFJobSucceeded", f"TFJob {job.name} successfully completed."
    elapsed = time.time() - job.status.start_time
    if job.deadline_s is not None and elapsed > int(job.deadline_s):
        message = f"TFJob {job.name} ran longer than activeDeadlineSeconds={job.deadline_s}"
        return "Failed", "DeadlineExceeded", message
    return None


def _linger(job: _Job, poll_seconds: float) -> None:
    """Gives the other replicas the grace period to finish after the chief's success.

    Their last collective was the save; then they are stopped (cleanPodPolicy Running).
    """
    end = time.time() + job.grace_seconds
    while time.time() < end and any(r.proc.poll() is None for r in job.replicas):
        time.sleep(poll_seconds)


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
    attempt_limit: int | None = None,
    pin_cpus: bool = True,
) -> dict:
    """Runs a TFJob manifest locally until it succeeds or fails.

    Steps: build the replicas (TF_CONFIG, env, command); start them all; then at each poll
    forward the chief's log, restart each replica that failed with a retryable code (alone),
    and end the job on the chief's success, a permanent failure, a limit or the deadline;
    finally stop whatever still runs (also when the caller is interrupted).

    Args:
        manifest: The TFJob (see :func:`kfp_edge.tfjob_training.tfjob_spec.build_tfjob`).
        log_dir: Directory of the replicas' log files.
        stream: Where the chief's log is streamed; ``sys.stdout`` when None.
        on_event: Called with ``(condition or event, details)`` at every transition, with
            ``("ReplicasStarted", {"attempt", "pids", "cpus"})`` after the start and with
            ``("ReplicaRestarted", {"replica", "pid"})`` after each restart.
        grace_seconds: Time between SIGTERM and SIGKILL when replicas are stopped.
        poll_seconds: How often the processes are checked (they are local children).
        python: Interpreter that replaces ``python`` in the container command.
        extra_env: Environment added to every replica (after the container's env).
        attempt_limit: Restarts allowed in all (the engine's own limit, like the launcher's);
            the manifest's backoffLimit when None.
        pin_cpus: Pin each replica to its own cores when they fit (see the module docstring).

    Returns:
        The job status: conditions (Created, Running, Restarting, Succeeded), restarts, and
        every replica run that ended (replica, attempt, exit code, log file).

    Raises:
        TFJobFailed: With the reason (``PermanentError``, ``ReplicaFailed``,
            ``BackoffLimitExceeded``, ``AttemptLimitExceeded``, ``DeadlineExceeded``) and the
            failing replica's log tail.
    """
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    job = _Job(
        manifest,
        log_dir,
        stream or sys.stdout,
        on_event or (lambda e, d: None),
        grace_seconds,
        attempt_limit,
        (python, extra_env or {}, pin_cpus),
    )
    job.transition("Created", "TFJobCreated", f"TFJob {job.name} is created (local engine).")
    try:
        for r in job.replicas:
            job.start(r)
        job.on_event(
            "ReplicasStarted",
            {
                "attempt": 0,
                "pids": {r.key: r.proc.pid for r in job.replicas},
                "cpus": {r.key: list(r.cpus) for r in job.replicas},
            },
        )
        job.transition("Running", "TFJobRunning", f"TFJob {job.name} is running.")
        while (end := _check(job)) is None:
            time.sleep(poll_seconds)
    except BaseException:
        _stop(job.replicas, grace_seconds)  # the caller was interrupted: leave no orphans
        raise
    if end[0] == "Succeeded":
        _linger(job, poll_seconds)
    return job.end(*end)


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
