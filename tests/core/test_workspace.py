import json
import os

import pytest

from kfp_edge.workspace import read_report, run_dir, update_report, write_json_atomic


@pytest.mark.parametrize("bad", ["", "..", ".", "../x", "a/b", "/abs", "a\nb", "x\n", "-x"])
def test_run_dir_rejects_ids_that_escape_or_are_empty(tmp_path, bad):
    with pytest.raises(ValueError, match="invalid run id"):
        run_dir(tmp_path, bad)


def test_run_dir_layout(tmp_path):
    assert run_dir(tmp_path, "edge-1") == tmp_path / "runs" / "edge-1"


def test_update_report_keeps_other_sections(tmp_path):
    update_report(tmp_path, "etl", {"rows": 3})
    update_report(tmp_path, "training", {"epochs": 2})
    update_report(tmp_path, "etl", {"rows": 4})
    assert read_report(tmp_path) == {"etl": {"rows": 4}, "training": {"epochs": 2}}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temp files left


def test_write_json_atomic_leaves_old_file_when_serialisation_fails(tmp_path):
    path = tmp_path / "x.json"
    write_json_atomic(path, {"a": 1})

    class Unserialisable:
        def __str__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_json_atomic(path, {"a": Unserialisable()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(os.listdir(tmp_path)) == ["x.json"]
