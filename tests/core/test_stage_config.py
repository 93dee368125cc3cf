"""One source for each stage's parameters: component literals, pipeline and CLI defaults agree.

kfp ships a lightweight component's function source alone, so its signature must keep literal
defaults; these tests hold them equal to the stage config, and hold the pipelines' defaults
(which are read from the configs) equal too.
"""

import dataclasses
import importlib
import inspect

import pytest

from kfp_edge import stage_config
from kfp_edge.app.golden import COMPONENTS
from kfp_edge.compression.config import CompressionConfig
from kfp_edge.drift_monitor.config import DriftConfig, RetrainDataConfig
from kfp_edge.evaluation.config import EvaluationConfig
from kfp_edge.forest_training.config import ForestConfig
from kfp_edge.gate.config import GateConfig
from kfp_edge.model_store.config import PublishConfig
from kfp_edge.spark_etl.config import EtlConfig
from kfp_edge.tfjob_training.config import TrainingConfig

CONFIG_OF = {
    "RunContextOp": None,  # workspace, run id, job id and the parameters to record: no tunables
    "SparkEtlOp": EtlConfig,
    "TfjobTrainingOp": TrainingConfig,
    "CompressionOp": CompressionConfig,
    "EvaluationOp": EvaluationConfig,
    "GateOp": GateConfig,
    "ModelStoreOp": PublishConfig,
    "DriftMonitorOp": DriftConfig,
    "RetrainDataOp": RetrainDataConfig,
    "ForestTrainingOp": ForestConfig,
    "ForestExportOp": None,  # wiring only: the forests and the data to check them on
}
# Parameters of a component that are wiring, not tunables, and so have no config entry.
WIRING = {"workspace", "run_id", "model_name", "parameters", "job_id"}


def _function(op: str):
    return getattr(importlib.import_module(COMPONENTS[op]), op).python_func


def test_every_component_has_a_config():
    assert set(CONFIG_OF) == set(COMPONENTS)


@pytest.mark.parametrize("op", sorted(op for op, c in CONFIG_OF.items() if c))
def test_component_literal_defaults_equal_the_stage_config(op):
    assert stage_config.mismatched_defaults(_function(op), CONFIG_OF[op]) == []


@pytest.mark.parametrize("op", sorted(op for op, c in CONFIG_OF.items() if c))
def test_every_tunable_of_a_component_is_in_its_config(op):
    names = {f.name for f in dataclasses.fields(CONFIG_OF[op])}
    defaulted = {
        name
        for name, p in inspect.signature(_function(op)).parameters.items()
        if p.default is not inspect.Parameter.empty and name not in WIRING
    }
    assert defaulted <= names, f"{op}: not in its config: {sorted(defaulted - names)}"
    assert all(stage_config.docs(CONFIG_OF[op]).values()), "every parameter has a one-line doc"


def _pipeline_defaults(pipeline) -> dict:
    signature = inspect.signature(pipeline.pipeline_func)
    return {n: p.default for n, p in signature.parameters.items() if p.default is not p.empty}


# pipeline parameter -> (config, field) where the names differ
# Pipeline parameters resolved at compile time where the stage config says "empty: default".
RENAMED = {"training_engine": None, "spark_image": None}


@pytest.mark.parametrize("name", ["edge", "retrain"])
def test_pipeline_defaults_equal_the_stage_configs(name):
    from kfp_edge.pipelines.edge_pipeline import build_edge_pipeline
    from kfp_edge.pipelines.retrain_pipeline import build_retrain_pipeline

    pipeline = {"edge": build_edge_pipeline, "retrain": build_retrain_pipeline}[name]()
    configs = [EtlConfig, TrainingConfig, CompressionConfig, GateConfig, PublishConfig]
    if name == "retrain":
        configs = [DriftConfig, RetrainDataConfig, *configs]
    checked = 0
    for param, default in _pipeline_defaults(pipeline).items():
        for config in configs:
            if param in stage_config.defaults(config) and param not in RENAMED:
                assert default == stage_config.defaults(config)[param], (param, config.__name__)
                checked += 1
                break
    assert checked >= 15


def test_a_mismatched_literal_is_reported():
    def op(workspace: str, learning_rate: float = 0.5, epochs: int = 100):
        pass

    problems = stage_config.mismatched_defaults(op, TrainingConfig)
    assert problems == ["learning_rate: signature says 0.5, config says 0.04"]


def test_list_defaults_are_not_shared_between_instances():
    first, second = CompressionConfig(), CompressionConfig()
    assert first.variants == second.variants and first.variants is not second.variants
