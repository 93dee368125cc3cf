"""FAKE Katib API server for the search launcher's tests: no cluster exists on this machine.

A small HTTP server on loopback that the real ``kubernetes`` client talks to, serving
``POST/GET/DELETE /apis/kubeflow.org/v1beta1/namespaces/<ns>/experiments[/<name>]`` (409 on a
duplicate create, 404 on a missing one). Where it matters it behaves like Katib:

- a created Experiment is rebuilt through the ``kubeflow-katib-api`` models, so unknown fields
  are dropped as the CRD's pruning would;
- its "controller" really runs the trials: it draws the assignments with the Experiment's
  algorithm, substitutes ``${trialParameters.*}`` (and ``${trialSpec.Name}``) into the TFJob
  trial template and runs each TFJob with the project's local TFJob engine, then reads each
  trial's ``validation_accuracy`` from its report and sets ``currentOptimalTrial`` and the
  Succeeded (or Failed) condition as Katib does;
- faults are injected per test: ``fail_next`` (the next Experiment fails), ``get_errors``
  (HTTP statuses answered to the next reads).
"""

from __future__ import annotations

import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PREFIX = "/apis/kubeflow.org/v1beta1/namespaces/"


class FakeKatib:
    """The stored Experiments, the trial runner and the injected faults."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.experiments: dict[tuple, dict] = {}
        self.lock = threading.Lock()
        self.get_errors: list[int] = []
        self.fail_next = False
        self.deleted: list[str] = []
        self.created = 0

    def create(self, ns: str, body: dict) -> dict | None:
        from kubeflow_katib_api.models import V1beta1Experiment

        stored = V1beta1Experiment.model_validate(body).model_dump(
            by_alias=True, exclude_none=True, mode="json"
        )
        key = (ns, stored["metadata"]["name"])
        with self.lock:
            if key in self.experiments:
                return None
            stored["status"] = {"conditions": [{"type": "Created", "status": "True"}]}
            self.experiments[key] = stored
            self.created += 1
            fail, self.fail_next = self.fail_next, False
        threading.Thread(target=self._controller, args=(key, fail), daemon=True).start()
        return copy.deepcopy(stored)

    def _controller(self, key: tuple, fail: bool) -> None:
        """Runs every trial of the Experiment as a local TFJob, then sets the result."""
        from kfp_edge.tfjob_training.local_tfjob_engine import run_tfjob
        from kfp_edge.tfjob_training.search_space import suggest

        experiment = self.experiments[key]
        spec = experiment["spec"]
        space = _space_of(spec["parameters"])
        results = []
        for i, assignment in enumerate(
            suggest(space, spec["algorithm"]["algorithmName"], spec["maxTrialCount"])
        ):
            name = f"{key[1]}-{i:03d}"
            self._set_status(key, trialsRunning=1, trialsSucceeded=len(results))
            job = _trial_job(spec["trialTemplate"], assignment, name)
            if fail:
                break
            status = run_tfjob(
                job, self.log_dir / name, stream=open(self.log_dir / f"{name}.log", "w")
            )  # noqa: SIM115
            output = Path(
                job["spec"]["tfReplicaSpecs"]["Chief"]["template"]["spec"]["containers"][0]["args"][
                    3
                ]
            )
            report = json.loads((output / "training_report.json").read_text())
            results.append((report["validation"]["accuracy"], name, assignment, status))
        if fail:
            self._finish(key, "Failed", "trial template is invalid: the fake was told to fail")
            return
        accuracy, best, assignment, _ = max(results)
        with self.lock:
            status = self.experiments[key]["status"]
            status.update(trialsRunning=0, trialsSucceeded=len(results))
            status["currentOptimalTrial"] = {
                "bestTrialName": best,
                "parameterAssignments": [
                    {"name": k, "value": str(v)} for k, v in assignment.items()
                ],
                "observation": {"metrics": [{"name": "validation_accuracy", "max": str(accuracy)}]},
            }
        self._finish(
            key, "Succeeded", "Experiment has succeeded because max trial count has reached"
        )

    def _set_status(self, key, **counts) -> None:
        with self.lock:
            status = self.experiments[key]["status"]
            status.update(counts)
            if not any(c["type"] == "Running" for c in status["conditions"]):
                status["conditions"].append({"type": "Running", "status": "True"})

    def _finish(self, key, ctype: str, message: str) -> None:
        with self.lock:
            conditions = self.experiments[key]["status"]["conditions"]
            for c in conditions:
                if c["type"] == "Running":
                    c["status"] = "False"
            conditions.append({"type": ctype, "status": "True", "message": message})


def _space_of(parameters: list[dict]) -> dict:
    """The search space of Katib parameters (the inverse of katib.katib_parameter)."""
    space = {}
    for p in parameters:
        feasible = p["feasibleSpace"]
        if p["parameterType"] == "categorical":
            values = [float(v) if p["name"] == "learning_rate" else v for v in feasible["list"]]
            space[p["name"]] = {"type": "categorical", "values": values}
        else:
            cast = float if p["parameterType"] == "double" else int
            space[p["name"]] = {
                "type": p["parameterType"],
                "min": cast(feasible["min"]),
                "max": cast(feasible["max"]),
                "scale": "log" if feasible.get("distribution") == "logUniform" else "linear",
            }
    return space


def _trial_job(template: dict, assignment: dict, trial: str) -> dict:
    values = {"trialName": trial}
    for parameter in template["trialParameters"]:
        if parameter["reference"] in assignment:
            values[parameter["name"]] = str(assignment[parameter["reference"]])
    text = json.dumps(template["trialSpec"])
    for name, value in values.items():
        text = text.replace("${trialParameters." + name + "}", value)
    job = json.loads(text)
    job["metadata"] = {"name": trial, "namespace": "local"}
    return job


def _handler(katib: FakeKatib):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _key(self):
            rest = self.path.split("?")[0][len(PREFIX) :].split("/")  # <ns>/experiments[/<name>]
            return rest[0], (rest[2] if len(rest) > 2 else None)

        def _missing(self, name):
            self._send(
                404,
                {
                    "kind": "Status",
                    "code": 404,
                    "reason": "NotFound",
                    "message": f'experiments.kubeflow.org "{name}" not found',
                },
            )

        def do_POST(self):
            ns, _ = self._key()
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            stored = katib.create(ns, body)
            if stored is None:
                return self._send(409, {"kind": "Status", "code": 409, "reason": "AlreadyExists"})
            self._send(201, stored)

        def do_GET(self):
            ns, name = self._key()
            if katib.get_errors:
                code = katib.get_errors.pop(0)
                return self._send(code, {"kind": "Status", "code": code, "reason": "Unavailable"})
            with katib.lock:
                found = copy.deepcopy(katib.experiments.get((ns, name)))
            return self._send(200, found) if found else self._missing(name)

        def do_DELETE(self):
            ns, name = self._key()
            with katib.lock:
                found = katib.experiments.pop((ns, name), None)
            if not found:
                return self._missing(name)
            katib.deleted.append(name)
            self._send(200, {"kind": "Status", "status": "Success"})

    return Handler


def serve(log_dir: Path):
    """Starts the fake on 127.0.0.1; returns ``(FakeKatib, ApiClient, server)``."""
    from kubernetes import client

    katib = FakeKatib(log_dir)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(katib))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{server.server_address[1]}"
    return katib, client.ApiClient(configuration), server
