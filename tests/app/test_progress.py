"""The run monitor on kfp.local's real output: a tiny pipeline run under the SubprocessRunner."""

# No `from __future__ import annotations`: kfp reads the components' annotations as types.

import io

import pytest
from kfp import dsl, local

from kfp_edge.app.progress import ProgressView, RunMonitor
from kfp_edge.app.run_local import run_pipeline_locally


@dsl.component(base_image="python:3.11")
def _epochs(workspace: str, run_id: str, fail: bool) -> str:
    from kfp_edge.progress import report_progress

    for epoch in range(1, 5):
        print(f"Epoch {epoch}/4")
        print(f"3/3 - 0s - loss: {1 / epoch:.4f} - accuracy: {epoch / 4:.4f} - 1ms/step")
    report_progress(2, 2, "done")
    if fail:
        raise ValueError(f"{workspace}: row 7, field 'temp': not a number")
    return run_id


# run_pipeline_locally passes training_engine (the edge pipelines take it).
@dsl.pipeline(name="tiny")
def _tiny(workspace: str, run_id: str, fail: bool = False, training_engine: str = ""):
    _epochs(workspace=workspace, run_id=run_id, fail=fail).set_display_name("train")


def _run(tmp_path, capsys, **params):
    _, error = run_pipeline_locally(_tiny, str(tmp_path), "tiny-1", **params)
    return error, capsys.readouterr()


def test_one_line_per_step_with_epochs_and_logs_in_the_run(tmp_path, capsys):
    error, out = _run(tmp_path, capsys)
    assert error is None
    lines = out.out.splitlines()
    assert lines[-1].startswith("✓ train ") and lines[-1].endswith(" s")
    assert "  train              4/4 loss 0.2500 accuracy 1.0000" in lines
    assert out.err == "" and "Executing task" not in out.out and "\x1b[" not in out.out
    logs = tmp_path / "runs" / "tiny-1" / "logs"
    assert "Epoch 4/4" in (logs / "train.log").read_text()
    assert "Executing task" in (logs / "pipeline.log").read_text()


def test_a_failed_step_is_named_with_its_error_line(tmp_path, capsys):
    error, out = _run(tmp_path, capsys, fail=True)
    assert out.out.splitlines()[-1].startswith("✗ train")
    log = tmp_path / "runs" / "tiny-1" / "logs" / "train.log"
    assert error == (
        f"step train failed: ValueError: {tmp_path}: row 7, field 'temp': not a number\n"
        f"  its full log: {log}"
    )


def test_verbose_streams_everything(tmp_path, capsys):
    error, out = _run(tmp_path, capsys, verbose=True)
    assert error is None and "Executing task" in out.out and "Epoch 3/4" in out.out


def test_the_users_kfp_local_setup_is_left_alone(tmp_path, capsys):
    from kfp.local import config

    local.init(runner=local.SubprocessRunner(use_venv=True), pipeline_root=str(tmp_path / "mine"))
    mine = config.LocalExecutionConfig.instance
    try:
        _run(tmp_path, capsys)
        assert config.LocalExecutionConfig.instance is mine
        assert mine.runner.use_venv and mine.pipeline_root == str(tmp_path / "mine")
    finally:
        config.LocalExecutionConfig.instance = None


@pytest.mark.parametrize("live", [False])
def test_plain_view_prints_quarters_and_no_control_codes(tmp_path, live):
    screen = io.StringIO()
    with ProgressView(screen, live=live) as view, RunMonitor(tmp_path, {}, view) as monitor:
        monitor.write("Executing task 'etlop'\n")
        for done in range(1, 9):
            monitor.write(
                f'kfp-edge progress: {{"done": {done}, "total": 8, "label": "p{done}"}}\n'
            )
        monitor.write("Task 'etlop' finished with status SUCCESS\n")
    lines = screen.getvalue().splitlines()
    assert [t.split()[1] for t in lines[:-1]] == ["2/8", "4/8", "6/8", "8/8"]
    assert lines[-1].startswith("✓ etlop") and "\x1b" not in screen.getvalue()
