import subprocess
import sys

import pytest

from kfp_edge.app.cli import build_parser, main
from kfp_edge.app.params import parse_params
from kfp_edge.app.run_local import format_table, variant_table


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return set(out.split())


def test_import_kfp_edge_is_light():
    mods = _modules_after("import kfp_edge")
    assert not {"tensorflow", "pyspark", "kfp", "tf_keras"} & mods


def test_cli_parser_and_components_import_neither_tensorflow_nor_pyspark():
    mods = _modules_after(
        "import kfp_edge.app.cli as c; c.build_parser()\n"
        "from kfp_edge import SparkEtlOp, TfjobTrainingOp, CompressionOp, EvaluationOp\n"
        "from kfp_edge import GateOp, ModelStoreOp, DriftMonitorOp, RetrainDataOp"
    )
    assert "kfp" in mods
    assert not {"tensorflow", "pyspark", "tf_keras", "ai_edge_litert"} & mods


def test_parse_params_reads_yaml_values():
    assert parse_params(["epochs=3", "variants=[float32, full_int8]", "model_name=m", "x="]) == {
        "epochs": 3,
        "variants": ["float32", "full_int8"],
        "model_name": "m",
        "x": "",
    }
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_params(["epochs"])


def test_run_needs_label_with_input(capsys):
    assert main(["run", "--input", "data.csv"]) == 2
    assert "kfp-edge run: error: --input needs --label COLUMN" in capsys.readouterr().err


def test_subcommands_registered():
    text = build_parser().format_help()
    for command in ("run", "compile"):
        assert command in text


def test_variant_table_marks_published_and_gate_reasons():
    report = {
        "evaluation": {
            "variants": [
                {
                    "name": "a",
                    "size_bytes": 1000,
                    "gzip_bytes": 900,
                    "accuracy": 0.95,
                    "latency_us": {"p50": 10.0, "p95": 12.0, "p99": 20.0},
                },
                {
                    "name": "b",
                    "size_bytes": 500,
                    "gzip_bytes": 400,
                    "accuracy": 0.5,
                    "latency_us": {"p50": 8.0, "p95": 9.0, "p99": 9.5},
                },
            ]
        },
        "gate": {
            "chosen": "a",
            "results": {
                "a": {"passed": True, "reasons": []},
                "b": {"passed": False, "reasons": ["accuracy 0.5 < 0.9"]},
            },
        },
        "publish": {"variant": "a"},
    }
    rows = variant_table(report)
    assert [(r["variant"], r["published"], r["gate"]) for r in rows] == [
        ("a", True, "pass"),
        ("b", False, "accuracy 0.5 < 0.9"),
    ]
    text = format_table(rows)
    assert "1,000" in text and "accuracy 0.5 < 0.9" in text
