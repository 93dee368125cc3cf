"""Every generated file kept as a golden copy, and the one way to regenerate them: ``make golden``.

Golden files live in ``pipelines/golden/``, and the component READMEs' generated tables beside
the components:

- the compiled pipelines (the edge pipeline for the default and each shipped resource profile,
  the retrain pipeline);
- each component compiled alone (``components/<Op>.yaml``);
- example manifests the launchers create on the cluster (TFJobs, a SparkApplication);
- the input and output tables of the component READMEs (:mod:`kfp_edge.app.readme_tables`).

:func:`check` renders one of them afresh and returns a unified diff against the golden copy (empty
when equal), ending with how to regenerate; the tests call it for every target. Everything is
rendered with the default image registry, whatever ``KFP_EDGE_IMAGE_REGISTRY`` says, so the
files do not depend on the environment of whoever regenerates them.
"""

from __future__ import annotations

import difflib
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import yaml

from kfp_edge import COMPONENTS

ROOT = Path(__file__).resolve().parents[1]
# The golden copies sit next to the pipelines they mostly are.
GOLDEN_DIR = ROOT / "pipelines" / "golden"  # where golden_targets() puts the YAML
REGENERATE = "make golden"
TFJOB_IMAGE = "ghcr.io/kfp-edge/kfp-edge-tensorflow:0.1.0"
SPARK_IMAGE = "ghcr.io/kfp-edge/kfp-edge-spark:0.1.0"


def _dump(manifest: dict) -> str:
    return yaml.safe_dump(manifest, sort_keys=True, default_flow_style=False)


def _compiled(pipeline: str, profile: str | None) -> Callable[[], str]:
    def render() -> str:
        from kfp_edge.pipelines.compile import compile_pipeline

        with tempfile.TemporaryDirectory() as tmp:
            return compile_pipeline(pipeline, Path(tmp) / "p.yaml", resources=profile).read_text()

    return render


def _component(module: str, name: str) -> Callable[[], str]:
    def render() -> str:
        import importlib

        from kfp import compiler

        component = getattr(importlib.import_module(module), name)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "c.yaml"
            compiler.Compiler().compile(component, str(path))
            return path.read_text()

    return render


class manifests:  # noqa: N801 - a namespace of example builders
    """Example manifests the launchers build, as the cluster would receive them."""

    @staticmethod
    def tfjob_cpu_2_workers() -> dict:
        """CPU only, workers=2: a chief and one worker (the pipeline's default shape)."""
        from kfp_edge.tfjob_training.tfjob_spec import build_tfjob, job_name, trainer_args

        name = job_name("run-2026-golden")
        args = trainer_args(
            "/workspace/runs/run-2026-golden/data", "/workspace/runs/run-2026-golden/training", name
        )
        cpu = {"cpu_request": "1", "cpu_limit": "2", "memory_request": "2Gi", "memory_limit": "4Gi"}
        replica = {"chief": cpu, "worker": cpu}
        return build_tfjob(
            name,
            args,
            namespace="kubeflow",
            image=TFJOB_IMAGE,
            workers=2,
            replica_resources=replica,
        )

    @staticmethod
    def tfjob_gpu_1_chief_3_workers() -> dict:
        """1 chief and 3 workers with one GPU each, a GPU node selector and a toleration."""
        from kfp_edge.tfjob_training.tfjob_spec import build_tfjob, job_name, trainer_args

        name = job_name("run-2026-gpu")
        args = trainer_args(
            "/workspace/runs/run-2026-gpu/data",
            "/workspace/runs/run-2026-gpu/training",
            name,
            model="cnn1d",
            epochs=50,
            batch_size=64,
            learning_rate=0.001,
            width=32,
            depth=3,
        )
        gpu = {
            "cpu_request": "4",
            "memory_request": "8Gi",
            "memory_limit": "12Gi",
            "gpu_count": 1,
            "node_selector": {"nvidia.com/gpu.present": "true"},
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
            ],
        }
        return build_tfjob(
            name,
            args,
            namespace="ml-team",
            image=TFJOB_IMAGE,
            workers=4,
            replica_resources={"chief": gpu, "worker": gpu},
            pvc_name="edge-ws",
            backoff_limit=5,
            active_deadline_seconds=7200,
            clean_pod_policy="All",
            ttl_seconds_after_finished=3600,
        )

    @staticmethod
    def sparkapplication() -> dict:
        """The SparkApplication of a sensor ETL with three executors and the S3 Secret."""
        from kfp_edge.spark_etl.sparkapp import application_name, build_spark_application

        return build_spark_application(
            name=application_name("Edge_2026.11.23-run"),
            namespace="kubeflow",
            image=SPARK_IMAGE,
            output_dir="/workspace/runs/edge-run/data",
            options={"dataset": "sensor", "seed": 42, "max_bad_fraction": 0.05},
            workspace_pvc="kfp-edge-workspace",
            driver_cores=1,
            driver_memory="2g",
            executor_cores=2,
            executor_memory="4g",
            executor_instances=3,
            s3_secret="mlpipeline-minio-artifact",
            s3_endpoint="http://minio-service.kubeflow:9000",
        )

    @staticmethod
    def katib_experiment() -> dict:
        """A random search over learning rate, width and model family, TFJob trials of 2."""
        from kfp_edge.tfjob_training.katib import build_experiment

        space = {
            "learning_rate": {"type": "double", "min": 0.005, "max": 0.08, "scale": "log"},
            "width": {"type": "int", "min": 32, "max": 128, "step": 32},
            "model": {"type": "categorical", "values": ["mlp", "cnn1d"]},
        }
        return build_experiment(
            "run-2026-search",
            space,
            "/workspace/runs/run-2026-search/data",
            "/workspace/runs/run-2026-search/search",
            namespace="ml-team",
            max_trials=12,
            parallel_trials=3,
            image=TFJOB_IMAGE,
            workers=2,
            epochs=30,
        )


