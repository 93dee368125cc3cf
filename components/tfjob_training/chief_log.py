"""Streams the TFJob chief's log into the launcher's log while the job runs."""

from __future__ import annotations

import threading
from typing import TextIO

from kfp_edge.tfjob_training.job_outcome import INDEX_LABEL, TYPE_LABEL


class ChiefLog(threading.Thread):
    """Follows the chief pod's ``tensorflow`` container, each container start once.

    :meth:`finish` lets the stream of the current container end on its own (the container has
    exited when the job is over), so the last lines the chief wrote are not lost.
    """

    def __init__(self, api, stream: TextIO):
        super().__init__(daemon=True, name=f"chief-log-{api.name}")
        self.api, self.stream = api, stream
        self.stop = threading.Event()
        self.draining = threading.Event()
        self.seen: set[tuple[str, int]] = set()

    def finish(self, timeout: float = 15.0) -> None:
        """Waits for the log of the last container to end, then stops the thread."""
        if self.is_alive():
            self.draining.set()
            self.join(timeout=timeout)
        self.stop.set()

    def _next_container(self):
        pods = self.api.pods(f"{TYPE_LABEL}=chief,{INDEX_LABEL}=0")
        pod = pods[0] if pods else None
        if pod is None or (pod.get("status") or {}).get("phase") in (None, "Pending"):
            return None
        statuses = pod["status"].get("containerStatuses") or []
        restarts = sum(s.get("restartCount") or 0 for s in statuses)
        key = (pod["metadata"].get("uid", ""), restarts)
        return None if key in self.seen else (key, pod["metadata"]["name"])

    def _follow(self, pod: str) -> None:
        resp = self.api.core.read_namespaced_pod_log(
            pod,
            self.api.namespace,
            container="tensorflow",
            follow=True,
            _preload_content=False,
        )
        try:
            for chunk in resp.stream(4096):
                self.stream.write(chunk.decode(errors="replace"))
                self.stream.flush()
                if self.stop.is_set():
                    break
        finally:
            resp.release_conn()

    def run(self) -> None:
        """Streams each new chief container's log until stopped (or drained)."""
        while not self.stop.is_set():
            try:
                found = self._next_container()
                if found is None:
                    if self.draining.is_set():
                        return
                    self.stop.wait(1.0)
                    continue
                key, pod = found
                self.seen.add(key)
                self._follow(pod)
            except Exception as exc:  # noqa: BLE001 - the log is best effort; the watch decides
                self.stream.write(f"[launcher] chief log interrupted: {exc}\n")
                if self.draining.is_set():
                    return
                self.stop.wait(2.0)
