"""FAKE Kubernetes API server for the launcher's tests: no cluster exists on this machine.

A small HTTP server on loopback that speaks the few endpoints the launcher uses, so the real
``kubernetes`` Python client is exercised end to end (URLs, query parameters, watch streams,
chunked log reads, error statuses):

- discovery ``GET /apis/kubeflow.org/v1`` (404 when the "operator" is not installed);
- ``POST/GET/PATCH/DELETE /apis/kubeflow.org/v1/namespaces/<ns>/tfjobs[/<name>]`` (409 on a
  duplicate create, 404 on a missing job), ``GET ...tfjobs?watch=true`` as a stream of JSON
  watch events resumable from a ``resourceVersion``;
- ``GET /api/v1/namespaces/<ns>/pods?labelSelector=...`` and ``.../pods/<pod>/log``
  (``follow``, ``previous``, ``tailLines``).

Where it matters it behaves like a real API server with the Training Operator:

- unknown fields of a created TFJob are pruned, as the CRD's structural schema does (the
  schema here is the ``kubeflow-training`` SDK's models);
- conditions are set the way the operator's ``setCondition`` does (one per type; Running and
  Restarting replace each other; Succeeded/Failed set Running to False; nothing after Failed);
- the job's pods exist (one per replica, with the operator's labels), can be Pending with the
  scheduler's message, restarted (restart count, last state) or recreated (a new uid);
- DELETE can linger (``deletionTimestamp`` first, the object gone later).

Faults are injected per test with :meth:`FakeCluster.inject`: the next request of a kind
(``watch``, ``get``, ``pods``, ``create``, ``delete``, ``log``) gets the fault instead of its
answer: ``("status", code)``, ``("drop",)`` (the connection closes mid-stream), ``("hang",)``
(a watch that sends nothing and never ends), ``("gone",)`` (a watch ERROR event 410) or
``("error", code)`` (a watch ERROR event with that code).
"""

from __future__ import annotations

import copy
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PREFIX = "/apis/kubeflow.org/v1/namespaces/"
DISCOVERY = "/apis/kubeflow.org/v1"
_PRIMITIVES = ("str", "int", "bool", "float", "object")


def prune(value, type_name: str = "KubeflowOrgV1TFJob", path: str = "", pruned=None):
    """Drops the fields the schema does not know, like a CRD's structural pruning.

    Returns:
        ``(pruned value, [paths of dropped fields])``.
    """
    from kfp_edge.tfjob_training.tfjob_spec import _model_class

    pruned = [] if pruned is None else pruned
    if type_name.startswith("list[") and isinstance(value, list):
        inner = type_name[5:-1]
        return [prune(v, inner, f"{path}[{i}]", pruned)[0] for i, v in enumerate(value)], pruned
    if type_name.startswith("dict(") and isinstance(value, dict):
        inner = type_name[type_name.index(",") + 1 : -1].strip()
        return {k: prune(v, inner, f"{path}.{k}", pruned)[0] for k, v in value.items()}, pruned
    if type_name in _PRIMITIVES or not isinstance(value, dict):
        return value, pruned
    cls = _model_class(type_name)
    by_json = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    out = {}
    for key, item in value.items():
        if key in by_json:
            out[key] = prune(item, cls.openapi_types[by_json[key]], f"{path}.{key}", pruned)[0]
        elif key != "status":
            pruned.append(f"{path}.{key}")
        else:
            out[key] = item
    return out, pruned


def _labels(job: str, rtype: str, index: int) -> dict:
    return {
        "training.kubeflow.org/job-name": job,
        "training.kubeflow.org/replica-type": rtype.lower(),
        "training.kubeflow.org/replica-index": str(index),
    }


