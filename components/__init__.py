"""kfp-edge: Kubeflow Pipelines components that take raw data to a verified edge model.

``import kfp_edge`` is fast: the kfp components are loaded on first use, and TensorFlow and
PySpark are imported only inside the functions that need them.
"""

import importlib

__version__ = "0.1.0"

# Public component name -> module that defines it. Loaded lazily (PEP 562). The one list of
# the library's components (the golden files and the stage-config test read it too).
COMPONENTS = {
    "RunContextOp": "kfp_edge.run_context.component",
    "SparkEtlOp": "kfp_edge.spark_etl.component",
    "TfjobTrainingOp": "kfp_edge.tfjob_training.component",
    "CompressionOp": "kfp_edge.compression.component",
    "EvaluationOp": "kfp_edge.evaluation.component",
    "GateOp": "kfp_edge.gate.component",
    "ModelStoreOp": "kfp_edge.model_store.component",
    "DriftMonitorOp": "kfp_edge.drift_monitor.component",
    "RetrainDataOp": "kfp_edge.drift_monitor.component",
    "ForestTrainingOp": "kfp_edge.forest_training.component",
    "ForestExportOp": "kfp_edge.forest_training.component",
}
_FUNCTIONS = {
    "run_local": "kfp_edge.app.run_local",
}

__all__ = ["__version__", "COMPONENTS", *COMPONENTS, *_FUNCTIONS]


def __getattr__(name: str):
    module = COMPONENTS.get(name) or _FUNCTIONS.get(name)
    if module is None:
        raise AttributeError(f"module 'kfp_edge' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__():
    return sorted(__all__)
