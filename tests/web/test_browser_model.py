"""The browser-ready copy (batch pinned to 1), the LiteRT.js check and the serve-web server.

Real variants of a real compression run, the real LiteRT interpreter, and the server on
127.0.0.1 read with urllib; no browser needed here.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np
import pytest

from kfp_edge.app.cli import main
from kfp_edge.app.serve_web import CROSS_ORIGIN_HEADERS, WebServer, check_web_dir
from kfp_edge.browser_model import browser_check, make_browser_ready
from kfp_edge.dataset import load_split
from kfp_edge.litert import TFLiteModel


def _signatures(path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    details = interpreter.get_input_details() + interpreter.get_output_details()
    return [d["shape_signature"].tolist() for d in details]


@pytest.mark.parametrize("name", ["float32", "full_int8"])
def test_copy_pins_the_batch_and_changes_nothing_else(
    browser_variants, iris_data_dir, tmp_path, name
):
    variants_dir, _ = browser_variants
    src = variants_dir / f"{name}.tflite"
    assert _signatures(src) == [[-1, 4], [-1, 3]]
    result = make_browser_ready(src, tmp_path / "model.browser.tflite")
    dst = tmp_path / "model.browser.tflite"
    assert _signatures(dst) == [[1, 4], [1, 3]]
    assert result["browser_ready"] and result["static_shapes"] and result["pinned_tensors"] >= 2
    a, b = np.frombuffer(src.read_bytes(), np.uint8), np.frombuffer(dst.read_bytes(), np.uint8)
    assert a.shape == b.shape  # same layout: only int32 dimensions -1 -> 1 were rewritten
    changed = np.flatnonzero(a != b)
    assert len(changed) <= 4 * result["pinned_tensors"]
    x, _ = load_split(iris_data_dir, "test")
    np.testing.assert_array_equal(
        TFLiteModel(dst).predict(x, batch_size=1), TFLiteModel(src).predict(x, batch_size=1)
    )


def test_int8_io_is_refused_with_reasons_and_nothing_written(int8_io_model, tmp_path):
    check = browser_check(int8_io_model)
    assert check["browser_ready"] is False
    assert check["input_dtypes"] == ["INT8"] and check["output_dtypes"] == ["INT8"]
    assert check["reasons"][0] == "input 0 is INT8; LiteRT.js takes only FLOAT32, INT32, UINT8"
    with pytest.raises(ValueError, match=r"full_int8\.tflite: cannot run in LiteRT\.js: input 0"):
        make_browser_ready(int8_io_model, tmp_path / "out.tflite")
    assert list(tmp_path.iterdir()) == []


def test_not_a_tflite_file_is_named(tmp_path):
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ValueError, match=r"model\.tflite: not a \.tflite flatbuffer"):
        browser_check(bad)
    with pytest.raises(ValueError, match="may not overwrite its source"):
        make_browser_ready(bad, bad)


def _get(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.headers, response.read()


def test_server_sends_wasm_type_isolation_headers_and_the_models(
    browser_variants, int8_io_model, tmp_path
):
    variants_dir, _ = browser_variants
    release = tmp_path / "release"
    release.mkdir()
    (release / "model.tflite").write_bytes((variants_dir / "float32.tflite").read_bytes())
    (release / "int8_io.tflite").write_bytes(int8_io_model.read_bytes())
    before = sorted(p.name for p in release.iterdir())
    with WebServer(release, quiet=True) as server:
        headers, _ = _get(server.url + "node_modules/@litertjs/core/wasm/litert_wasm_internal.wasm")
        assert headers["Content-Type"] == "application/wasm"
        for key, value in CROSS_ORIGIN_HEADERS.items():
            assert headers[key] == value
        _, body = _get(server.url + "models/index.json")
        index = {m["name"]: m for m in json.loads(body)}
        assert index["int8_io"]["browser_ready"] is False and "url" not in index["int8_io"]
        assert "browser_file" not in index["model"]  # no local paths for the page
        _, model = _get(server.url + index["model"]["url"].lstrip("/"))
        assert _signatures_of_bytes(model, tmp_path) == [[1, 4], [1, 3]]
        with pytest.raises(urllib.error.HTTPError) as err:
            _get(server.url + "models/../../etc/passwd")
        assert err.value.code == 404
    # MODEL_DIR is only read: the pinned copy went to a temporary directory.
    assert sorted(p.name for p in release.iterdir()) == before


def _signatures_of_bytes(data, tmp_path):
    path = tmp_path / "served.tflite"
    path.write_bytes(data)
    return _signatures(path)


def test_cli_errors_exit_2_with_the_path(browser_variants, tmp_path, capsys):
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = str(taken.getsockname()[1])
    model = str(browser_variants[0] / "float32.tflite")
    assert main(["serve-web", model, "--port", port]) == 2
    assert f"127.0.0.1:{port}: cannot listen" in capsys.readouterr().err
    taken.close()
    assert main(["serve-web", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: no such model directory or file" in capsys.readouterr().err
    assert main(["serve-web", "--workspace", str(tmp_path)]) == 2
    assert "no published models" in capsys.readouterr().err
    (tmp_path / "index.html").write_text("<html></html>")
    with pytest.raises(FileNotFoundError, match="LiteRT.js is not installed; run `npm ci`"):
        check_web_dir(tmp_path)