class FakeCluster:
    """State of the fake API server, and the scripted operator."""

    def __init__(self, script=None, chief_log: str = "", operator=None, **options):
        self.script = script or []  # [(delay seconds, condition type, reason, message)]
        self.operator = operator  # or operator(cluster, key, job): runs the job for real
        self.chief_log = chief_log
        self.log_line_delay = options.get("log_line_delay", 0.0)
        self.operator_installed = options.get("operator_installed", True)
        self.delete_linger_seconds = options.get("delete_linger_seconds", 0.0)
        self.pod_phase = options.get("pod_phase", "Running")
        self.jobs: dict[tuple[str, str], dict] = {}
        self.pods: dict[tuple[str, str], dict] = {}  # (ns, pod name) -> pod
        self.logs: dict[str, dict] = {}  # pod name -> {"current": str, "previous": str}
        self.events: list[tuple[int, str, dict]] = []
        self.requests: list[tuple[str, str, dict]] = []
        self.bodies: list[tuple[str, str, dict]] = []
        self.pruned: list[str] = []
        self.faults: dict[str, list[tuple]] = {}
        self.rv = 100
        self.cond = threading.Condition()

    def inject(self, kind: str, *faults: tuple) -> None:
        """Queues faults for the next requests of a kind (see the module docstring)."""
        self.faults.setdefault(kind, []).extend(faults)

    def _fault(self, kind: str):
        queue = self.faults.get(kind) or []
        return queue.pop(0) if queue else None

    # -- state changes (under self.cond) --
    def _emit(self, etype: str, obj: dict) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.events.append((self.rv, etype, copy.deepcopy(obj)))
        self.cond.notify_all()

    def put(self, obj: dict, run_script: bool = True) -> None:
        """Stores a TFJob (pruned like the CRD would) with its pods, and starts the operator."""
        obj, pruned = prune(copy.deepcopy(obj))
        self.pruned.extend(pruned)
        with self.cond:
            meta = obj["metadata"]
            meta.setdefault("uid", f"uid-{meta['name']}-{self.rv}")
            obj.setdefault("status", {"conditions": []})
            key = (meta["namespace"], meta["name"])
            self.jobs[key] = obj
            self._emit("ADDED", obj)
            for rtype, spec in obj["spec"]["tfReplicaSpecs"].items():
                for index in range(int(spec.get("replicas", 1))):
                    self.add_pod(key, rtype, index, self.pod_phase)
        if run_script:
            threading.Thread(target=self._operate, args=(key,), daemon=True).start()

    def add_pod(self, key, rtype: str, index: int, phase: str = "Running", **status) -> dict:
        """Creates (or recreates, with a new uid) the pod of a replica."""
        name = f"{key[1]}-{rtype.lower()}-{index}"
        self.rv += 1
        pod = {
            "metadata": {
                "name": name,
                "namespace": key[0],
                "uid": f"pod-{name}-{self.rv}",
                "labels": _labels(key[1], rtype, index),
            },
            "status": {
                "phase": phase,
                "containerStatuses": [
                    {"name": "tensorflow", "restartCount": 0, "state": {"running": {}}}
                ],
                **status,
            },
        }
        self.pods[(key[0], name)] = pod
        self.logs.setdefault(name, {"current": "", "previous": ""})
        return pod

    def pod(self, key, rtype: str, index: int) -> dict:
        """Returns the pod of a replica."""
        return self.pods[(key[0], f"{key[1]}-{rtype.lower()}-{index}")]

    def pend(self, key, rtype: str, index: int, message: str) -> None:
        """Makes a replica's pod Pending and Unschedulable with the scheduler's message."""
        self.pod(key, rtype, index)["status"] = {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": message,
                }
            ],
        }

    def terminate(self, key, rtype: str, index: int, code: int, reason: str, log: str = ""):
        """Ends a replica's container with an exit code and reason; its log is ``log``."""
        pod = self.pod(key, rtype, index)
        cs = pod["status"]["containerStatuses"][0]
        cs["state"] = {"terminated": {"exitCode": code, "reason": reason}}
        pod["status"]["phase"] = "Failed" if code else "Succeeded"
        self.logs[pod["metadata"]["name"]]["current"] = log

    def restart_container(self, key, rtype: str, index: int, code: int, reason: str, log: str):
        """Restarts a replica's container in place (restartCount + 1, lastState terminated)."""
        pod = self.pod(key, rtype, index)
        cs = pod["status"]["containerStatuses"][0]
        cs["restartCount"] += 1
        cs["lastState"] = {"terminated": {"exitCode": code, "reason": reason}}
        cs["state"] = {"running": {}}
        self.logs[pod["metadata"]["name"]] = {"current": "", "previous": log}

    def set_condition(self, key, ctype: str, reason: str, message: str) -> None:
        """Sets a job condition the way the Training Operator's setCondition does."""
        with self.cond:
            job = self.jobs.get(key)
            if job is None:
                return
            conds = job["status"]["conditions"]
            if any(c["type"] == "Failed" and c["status"] == "True" for c in conds):
                return
            kept = []
            for c in conds:
                if c["type"] == ctype or {ctype, c["type"]} == {"Running", "Restarting"}:
                    continue
                if ctype in ("Succeeded", "Failed") and c["type"] == "Running":
                    c["status"] = "False"
                kept.append(c)
            stamp = f"{time.time():.6f}"
            kept.append(
                {
                    "type": ctype,
                    "status": "True",
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": stamp,
                    "lastUpdateTime": stamp,
                }
            )
            job["status"]["conditions"] = kept
            self._emit("MODIFIED", job)

    def patch(self, key, body: dict) -> dict | None:
        """Applies a JSON merge patch of metadata to a job."""
        with self.cond:
            job = self.jobs.get(key)
            if job is not None:
                job["metadata"].update(copy.deepcopy(body.get("metadata") or {}))
                self._emit("MODIFIED", job)
            return job

    def delete(self, key) -> bool:
        """Deletes a job: at once, or after ``delete_linger_seconds`` (deletionTimestamp)."""
        with self.cond:
            job = self.jobs.get(key)
            if job is None:
                return False
            if self.delete_linger_seconds > 0:
                if not job["metadata"].get("deletionTimestamp"):
                    job["metadata"]["deletionTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ")
                    self._emit("MODIFIED", job)
                    timer = threading.Timer(self.delete_linger_seconds, self._remove, (key,))
                    timer.daemon = True
                    timer.start()
                return True
        self._remove(key)
        return True

    def _remove(self, key) -> None:
        with self.cond:
            job = self.jobs.pop(key, None)
            if job is not None:
                self._emit("DELETED", job)
            for pkey in [p for p in self.pods if p[1].startswith(f"{key[1]}-")]:
                del self.pods[pkey]

    def _operate(self, key) -> None:
        if self.operator is not None:
            return self.operator(self, key, copy.deepcopy(self.jobs[key]))
        for step in self.script:
            time.sleep(step[0])
            if callable(step[1]):
                step[1](self, key)
            else:
                self.set_condition(key, *step[1:])

    def count(self, method: str, path_part: str = "", **query) -> int:
        """Counts the requests of a method (and path part, query values) received."""
        return sum(
            1
            for m, p, q in self.requests
            if m == method and path_part in p and all(q.get(k) == v for k, v in query.items())
        )


