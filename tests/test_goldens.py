"""Every golden file equals what the code generates now (one helper, one way to regenerate)."""

import pytest

from kfp_edge.app import golden

TARGETS = sorted(golden.golden_targets())


@pytest.mark.parametrize("name", TARGETS)
def test_generated_file_matches_its_golden_copy(name):
    diff = golden.check(name)
    assert not diff, diff


def test_a_changed_file_shows_a_readable_diff_and_how_to_regenerate(tmp_path, monkeypatch):
    name = "pipelines/golden/manifests/sparkapplication.yaml"
    copy = tmp_path / name
    copy.parent.mkdir(parents=True)
    copy.write_text((golden.ROOT / name).read_text().replace("instances: 3", "instances: 4"))
    monkeypatch.setattr(golden, "ROOT", tmp_path)
    diff = golden.check(name)
    assert "-    instances: 4" in diff and "+    instances: 3" in diff
    assert "make golden" in diff


def test_every_golden_file_has_a_target():
    on_disk = {p.relative_to(golden.ROOT).as_posix() for p in golden.GOLDEN_DIR.rglob("*.yaml")}
    assert on_disk == {t for t in TARGETS if t.startswith("pipelines/golden/")}


def test_component_readme_tables_are_generated_for_every_component():
    readmes = [t for t in TARGETS if t.endswith("README.md")]
    text = "".join((golden.ROOT / r).read_text() for r in readmes)
    for op in golden.COMPONENTS:
        assert f"<!-- generated: {op} (make golden) -->" in text, op