def _manifest(build: Callable[[], dict], check_sdk: bool = False) -> Callable[[], str]:
    def render() -> str:
        manifest = build()
        if check_sdk:
            from kfp_edge.tfjob_training.tfjob_spec import check_against_sdk

            check_against_sdk(manifest)
        return _dump(manifest)

    return render


def golden_targets() -> dict[str, Callable[[], str]]:
    """Returns generated file (path relative to the repository) -> its renderer."""
    from kfp_edge import resources
    from kfp_edge.app.readme_tables import marked_readmes, render_readme

    golden = "pipelines/golden"
    targets: dict[str, Callable[[], str]] = {
        f"{golden}/edge_pipeline.yaml": _compiled("edge", None)
    }
    for profile in resources.SHIPPED_PROFILES:
        targets[f"{golden}/edge_pipeline.{profile}.yaml"] = _compiled("edge", profile)
    targets[f"{golden}/retrain_pipeline.yaml"] = _compiled("retrain", None)
    for name, module in COMPONENTS.items():
        targets[f"{golden}/components/{name}.yaml"] = _component(module, name)
    builds = {
        "tfjob_cpu_2_workers": (manifests.tfjob_cpu_2_workers, True),
        "tfjob_gpu_1_chief_3_workers": (manifests.tfjob_gpu_1_chief_3_workers, True),
        "sparkapplication": (manifests.sparkapplication, False),
        "katib_experiment": (manifests.katib_experiment, False),
    }
    for name, (build, check_sdk) in builds.items():
        targets[f"{golden}/manifests/{name}.yaml"] = _manifest(build, check_sdk)
    for readme in marked_readmes(ROOT):
        targets[readme.relative_to(ROOT).as_posix()] = lambda readme=readme: render_readme(
            readme, COMPONENTS
        )
    return targets


def render(name: str) -> str:
    """Renders one golden target afresh with the default image registry."""
    saved = os.environ.pop("KFP_EDGE_IMAGE_REGISTRY", None)
    try:
        return golden_targets()[name]()
    finally:
        if saved is not None:
            os.environ["KFP_EDGE_IMAGE_REGISTRY"] = saved


def check(name: str) -> str:
    """Returns a readable diff of a fresh rendering against the golden file, or "" if equal.

    Args:
        name: A key of :func:`golden_targets`.
    """
    path = ROOT / name
    fresh = render(name)
    if not path.exists():
        return f"{path}: no golden file; create it with `{REGENERATE}`"
    golden = path.read_text()
    if fresh == golden:
        return ""
    diff = difflib.unified_diff(
        golden.splitlines(keepends=True),
        fresh.splitlines(keepends=True),
        fromfile=f"committed/{name}",
        tofile=f"generated/{name}",
        n=2,
    )
    lines = list(diff)
    shown = "".join(lines[:80]) + (
        f"... ({len(lines) - 80} more diff lines)\n" if len(lines) > 80 else ""
    )
    return (
        f"{path} differs from what the code generates now:\n{shown}"
        f"If the change is intended, regenerate with `{REGENERATE}` and review the diff.\n"
    )


def regenerate(root: Path = ROOT) -> list[Path]:
    """Renders every golden target under ``root`` and returns the paths written."""
    written = []
    for name in golden_targets():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(name))
        written.append(path)
    return written


if __name__ == "__main__":
    for path in regenerate():
        print(f"wrote {path}")
    sys.exit(0)
