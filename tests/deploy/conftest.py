"""Fixtures of the deployment tests: rendered kustomize overlays."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
KUSTOMIZATIONS = ("base", "overlays/local", "overlays/production")
TEST_CREDENTIALS = {"accesskey": "render-test-user", "secretkey": "render-test-password"}
# The other env files of the base (root user and read-only device keys): throwaway values too.
OTHER_TEST_ENV_FILES = {
    "minio-root.env": {"rootuser": "render-test-root", "rootpassword": "render-test-root-pw"},
    "minio-device.env": {"accesskey": "render-test-device", "secretkey": "render-test-device-pw"},
}


@pytest.fixture(scope="session")
def manifests_copy(tmp_path_factory) -> Path:
    """A copy of manifests/ with a throwaway credentials file (the real one is never touched)."""
    root = tmp_path_factory.mktemp("manifests") / "manifests"
    ignored = ("minio-credentials.env", *OTHER_TEST_ENV_FILES)
    shutil.copytree(MANIFESTS, root, ignore=shutil.ignore_patterns(*ignored))
    env = "".join(f"{k}={v}\n" for k, v in TEST_CREDENTIALS.items())
    (root / "base" / "minio-credentials.env").write_text(env, encoding="utf-8")
    for name, values in OTHER_TEST_ENV_FILES.items():
        text = "".join(f"{k}={v}\n" for k, v in values.items())
        (root / "base" / name).write_text(text, encoding="utf-8")
    return root


def render_kubectl(directory: Path) -> list[dict]:
    """Renders a kustomization with ``kubectl kustomize``."""
    out = subprocess.run(
        ["kubectl", "kustomize", str(directory)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def _load_lite():
    spec = importlib.util.spec_from_file_location(
        "kfp_edge_tests_kustomize_lite", Path(__file__).with_name("kustomize_lite.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def render_lite(directory: Path) -> list[dict]:
    """Renders a kustomization with the tests' own small renderer."""
    return _load_lite().render(directory)


@pytest.fixture(scope="session")
def rendered(manifests_copy) -> dict:
    """Every kustomization rendered: kubectl when installed, the small renderer otherwise."""
    render = render_kubectl if shutil.which("kubectl") else render_lite
    return {name: render(manifests_copy / name) for name in KUSTOMIZATIONS}


@pytest.fixture(scope="session")
def renderers():
    """The two renderers by name; "kubectl" only when kubectl is installed."""
    found = {"lite": render_lite}
    if shutil.which("kubectl"):
        found["kubectl"] = render_kubectl
    return found


@pytest.fixture
def isolated_kfp_context(tmp_path, monkeypatch):
    """kfp.Client reads ~/.config/kfp/context.json; keep the user's own out of these tests."""
    import kfp

    from kfp_edge.app import submit

    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    for name in (submit.TOKEN_ENV, submit.UI_ENDPOINT_ENV, "KF_PIPELINES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(submit.SA_TOKEN_PATH_ENV, str(tmp_path / "no-sa-token"))
