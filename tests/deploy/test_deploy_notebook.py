"""examples/edge_pipeline.ipynb: committed with its outputs, executed with nbclient in a kernel.

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


def _images(cell) -> int:
    return sum("image/png" in out.get("data", {}) for out in cell.get("outputs", []))


def test_committed_notebook_shows_its_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    assert 'DATASET = os.environ.get("KFP_EDGE_DATASET", "sensor")' in code[0].source
    assert all(c.get("outputs") for c in code), "commit the notebook executed, with outputs"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    run_output = _text(code[1])
    assert "✓ publish" in run_output and "pruned_int8" in run_output
    assert len(run_output.splitlines()) <= 45  # quiet progress, not kfp.local's logs
    assert "Executing task" not in run_output and "\x1b[" not in run_output
    html_outputs = [
        o["data"]["text/html"] for o in code[2].outputs if "text/html" in o.get("data", {})
    ]
    assert html_outputs and "Confusion matrices" in html_outputs[0]  # the report, inline
    assert _images(code[4]) == 1  # the chart and the confusion matrix
    assert "max_size_bytes=" in _text(code[5])
    assert "predicted" in _text(code[7])


def test_notebook_submit_cell_skips_without_a_host(tmp_path, kernel_env):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    # The parameters cell and the submit cell alone: the submit cell must not need the run.
    quick = nbformat.v4.new_notebook(cells=[code[0], code[-1]], metadata=nb.metadata)
    kernel_env.setenv("KFP_EDGE_WORKSPACE", str(tmp_path / "ws"))
    _execute(quick, tmp_path, timeout=120)
    assert "skipping the submission" in _text(quick.cells[-1])


@pytest.mark.slow
def test_notebook_runs_top_to_bottom_and_submits(tmp_path, kernel_env, fake_kfp):
    kernel_env.setenv("KFP_EDGE_WORKSPACE", str(tmp_path / "ws"))
    kernel_env.setenv("KFP_EDGE_EPOCHS", "8")  # small: the committed outputs show 20 epochs
    kernel_env.setenv("KFP_EDGE_WORKERS", "1")  # one training process: the e2e test runs two
    kernel_env.setenv("KF_PIPELINES_ENDPOINT", fake_kfp.url)
    nb = _execute(nbformat.read(NOTEBOOK, as_version=4), tmp_path, timeout=1200)
    code = [c for c in nb.cells if c.cell_type == "code"]
    outputs = {i: _text(c) for i, c in enumerate(code)}
    assert "✓ publish" in outputs[1]
    assert "pruned_int8" in outputs[3]  # the variant table (a DataFrame)
    assert _images(code[4]) == 1  # the chart and the confusion matrix
    assert "chosen" in outputs[5]  # the gate rerun alone
    assert "8 epochs" in outputs[6] and "2 epochs" in outputs[6]  # two runs compared
    assert "confidence" in outputs[7]  # LiteRT predictions of the published model
    assert f"{fake_kfp.url}/#/runs/details/run-0001" in outputs[8]
    (run,) = fake_kfp.runs
    assert run["runtime_config"]["parameters"]["epochs"] == 8
    versions = sorted(p.name for p in (tmp_path / "ws" / "models" / "edge-model").iterdir())
    assert versions[:2] == ["1", "2"]
