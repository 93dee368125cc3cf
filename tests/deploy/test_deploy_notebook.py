"""examples/edge_pipeline.ipynb executed with nbclient in a real Jupyter kernel.

The submit cell talks to the fake KFP API of conftest.py (no KFP server exists on this machine).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "edge_pipeline.ipynb"


def _execute(nb, cwd: Path, timeout: int):
    NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    ).execute()
    return nb


def _text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", ""))
        parts.append(out.get("data", {}).get("text/plain", ""))
    return "".join(parts)


@pytest.fixture
def kernel_env(tmp_path, monkeypatch):
    """The kernel inherits this environment: a private HOME (kfp's context file) and no host."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("KF_PIPELINES_ENDPOINT", "KF_PIPELINES_TOKEN", "KF_PIPELINES_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "no-token"))
    return monkeypatch


def test_notebook_is_valid_and_its_submit_cell_skips_without_a_host(tmp_path, kernel_env):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    assert all(not c.get("outputs") for c in code), "commit the notebook without outputs"
    # The parameters cell and the submit cell alone: the submit cell must not need the run.
    quick = nbformat.v4.new_notebook(cells=[code[0], code[-1]], metadata=nb.metadata)
    kernel_env.setenv("KFP_EDGE_WORKSPACE", str(tmp_path / "ws"))
    _execute(quick, tmp_path, timeout=120)
    assert "skipping the submission" in _text(quick.cells[-1])


@pytest.mark.slow
def test_notebook_runs_top_to_bottom_and_submits(tmp_path, kernel_env, fake_kfp):
    kernel_env.setenv("KFP_EDGE_WORKSPACE", str(tmp_path / "ws"))
    kernel_env.setenv("KFP_EDGE_EPOCHS", "60")
    kernel_env.setenv("KFP_EDGE_WORKERS", "1")  # one training process: the e2e test runs two
    kernel_env.setenv("KF_PIPELINES_ENDPOINT", fake_kfp.url)
    nb = _execute(nbformat.read(NOTEBOOK, as_version=4), tmp_path, timeout=600)
    code = [c for c in nb.cells if c.cell_type == "code"]
    outputs = {i: _text(c) for i, c in enumerate(code)}
    assert "full_int8" in outputs[2]  # the variant table (a DataFrame)
    assert any("image/png" in out.get("data", {}) for out in code[3].outputs)  # the chart
    assert f"{fake_kfp.url}/#/runs/details/run-0001" in outputs[4]
    (run,) = fake_kfp.runs
    assert run["runtime_config"]["parameters"]["epochs"] == 60
    assert (tmp_path / "ws" / "runs").is_dir()
