"""The stages' parameter defaults as the pipelines read them: one instance of each stage config."""

from kfp_edge.compression.config import CompressionConfig
from kfp_edge.drift_monitor.config import DriftConfig, RetrainDataConfig
from kfp_edge.forest_training.config import ForestConfig
from kfp_edge.gate.config import GateConfig
from kfp_edge.model_store.config import PublishConfig
from kfp_edge.spark_etl.config import EtlConfig
from kfp_edge.tfjob_training.config import TrainingConfig

# The stages' parameter defaults: one source (each stage's config), read here.
ETL = EtlConfig()
TRAINING = TrainingConfig()
COMPRESSION = CompressionConfig()
GATE = GateConfig()
PUBLISH = PublishConfig()
DRIFT = DriftConfig()
RETRAIN_DATA = RetrainDataConfig()
FOREST = ForestConfig()
