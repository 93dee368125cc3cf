"""Regenerate the compiled-pipeline golden files: ``make golden``.

The goldens are compiled with the default image registry, whatever KFP_EDGE_IMAGE_REGISTRY says,
so that they do not depend on the environment of whoever regenerates them.
"""

from __future__ import annotations

import sys
from pathlib import Path

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"


def golden_targets() -> dict[str, tuple[str, str | None]]:
    """Returns golden file name -> (pipeline name, resource profile)."""
    from kfp_edge import resources

    targets = {"edge_pipeline.yaml": ("edge", None)}
    for profile in resources.SHIPPED_PROFILES:
        targets[f"edge_pipeline.{profile}.yaml"] = ("edge", profile)
    targets["retrain_pipeline.yaml"] = ("retrain", None)
    return targets


def regenerate(directory: Path = GOLDEN_DIR) -> list[Path]:
    """Compiles every golden target into ``directory`` and returns the paths written."""
    import os

    os.environ.pop("KFP_EDGE_IMAGE_REGISTRY", None)
    from kfp_edge.pipelines.compile import compile_pipeline

    return [
        compile_pipeline(pipeline, directory / name, resources=profile)
        for name, (pipeline, profile) in golden_targets().items()
    ]


if __name__ == "__main__":
    for path in regenerate():
        print(f"wrote {path}")
    sys.exit(0)
