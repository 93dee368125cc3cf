"""Fixtures of the browser tests: real variants of the Iris model, and a real headless Chromium.

The browser tests need the system Chromium and the web client's npm packages (``.ci/run``
installs both). Without them they are skipped locally and fail in CI (``CI=true``).
"""

from __future__ import annotations

import os

import pytest

from kfp_edge.app.browser_run import browser_missing

# The variants of a real run whose conversions differ (float, half, dynamic-range and
# full-integer weights); full_int8 keeps float input and output (the default).
BROWSER_VARIANTS = ["float32", "float16", "dynamic_int8", "full_int8"]


@pytest.fixture(scope="session")
def browser_available():
    """Skips (or fails in CI) when Chromium, node or the npm packages are missing."""
    reason = browser_missing()
    if reason and os.environ.get("CI") == "true":
        pytest.fail(f"browser tests cannot run in CI: {reason}")
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def browser_variants(iris_saved_model, iris_data_dir, tmp_path_factory):
    """The variants directory of a real compression run: ``(dir, entries)``."""
    from kfp_edge.compression.export import export_variants

    out = tmp_path_factory.mktemp("browser_variants")
    entries = export_variants(iris_saved_model, iris_data_dir, out, BROWSER_VARIANTS)
    return out, entries


@pytest.fixture(scope="session")
def int8_io_model(iris_saved_model, iris_data_dir, tmp_path_factory):
    """A full-integer variant with int8 input and output, which LiteRT.js cannot load."""
    from kfp_edge.compression.export import export_variants

    out = tmp_path_factory.mktemp("int8_io")
    export_variants(iris_saved_model, iris_data_dir, out, ["full_int8"], int8_io=True)
    return out / "full_int8.tflite"
