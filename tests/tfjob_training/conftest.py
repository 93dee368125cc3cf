"""Fixtures of the tfjob_training tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"tfjob_training_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def fake_k8s():
    """The module of the FAKE Kubernetes API server (no cluster on this machine)."""
    return _load("fake_k8s")
