"""The Kubernetes calls of the TFJob launcher, each retried on transient errors.

API-server restarts, idle load-balancer cuts and throttling are routine on managed clusters: a
dropped connection (urllib3 ``ProtocolError``, a read timeout, a refused connection) and the
statuses 429 and 5xx are retried with exponential backoff until ``retry_seconds`` have passed
without success; then :class:`ApiUnavailable` says so. Every other error is raised at once.
Objects are read as the API's JSON (plain dicts).
"""

from __future__ import annotations

import json
import time
from typing import Callable, Iterator

from kfp_edge.tfjob_training.job_outcome import JOB_LABEL
from kfp_edge.tfjob_training.tfjob_spec import GROUP, PLURAL, VERSION

TRANSIENT_STATUSES = (429, 500, 502, 503, 504)
OPERATOR_MISSING = "the Kubeflow Training Operator is not installed"


class ApiUnavailable(RuntimeError):
    """The Kubernetes API kept failing with transient errors for longer than allowed."""


class OperatorMissing(RuntimeError):
    """The API server has no TFJob resource: the Training Operator is not installed."""


def is_transient(exc: BaseException) -> bool:
    """Returns whether an error of a Kubernetes call is worth retrying.

    Args:
        exc: The exception the ``kubernetes`` client raised.
    """
    import urllib3
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        return exc.status in TRANSIENT_STATUSES or exc.status == 0
    return isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError))


class JobApi:
    """The TFJob and pod calls of one job, with retries (see the module docstring)."""

    def __init__(
        self,
        api_client,
        namespace: str,
        name: str,
        *,
        retry_seconds: float = 300.0,
        say: Callable[[str], None] = lambda message: None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        from kubernetes import client

        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.namespace, self.name = namespace, name
        self.retry_seconds, self.say, self.sleep = retry_seconds, say, sleep

    def retry(self, what: str, fn: Callable, *args, **kwargs):
        """Calls ``fn``, retrying transient errors with backoff (0.5 s doubling up to 10 s)."""
        start, delay = time.monotonic(), 0.5
        while True:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - classified just below
                if not is_transient(exc):
                    raise
                if time.monotonic() - start > self.retry_seconds:
                    raise ApiUnavailable(
                        f"{what}: the Kubernetes API kept failing for {self.retry_seconds:g}s "
                        f"(last error: {_short(exc)})"
                    ) from exc
                self.say(f"{what} failed ({_short(exc)}); retrying in {delay:g}s")
                self.sleep(delay)
                delay = min(delay * 2, 10.0)

    def check_operator(self) -> None:
        """Raises :class:`OperatorMissing` unless the API server serves ``tfjobs``."""
        from kubernetes.client.exceptions import ApiException

        try:
            resources = self.retry("discovery", self.custom.get_api_resources, GROUP, VERSION)
        except ApiException as exc:
            if exc.status != 404:
                raise
            resources = None
        names = {r.name for r in (resources.resources if resources else [])}
        if PLURAL not in names:
            raise OperatorMissing(
                f"{OPERATOR_MISSING}: the API server has no {PLURAL}.{GROUP}/{VERSION} "
                "(install it first, see docs/deploy.md, Prerequisites)"
            )

    def get(self) -> dict | None:
        """Returns the TFJob, or None when it does not exist."""
        from kubernetes.client.exceptions import ApiException

        try:
            return self.retry(
                "read TFJob",
                self.custom.get_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                self.name,
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def create(self, manifest: dict) -> dict:
        """Creates the TFJob (an ``ApiException`` 409 when it exists)."""
        return self.retry(
            "create TFJob",
            self.custom.create_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            manifest,
        )

    def set_owner(self, owner: dict) -> None:
        """Makes ``owner`` (this launcher's pod) the TFJob's owner, for garbage collection."""
        self.retry(
            "patch TFJob owner",
            self.custom.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            self.name,
            {"metadata": {"ownerReferences": [owner]}},
        )

    def delete(self, propagation: str = "Foreground") -> bool:
        """Sends the delete request; returns False when the job was already gone."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        try:
            self.retry(
                "delete TFJob",
                self.custom.delete_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                self.name,
                body=client.V1DeleteOptions(propagation_policy=propagation),
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def wait_gone(self, deadline: float, poll_seconds: float = 1.0) -> None:
        """Waits until a deleted TFJob has really gone (finalizers, foreground deletion)."""
        while self.get() is not None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"TFJob {self.namespace}/{self.name} is still being deleted")
            self.sleep(poll_seconds)

    def pods(self, selector: str = "") -> list[dict]:
        """Returns the job's pods (API JSON), optionally narrowed by a label selector."""
        labels = f"{JOB_LABEL}={self.name}" + (f",{selector}" if selector else "")
        resp = self.retry(
            "list pods",
            self.core.list_namespaced_pod,
            self.namespace,
            label_selector=labels,
            _preload_content=False,
        )
        return json.loads(resp.data).get("items") or []

    def log_tail(self, pod: str, previous: bool, lines: int = 20) -> str:
        """Returns the last lines of a pod's ``tensorflow`` container (its previous run)."""
        resp = self.retry(
            "read pod log",
            self.core.read_namespaced_pod_log,
            pod,
            self.namespace,
            container="tensorflow",
            previous=previous,
            tail_lines=lines,
            _preload_content=False,
        )
        return resp.data.decode(errors="replace")

    def watch(self, resource_version: str | None, window: float) -> Iterator[dict]:
        """Watches the TFJob for at most ``window`` seconds (raw watch events).

        The read timeout is a little longer than the window, so a connection that died
        silently (no FIN from a load balancer) ends as a ``ReadTimeoutError`` instead of
        hanging.
        """
        from kubernetes import watch

        w = watch.Watch()
        try:
            yield from w.stream(
                self.custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                field_selector=f"metadata.name={self.name}",
                resource_version=resource_version,
                timeout_seconds=max(1, int(window)),
                _request_timeout=(10, window + max(2.0, 0.1 * window)),
            )
        finally:
            w.stop()


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:200]
