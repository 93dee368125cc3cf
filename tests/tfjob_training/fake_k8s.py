"""FAKE Kubernetes API server for the launcher's tests: no cluster exists on this machine.

A small HTTP server on loopback that speaks the few endpoints the launcher uses, so the real
``kubernetes`` Python client is exercised end to end (URLs, query parameters, watch streams,
chunked log reads, error statuses):

- ``POST/GET/DELETE /apis/kubeflow.org/v1/namespaces/<ns>/tfjobs[/<name>]`` (409 on a duplicate
  create, 404 on a missing job), ``GET ...tfjobs?watch=true`` as a stream of JSON watch events
  resumable from a ``resourceVersion``;
- ``GET /api/v1/namespaces/<ns>/pods?labelSelector=...`` and ``.../pods/<pod>/log``.

A scripted "operator" moves a created job through its conditions the way the Training Operator
does (one condition per type; a new one goes last; Running and Restarting flip each other).
"""

from __future__ import annotations

import copy
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PREFIX = "/apis/kubeflow.org/v1/namespaces/"


class FakeCluster:
    """State of the fake API server, and the scripted operator."""

    def __init__(self, script=None, chief_log: str = "", operator=None):
        self.script = script or []  # [(delay seconds, condition type, reason, message)]
        self.operator = operator  # or operator(cluster, key, job): runs the job for real
        self.chief_log = chief_log
        self.jobs: dict[tuple[str, str], dict] = {}
        self.events: list[tuple[int, str, dict]] = []
        self.requests: list[tuple[str, str, dict]] = []
        self.rv = 100
        self.cond = threading.Condition()

    # -- state changes (under self.cond) --
    def _emit(self, etype: str, obj: dict) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.events.append((self.rv, etype, copy.deepcopy(obj)))
        self.cond.notify_all()

    def put(self, obj: dict, run_script: bool = True) -> None:
        with self.cond:
            obj = copy.deepcopy(obj)
            obj["metadata"].setdefault("uid", f"uid-{obj['metadata']['name']}")
            obj.setdefault("status", {"conditions": []})
            self.jobs[(obj["metadata"]["namespace"], obj["metadata"]["name"])] = obj
            self._emit("ADDED", obj)
        if run_script:
            key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
            threading.Thread(target=self._operate, args=(key,), daemon=True).start()

    def set_condition(self, key, ctype: str, reason: str, message: str) -> None:
        with self.cond:
            job = self.jobs.get(key)
            if job is None:
                return
            conds = [c for c in job["status"]["conditions"] if c["type"] != ctype]
            for c in conds:
                if (
                    ctype == "Running"
                    and c["type"] == "Restarting"
                    or ctype == "Restarting"
                    and c["type"] == "Running"
                    or ctype in ("Succeeded", "Failed")
                    and c["type"] == "Running"
                ):
                    c["status"] = "False"
            stamp = f"{time.time():.6f}"
            conds.append(
                {
                    "type": ctype,
                    "status": "True",
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": stamp,
                    "lastUpdateTime": stamp,
                }
            )
            job["status"]["conditions"] = conds
            self._emit("MODIFIED", job)

    def delete(self, key) -> bool:
        with self.cond:
            job = self.jobs.pop(key, None)
            if job is not None:
                self._emit("DELETED", job)
            return job is not None

    def _operate(self, key) -> None:
        if self.operator is not None:
            return self.operator(self, key, copy.deepcopy(self.jobs[key]))
        for delay, ctype, reason, message in self.script:
            time.sleep(delay)
            self.set_condition(key, ctype, reason, message)

    def count(self, method: str, path_part: str = "", **query) -> int:
        return sum(
            1
            for m, p, q in self.requests
            if m == method and path_part in p and all(q.get(k) == v for k, v in query.items())
        )


