"""The kfp-edge pipelines (``kfp_edge.pipelines``) and their compiled golden files.

``from kfp_edge.pipelines import edge_pipeline`` gives the edge pipeline with the default
resource profile; :func:`build_edge_pipeline` builds it for another profile.
"""

import importlib

_PIPELINES = {
    "edge_pipeline": "kfp_edge.pipelines.edge_pipeline",
    "build_edge_pipeline": "kfp_edge.pipelines.edge_pipeline",
    "retrain_pipeline": "kfp_edge.pipelines.retrain_pipeline",
    "build_retrain_pipeline": "kfp_edge.pipelines.retrain_pipeline",
}


def __getattr__(name: str):
    module = _PIPELINES.get(name)
    if module is None:
        raise AttributeError(f"module 'kfp_edge.pipelines' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
