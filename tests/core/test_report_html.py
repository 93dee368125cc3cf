"""The run report page drawn from whatever report.json holds (the browser test draws a real one)."""

from kfp_edge.report_html import render_report, write_run_report
from kfp_edge.workspace import update_report


def test_an_empty_report_is_a_page_without_sections():
    page = render_report({})
    assert page.startswith("<!DOCTYPE html>") and "<section" not in page


def test_missing_fields_show_as_na_and_names_are_escaped():
    evaluation = {
        "classes": ["a", "b"],
        "variants": [
            {"name": "<script>x</script>", "size_bytes": 10, "accuracy": 0.5},
            {"name": "v2", "size_bytes": 20, "accuracy": 0.7, "confusion_matrix": [[1, 0], [0, 1]]},
        ],
    }
    page = render_report({"evaluation": evaluation, "gate": {"chosen": None, "results": {}}})
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "n/a" in page  # no latency measured
    assert "No variant met the service levels." in page
    assert page.count('class="matrix"') == 1  # only v2 has a confusion matrix
    assert page.count('class="point"') == 4  # two points on each of the two charts


def test_training_curves_and_etl_quarantine():
    history = [{"epoch": e, "loss": 1 / e, "accuracy": e / 10} for e in range(1, 6)]
    report = {
        "training": {"history": history, "epochs": 5},
        "etl": {"rows_in": 12, "rows_good": 10, "rows_bad": 2, "bad_by_reason": {"non_finite": 2}},
    }
    page = render_report(report)
    assert page.count('class="series"') == 2  # loss and accuracy
    assert "non finite</td><td>2</td>" in page


def test_write_run_report_writes_the_page_next_to_report_json(tmp_path):
    update_report(tmp_path, "run", {"run_id": "r1"})
    path = write_run_report(tmp_path)
    assert path == tmp_path / "report.html"
    assert "kfp-edge run r1" in path.read_text()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