def _handler(cluster: FakeCluster):
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.1 so that watch and log streams can be chunked like the real API server's;
        # every response closes its connection.
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _send(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

        def _start_chunked(self, content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _status(self, code: int, reason: str, message: str) -> None:
            self._send(
                code,
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "reason": reason,
                    "message": message,
                    "code": code,
                },
            )

        def _parse(self):
            url = urlparse(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            cluster.requests.append((self.command, url.path, query))
            return url.path, query

        def _job_key(self, path: str):
            rest = path[len(PREFIX) :].split("/")  # <ns>/tfjobs[/<name>]
            if len(rest) < 2 or rest[1] != "tfjobs":
                return None, None
            return rest[0], (rest[2] if len(rest) > 2 else None)

        def do_POST(self):
            path, _ = self._parse()
            ns, _ = self._job_key(path)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            key = (ns, body["metadata"]["name"])
            if key in cluster.jobs:
                return self._status(
                    409, "AlreadyExists", f'tfjobs.kubeflow.org "{key[1]}" already exists'
                )
            body["metadata"]["namespace"] = ns
            cluster.put(body)
            self._send(201, cluster.jobs[key])

        def do_DELETE(self):
            path, _ = self._parse()
            ns, name = self._job_key(path)
            if not cluster.delete((ns, name)):
                return self._status(404, "NotFound", f'tfjobs.kubeflow.org "{name}" not found')
            self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

        def do_GET(self):
            path, query = self._parse()
            if path.startswith("/api/v1/namespaces/"):
                return self._pods(path, query)
            ns, name = self._job_key(path)
            if name:
                job = cluster.jobs.get((ns, name))
                if job is None:
                    return self._status(404, "NotFound", f'tfjobs.kubeflow.org "{name}" not found')
                return self._send(200, job)
            if query.get("watch", "").lower() == "true":
                return self._watch(ns, query)
            items = [j for (n, _), j in cluster.jobs.items() if n == ns]
            self._send(
                200,
                {
                    "apiVersion": "kubeflow.org/v1",
                    "kind": "TFJobList",
                    "items": items,
                    "metadata": {"resourceVersion": str(cluster.rv)},
                },
            )

        def _watch(self, ns: str, query: dict):
            selector = query.get("fieldSelector", "")
            name = selector.split("=", 1)[1] if selector.startswith("metadata.name=") else None
            timeout = float(query.get("timeoutSeconds", "30"))
            self._start_chunked("application/json")
            with cluster.cond:
                if query.get("resourceVersion"):
                    since = int(query["resourceVersion"])
                    pending = []
                else:  # no version: the current state first, as ADDED
                    since = cluster.rv
                    pending = [
                        (cluster.rv, "ADDED", copy.deepcopy(j))
                        for (n, jn), j in cluster.jobs.items()
                        if n == ns and name in (None, jn)
                    ]
            end = time.time() + timeout
            try:
                while True:
                    for _, etype, obj in pending:
                        self._chunk((json.dumps({"type": etype, "object": obj}) + "\n").encode())
                    with cluster.cond:
                        remaining = end - time.time()
                        if remaining <= 0:
                            self._chunk(b"")
                            return
                        seen = since
                        cluster.cond.wait_for(
                            lambda seen=seen: cluster.rv > seen, timeout=remaining
                        )
                        pending = [
                            e
                            for e in cluster.events
                            if e[0] > since
                            and e[2]["metadata"]["namespace"] == ns
                            and name in (None, e[2]["metadata"]["name"])
                        ]
                        since = cluster.rv
            except (BrokenPipeError, ConnectionResetError):
                return

        def _pods(self, path: str, query: dict):
            parts = path.split("/")  # /api/v1/namespaces/<ns>/pods[/<name>/log]
            ns = parts[4]
            if path.endswith("/log"):
                self._start_chunked("text/plain")
                for line in cluster.chief_log.splitlines(keepends=True):
                    self._chunk(line.encode())
                self._chunk(b"")
                return
            selector = dict(
                kv.split("=", 1) for kv in query.get("labelSelector", "").split(",") if "=" in kv
            )
            job = selector.get("training.kubeflow.org/job-name")
            items = []
            if (ns, job) in cluster.jobs and selector.get(
                "training.kubeflow.org/replica-type"
            ) == "chief":
                items.append(
                    {
                        "metadata": {
                            "name": f"{job}-chief-0",
                            "namespace": ns,
                            "uid": f"pod-{job}",
                        },
                        "status": {
                            "phase": "Running",
                            "containerStatuses": [
                                {
                                    "name": "tensorflow",
                                    "image": "img",
                                    "imageID": "",
                                    "ready": True,
                                    "restartCount": 0,
                                }
                            ],
                        },
                    }
                )
            self._send(200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items})

    return Handler


class FakeApiServer:
    """Runs a :class:`FakeCluster` behind HTTP on 127.0.0.1 (context manager)."""

    def __init__(self, cluster: FakeCluster):
        self.cluster = cluster
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(cluster))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def api_client(self):
        from kubernetes import client

        config = client.Configuration()
        config.host = self.url
        return client.ApiClient(config)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
