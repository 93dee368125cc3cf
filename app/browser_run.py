"""Driving headless Chromium against the served web client: fixed rows, outputs and latency.

``web/run_browser.mjs`` (Node, playwright-core) starts the system Chromium and talks to it
over the DevTools protocol; this module starts the server (:class:`WebServer`), hands the
script a job and reads back its JSON. The browser test, ``benchmarks/bench_browser.py`` and
``kfp-edge serve-web --measure`` use it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from kfp_edge.app.serve_web import LITERT_JS, WEB_DIR, WebServer
from kfp_edge.dataset import load_split
from kfp_edge.workspace import DATA_DIR, EVALUATION_FILE, VARIANTS_DIR, write_json_atomic

PLAYWRIGHT = Path("node_modules") / "playwright-core"
CHROMIUM = "/usr/bin/chromium"


def browser_missing(web_dir: Path = WEB_DIR) -> str | None:
    """Returns why headless Chromium cannot be driven here (Chromium, node, npm), or None."""
    chromium = os.environ.get("CHROMIUM", CHROMIUM)
    if not Path(chromium).is_file():
        return f"{chromium} is not installed (apt-get install chromium)"
    if shutil.which("node") is None:
        return "node is not installed (apt-get install nodejs npm)"
    if not (web_dir / LITERT_JS).is_file() or not (web_dir / PLAYWRIGHT).is_dir():
        return f"the web client's npm packages are missing; run `npm ci` in {web_dir}"
    return None


def run_in_browser(url: str, job: dict, web_dir: Path = WEB_DIR, timeout: float = 300) -> dict:
    """Runs a job of ``web/run_browser.mjs`` in headless Chromium against a served page.

    Args:
        url: The page (:attr:`WebServer.url`).
        job: ``{"rows": [[features]], "runs", "warmup", "models": [names] (default: every
            browser-ready one)}``.
        web_dir: The web client (holds ``run_browser.mjs`` and playwright-core).
        timeout: Seconds before the browser run is abandoned.

    Returns:
        ``{"results": [{"name", "outputs", "latency_us": {"p50", "p95", "p99", "mean",
        "runs", "warmup"}}], "isolated": bool, "status", "console": [lines]}``.

    Raises:
        FileNotFoundError: If Chromium, node or the npm packages are missing (says which).
        RuntimeError: If Chromium or the page fails (with the browser's console).
    """
    missing = browser_missing(Path(web_dir))
    if missing:
        raise FileNotFoundError(missing)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(job, f)
    try:
        done = subprocess.run(
            ["node", str(Path(web_dir) / "run_browser.mjs"), url, f.name],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=web_dir,
        )
    finally:
        os.unlink(f.name)
    if done.returncode != 0:
        raise RuntimeError(f"the browser run of {url} failed: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _rows_for(model_dir: Path, num_features: int, count: int = 256) -> list[list[float]]:
    """Rows to time: the evaluated split of a run's variants directory, else fixed random rows."""
    data = model_dir.parent / DATA_DIR
    evaluation = model_dir.parent / EVALUATION_FILE
    if model_dir.name == VARIANTS_DIR and evaluation.is_file() and data.is_dir():
        x, _ = load_split(data, json.loads(evaluation.read_text()).get("split", "test"))
        return x[:count].tolist()
    return np.random.default_rng(0).normal(size=(count, num_features)).round(4).tolist()


def measure_in_browser(model_dir: Path, runs: int = 1000, warmup: int = 100) -> dict:
    """Times every browser-ready model of ``model_dir`` in headless Chromium.

    When ``model_dir`` is a run's ``variants/`` directory, the run's ``evaluation.json`` gets
    each variant's browser figures as ``browser.latency_us`` (nothing else in it changes), so
    the report shows them next to Python's.

    Returns:
        ``{name: latency_us}`` of the browser-ready models.
    """
    with WebServer(model_dir, quiet=True) as server:
        ready = [m for m in server.models if m["browser_ready"]]
        if not ready:
            raise ValueError(f"{model_dir}: no model LiteRT.js can run")
        job = {"rows": _rows_for(model_dir, ready[0]["num_features"]), "runs": runs}
        out = run_in_browser(server.url, {**job, "warmup": warmup})
    figures = {r["name"]: r["latency_us"] for r in out["results"]}
    evaluation = model_dir.parent / EVALUATION_FILE
    if model_dir.name == VARIANTS_DIR and evaluation.is_file():
        data = json.loads(evaluation.read_text())
        for entry in data.get("variants") or []:
            if entry["name"] in figures and "browser" in entry:
                entry["browser"]["latency_us"] = figures[entry["name"]]
        write_json_atomic(evaluation, data)
    return figures


def print_measured(model_dir: Path, runs: int) -> int:
    """Prints browser latency per model, next to Python's where an evaluation has it."""
    if runs < 1:
        raise ValueError(f"--measure: {runs} runs; give at least 1")
    figures = measure_in_browser(model_dir, runs=runs)
    evaluation = model_dir.parent / EVALUATION_FILE
    python = {}
    if model_dir.name == VARIANTS_DIR and evaluation.is_file():
        variants = json.loads(evaluation.read_text()).get("variants") or []
        python = {v["name"]: v["latency_us"] for v in variants}
    for name, latency in figures.items():
        line = f"  {name}: browser p50 {latency['p50']:.1f} / p95 {latency['p95']:.1f} µs"
        if name in python:
            line += f"; python p50 {python[name]['p50']:.1f} / p95 {python[name]['p95']:.1f} µs"
        print(line)
    return 0