def _status(code: int, reason: str, message: str) -> dict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "reason": reason,
        "message": message,
        "code": code,
    }


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

        def _error(self, code: int, reason: str, message: str) -> None:
            self._send(code, _status(code, reason, message))

        def _parse(self):
            url = urlparse(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            cluster.requests.append((self.command, url.path, query))
            return url.path, query

        def _body(self) -> dict:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
            cluster.bodies.append((self.command, self.path, body))
            return body

        def _faulted(self, kind: str) -> bool:
            fault = cluster._fault(kind)
            if fault is None:
                return False
            if fault[0] == "status":
                self._error(fault[1], "InternalError", f"injected {fault[1]}")
            elif fault[0] == "drop":  # headers, then the connection ends mid-stream
                self._start_chunked("application/json")
                self.wfile.write(b'40\r\n{"type": "MODIFIED", "obj')
                self.wfile.flush()
                self.close_connection = True
            return fault[0] in ("status", "drop")

        def _job_key(self, path: str):
            rest = path[len(PREFIX) :].split("/")  # <ns>/tfjobs[/<name>]
            if len(rest) < 2 or rest[1] != "tfjobs":
                return None, None
            return rest[0], (rest[2] if len(rest) > 2 else None)

        def _no_crd(self) -> bool:
            if not cluster.operator_installed:
                self._error(404, "NotFound", "the server could not find the requested resource")
            return not cluster.operator_installed

        def do_POST(self):
            path, _ = self._parse()
            body = self._body()
            if self._no_crd() or self._faulted("create"):
                return
            ns, _ = self._job_key(path)
            key = (ns, body["metadata"]["name"])
            if key in cluster.jobs:
                return self._error(
                    409, "AlreadyExists", f'tfjobs.kubeflow.org "{key[1]}" already exists'
                )
            body["metadata"]["namespace"] = ns
            cluster.put(body)
            self._send(201, cluster.jobs[key])

        def do_PATCH(self):
            path, _ = self._parse()
            body = self._body()
            ns, name = self._job_key(path)
            job = cluster.patch((ns, name), body)
            if job is None:
                return self._error(404, "NotFound", f'tfjobs.kubeflow.org "{name}" not found')
            self._send(200, job)

        def do_DELETE(self):
            path, _ = self._parse()
            self._body() if self.headers.get("Content-Length") else None
            if self._no_crd() or self._faulted("delete"):
                return
            ns, name = self._job_key(path)
            if not cluster.delete((ns, name)):
                return self._error(404, "NotFound", f'tfjobs.kubeflow.org "{name}" not found')
            self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

        def do_GET(self):
            path, query = self._parse()
            if path == DISCOVERY:
                return self._discovery()
            if path.startswith("/api/v1/namespaces/"):
                return self._pods(path, query)
            if self._no_crd():
                return
            ns, name = self._job_key(path)
            if name:
                if self._faulted("get"):
                    return
                job = cluster.jobs.get((ns, name))
                if job is None:
                    return self._error(404, "NotFound", f'tfjobs.kubeflow.org "{name}" not found')
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

        def _discovery(self):
            if self._no_crd():
                return
            resource = {
                "name": "tfjobs",
                "singularName": "tfjob",
                "namespaced": True,
                "kind": "TFJob",
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            }
            self._send(
                200,
                {
                    "kind": "APIResourceList",
                    "apiVersion": "v1",
                    "groupVersion": "kubeflow.org/v1",
                    "resources": [resource],
                },
            )

        def _watch_fault(self) -> bool:
            fault = cluster.faults.get("watch", [None])[0] if cluster.faults.get("watch") else None
            if fault is None or fault[0] in ("status", "drop"):
                return self._faulted("watch")
            cluster._fault("watch")
            self._start_chunked("application/json")
            if fault[0] == "hang":
                time.sleep(3600)
            code = 410 if fault[0] == "gone" else fault[1]
            reason = "Expired" if code == 410 else "InternalError"
            event = {"type": "ERROR", "object": _status(code, reason, f"injected {code}")}
            self._chunk((json.dumps(event) + "\n").encode())
            self._chunk(b"")
            return True

        def _watch(self, ns: str, query: dict):
            if self._watch_fault():
                return
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

        def _log(self, ns: str, pod: str, query: dict):
            if self._faulted("log"):
                return
            if (ns, pod) not in cluster.pods:
                return self._error(404, "NotFound", f'pods "{pod}" not found')
            logs = cluster.logs.get(pod) or {}
            if query.get("previous", "").lower() == "true":
                text = logs.get("previous", "")
            else:
                text = logs.get("current", "")
                chief = cluster.pods[(ns, pod)]["metadata"]["labels"].get(
                    "training.kubeflow.org/replica-type"
                )
                text = text or (cluster.chief_log if chief == "chief" else "")
            lines = text.splitlines(keepends=True)
            if query.get("tailLines"):
                lines = lines[-int(query["tailLines"]) :]
            self._start_chunked("text/plain")
            for line in lines:
                if query.get("follow", "").lower() == "true":
                    time.sleep(cluster.log_line_delay)
                self._chunk(line.encode())
            self._chunk(b"")

        def _pods(self, path: str, query: dict):
            parts = path.split("/")  # /api/v1/namespaces/<ns>/pods[/<name>/log]
            ns = parts[4]
            if path.endswith("/log"):
                return self._log(ns, parts[6], query)
            if self._faulted("pods"):
                return
            selector = dict(
                kv.split("=", 1) for kv in query.get("labelSelector", "").split(",") if "=" in kv
            )
            items = [
                copy.deepcopy(p)
                for (pns, _), p in list(cluster.pods.items())
                if pns == ns
                and all(p["metadata"]["labels"].get(k) == v for k, v in selector.items())
            ]
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
        """The server's base URL."""
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def api_client(self):
        """A real ``kubernetes`` ApiClient pointed at this server."""
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
