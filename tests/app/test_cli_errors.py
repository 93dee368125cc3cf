"""Errors that help: bad parameters, --version, --help, and the `report` command, without a run."""

import re

import pytest

from kfp_edge import __version__
from kfp_edge.app import cli
from kfp_edge.app.params import coerce_arguments, parse_params, unknown_name


def test_version_names_the_package_and_kfp(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"kfp-edge {__version__} (kfp 2.")


def test_mistyped_parameter_exits_2_with_the_nearest_name(capsys, tmp_path):
    status = cli.main(["run", "--workspace", str(tmp_path), "--param", "epoch=3"])
    err = capsys.readouterr().err
    assert status == 2
    assert (
        err.strip()
        == "kfp-edge run: error: unknown pipeline parameter 'epoch'; did you mean epochs?"
    )
    assert not (tmp_path / "runs").exists()  # refused before anything ran


def test_unknown_parameter_lists_the_valid_names(capsys, tmp_path):
    assert cli.main(["run", "--workspace", str(tmp_path), "--param", "nosuch=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown pipeline parameter 'nosuch'; valid names:" in err
    assert "max_latency_p95_us" in err and "Traceback" not in err


def test_wrong_type_and_malformed_pairs_exit_2(capsys, tmp_path):
    assert cli.main(["run", "--workspace", str(tmp_path), "--param", "epochs=[1, 2]"]) == 2
    assert "pipeline parameter epochs=[1, 2]: expected number integer" in capsys.readouterr().err
    assert cli.main(["run", "--workspace", str(tmp_path), "--param", "epochs"]) == 2
    assert "'epochs' is not NAME=VALUE" in capsys.readouterr().err


def test_names_are_suggested_by_similarity():
    valid = ["min_accuracy", "max_accuracy_drop", "max_size_bytes", "epochs"]
    assert unknown_name("min_acuracy", valid) == (
        "unknown pipeline parameter 'min_acuracy'; did you mean min_accuracy or max_accuracy_drop?"
    )
    with pytest.raises(ValueError, match="did you mean max_size_bytes"):
        coerce_arguments(parse_params(["max_size_byte=5"]), dict.fromkeys(valid, "STRING"))


def test_run_help_lists_choices_and_every_parameter(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    out = capsys.readouterr().out
    assert "{iris,sensor}" in out
    assert "pipeline parameters (--param NAME=VALUE), with their defaults:" in out
    assert re.search(r"epochs +100 +Training epochs\.", out)
    assert "run_id " not in out.split("pipeline parameters")[1]  # --run-id is the option


def test_submit_and_compile_help_list_choices(capsys):
    for command in ("submit", "compile"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        out = capsys.readouterr().out
        assert "{edge,retrain}" in out and "cpu-small, gpu-single, gpu-multi" in out
    # one parameter syntax: submit takes --param as run does, no positional NAME=VALUE
    with pytest.raises(SystemExit) as exit_:
        cli.main(["submit", "epochs=3"])
    assert exit_.value.code == 2


def test_report_of_an_unknown_run_names_the_nearest(tmp_path, capsys):
    from kfp_edge.workspace import update_report

    update_report(tmp_path / "runs" / "edge-20260101", "run", {"run_id": "edge-20260101"})
    assert cli.main(["report", "--workspace", str(tmp_path), "edge-2026010"]) == 2
    assert "unknown run 'edge-2026010'; did you mean edge-20260101?" in capsys.readouterr().err
    assert cli.main(["report", "--workspace", str(tmp_path / "empty")]) == 2
    assert "no runs yet" in capsys.readouterr().err
    # a run without a page yet gets one rendered from its report.json
    assert cli.main(["report", "--workspace", str(tmp_path)]) == 0
    assert (tmp_path / "runs" / "edge-20260101" / "report.html").is_file()
