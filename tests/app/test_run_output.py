"""`kfp-edge run` as a user sees it: one real local run on Iris, its screen output and its report.

The report page is rendered in a real headless Chromium (DevTools protocol, tests/app/cdp.py):
the charts and tables must be drawn, the page must load nothing from the network, and a
screenshot is saved in the run directory. Outside CI the browser test skips when Chromium is
missing; in CI (``CI`` set, as ``.ci/run`` does) a missing Chromium fails it.
"""

import importlib.util
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

STEPS = (
    "run-context",
    "etl",
    "training-launcher",
    "forest-training",
    "forest-export",
    "compression",
    "evaluation",
    "gate",
    "publish",
)


def _cdp():
    spec = importlib.util.spec_from_file_location(
        "kfp_edge_tests_cdp", Path(__file__).with_name("cdp.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run(edge_cli_run):
    """`kfp-edge run --dataset iris --workers 2`, shared with tests/pipelines (conftest.py)."""
    done, run_dir, _ = edge_cli_run
    return done, run_dir


def test_run_prints_one_line_per_step_and_the_table_on_one_screen(run):
    done, directory = run
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    above_table = lines[: next(i for i, t in enumerate(lines) if t.startswith("variant"))]
    assert len(above_table) <= 40, done.stdout
    for step in STEPS:
        assert sum(bool(re.match(rf"✓ {step}\s+\d+\.\d s$", t)) for t in lines) == 1, step
    assert re.search(r"training-launcher\s+100/100 loss [\d.]+ accuracy [\d.]+", done.stdout)
    assert "compression        4/4 full_int8" in done.stdout
    # kfp.local's own output stays in the logs: no executor input, no warnings, no colours.
    for noise in ("executorInput", "Executing task", "UserWarning", "\x1b["):
        assert noise not in done.stdout + done.stderr, noise
    assert f"run report: {directory / 'report.html'}" in done.stdout
    assert "published: edge-model version 1 (" in done.stdout


def test_full_logs_go_to_the_run_directory(run):
    _, directory = run
    logs = directory / "logs"
    assert {p.stem for p in logs.glob("*.log")} == {*STEPS, "pipeline"}
    assert "Executing task 'sparketlop'" in (logs / "pipeline.log").read_text()
    assert "Epoch 100/100" in (logs / "training-launcher.log").read_text()


def test_report_command_prints_the_page_of_the_latest_run(run, capsys):
    from kfp_edge.app import cli

    _, directory = run
    assert cli.main(["report", "--workspace", str(directory.parents[1])]) == 0
    assert capsys.readouterr().out.strip() == str(directory / "report.html")


def test_report_page_draws_its_charts_and_tables_in_chromium(run):
    cdp = _cdp()
    executable = cdp.find_chromium()
    if executable is None:
        if cdp.in_ci():
            pytest.fail("chromium is missing in CI: .ci/run installs the Debian package chromium")
        pytest.skip("chromium not installed (apt-get install chromium): browser test skipped")
    _, directory = run
    page = directory / "report.html"
    with cdp.Browser(executable) as browser:
        browser.open(page)
        count = "document.querySelectorAll('{}').length".format
        assert browser.evaluate(count("#variants svg.scatter")) == 2
        # 1 reference + 4 variants + 1 random forest, as circles with a position on each chart
        assert browser.evaluate(count("#variants svg.scatter circle.point")) == 12
        box = browser.evaluate(
            "(() => { const r = document.querySelector('svg.scatter').getBoundingClientRect();"
            " return [r.width, r.height]; })()"
        )
        assert box[0] > 300 and box[1] > 200
        rows = browser.evaluate(
            "[...document.querySelectorAll('table.variants tr')].map(r => r.innerText)"
        )
        assert len(rows) == 7 and any("chosen" in r for r in rows)
        assert any("random_forest_10x4" in r for r in rows)
        assert browser.evaluate(count("#confusion table.matrix")) == 6
        assert browser.evaluate(count("#training svg.lines polyline.series")) >= 2
        assert browser.evaluate(count("#training table.trials tr")) == 3  # header + 2 trials
        assert "150" in browser.evaluate("document.querySelector('table.etl-counts').innerText")
        assert "Chosen:" in browser.evaluate("document.querySelector('#gate').innerText")
        assert browser.requested_urls() == [page.resolve().as_uri()]  # nothing from the network
        shot = browser.screenshot(directory / "report.png")
    assert shot.stat().st_size > 10_000
