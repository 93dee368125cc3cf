"""Compile kfp-edge pipelines to kfp v2 IR YAML (no TensorFlow, no PySpark needed)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from kfp_edge import resources as _resources

PIPELINES = ("edge", "retrain")


def build_pipeline(name: str, profile: dict):
    """Returns the pipeline function ``name`` built with a resource profile."""
    if name == "edge":
        from kfp_edge.pipelines.edge_pipeline import build_edge_pipeline

        return build_edge_pipeline(profile)
    if name == "retrain":
        from kfp_edge.pipelines.retrain_pipeline import build_retrain_pipeline

        return build_retrain_pipeline(profile)
    raise ValueError(f"unknown pipeline {name!r}; expected one of {', '.join(PIPELINES)}")


def compile_pipeline(name: str, output: str | os.PathLike, resources: str | None = None) -> Path:
    """Compiles a pipeline to YAML, written atomically to ``output``.

    Args:
        name: ``edge`` or ``retrain``.
        output: Path of the YAML file to write.
        resources: A shipped profile name or a profile YAML path; the default profile if None.

    Returns:
        The path written.
    """
    from kfp import compiler

    profile = _resources.load_profile(resources)
    pipeline = build_pipeline(name, profile)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".yaml", dir=output.parent)
    os.close(fd)
    try:
        compiler.Compiler().compile(pipeline, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, output)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return output
