"""Fixtures of the deployment tests: rendered kustomize overlays."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
KUSTOMIZATIONS = ("base", "overlays/local", "overlays/production")
TEST_CREDENTIALS = {"accesskey": "render-test-user", "secretkey": "render-test-password"}


@pytest.fixture(scope="session")
def manifests_copy(tmp_path_factory) -> Path:
    """A copy of manifests/ with a throwaway credentials file (the real one is never touched)."""
    root = tmp_path_factory.mktemp("manifests") / "manifests"
    shutil.copytree(MANIFESTS, root, ignore=shutil.ignore_patterns("minio-credentials.env"))
    env = "".join(f"{k}={v}\n" for k, v in TEST_CREDENTIALS.items())
    (root / "base" / "minio-credentials.env").write_text(env, encoding="utf-8")
    return root


def render_kubectl(directory: Path) -> list[dict]:
    """Renders a kustomization with ``kubectl kustomize``."""
    out = subprocess.run(
        ["kubectl", "kustomize", str(directory)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def _load_lite():
    spec = importlib.util.spec_from_file_location(
        "kfp_edge_tests_kustomize_lite", Path(__file__).with_name("kustomize_lite.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def render_lite(directory: Path) -> list[dict]:
    """Renders a kustomization with the tests' own small renderer."""
    return _load_lite().render(directory)


@pytest.fixture(scope="session")
def rendered(manifests_copy) -> dict:
    """Every kustomization rendered: kubectl when installed, the small renderer otherwise."""
    render = render_kubectl if shutil.which("kubectl") else render_lite
    return {name: render(manifests_copy / name) for name in KUSTOMIZATIONS}


@pytest.fixture(scope="session")
def renderers():
    """The two renderers by name; "kubectl" only when kubectl is installed."""
    found = {"lite": render_lite}
    if shutil.which("kubectl"):
        found["kubectl"] = render_kubectl
    return found


class FakeKfpApi:
    """A fake Kubeflow Pipelines REST API (v2beta1) on 127.0.0.1: no KFP server exists here.

    It implements only what ``kfp.Client`` calls to create a run (healthz, list and create
    experiments, create runs), checks what a real server would refuse (a missing or wrong
    bearer token when one is required, a run without a pipeline spec, parameters the pipeline
    does not declare), and records every request. Anything else gets a 404.
    """

    def __init__(self, token: str | None = None, multi_user: bool = False):
        self.token = token
        self.multi_user = multi_user
        self.requests: list[dict] = []
        self.experiments: list[dict] = []
        self.runs: list[dict] = []
        self._server = None

    def start(self) -> str:
        import http.server
        import threading

        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _reply(self, status: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str):
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null") if length else None
                record = {
                    "method": method,
                    "path": url.path,
                    "query": query,
                    "body": body,
                    "authorization": self.headers.get("Authorization"),
                }
                api.requests.append(record)
                if api.token and record["authorization"] != f"Bearer {api.token}":
                    return self._reply(401, {"error": "unauthenticated", "code": 16})
                status, reply = api.route(method, url.path, query, body)
                return self._reply(status, reply)

            def do_GET(self):  # noqa: N802
                self._handle("GET")

            def do_POST(self):  # noqa: N802
                self._handle("POST")

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self):
        self._server.shutdown()
        self._server.server_close()

    def route(self, method: str, path: str, query: dict, body):
        if method == "GET" and path == "/apis/v2beta1/healthz":
            return 200, {"multi_user": self.multi_user}
        if method == "GET" and path == "/apis/v2beta1/experiments":
            wanted = json.loads(query.get("filter", '{"predicates": []}'))["predicates"]
            names = {p["stringValue"] for p in wanted if p["key"] == "display_name"}
            found = [
                e
                for e in self.experiments
                if (not names or e["display_name"] in names)
                and e.get("namespace") == query.get("namespace", e.get("namespace"))
            ]
            return 200, {"experiments": found, "total_size": len(found)}
        if method == "POST" and path == "/apis/v2beta1/experiments":
            if not body or not body.get("display_name"):
                return 400, {"error": "experiment needs a display_name"}
            experiment = {**body, "experiment_id": f"exp-{len(self.experiments) + 1}"}
            self.experiments.append(experiment)
            return 200, experiment
        if method == "POST" and path == "/apis/v2beta1/runs":
            spec = (body or {}).get("pipeline_spec") or {}
            if "pipeline_spec" in spec:  # with kfp-kubernetes settings: both specs together
                spec = spec["pipeline_spec"]
            if not spec.get("pipelineInfo") or not spec.get("root"):
                return 400, {"error": "run needs a pipeline_spec with pipelineInfo and root"}
            if body.get("experiment_id") not in {e["experiment_id"] for e in self.experiments}:
                return 404, {"error": f"experiment {body.get('experiment_id')} not found"}
            declared = spec["root"].get("inputDefinitions", {}).get("parameters", {})
            given = (body.get("runtime_config") or {}).get("parameters") or {}
            unknown = sorted(set(given) - set(declared))
            if unknown:
                return 400, {"error": f"unknown parameters {unknown}"}
            run = {
                "run_id": f"run-{len(self.runs) + 1:04d}",
                "display_name": body.get("display_name"),
                "experiment_id": body["experiment_id"],
                "state": "PENDING",
            }
            self.runs.append({**body, **run})
            return 200, run
        return 404, {"error": f"{method} {path} is not part of this fake"}


@pytest.fixture
def fake_kfp():
    """A started :class:`FakeKfpApi`; ``fake_kfp.url`` is its address."""
    api = FakeKfpApi()
    api.url = api.start()
    yield api
    api.stop()
