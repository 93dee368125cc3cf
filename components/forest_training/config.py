"""The forest training stage's parameters, one source for component, pipelines and CLI."""

from dataclasses import dataclass

from kfp_edge.stage_config import param


@dataclass(frozen=True)
class ForestConfig:
    """The random-forest family's parameters (see kfp_edge.stage_config)."""

    forest_configs: list = param(
        [],
        "Random forests to train with Spark MLlib, as '<trees>x<depth>' (e.g. 30x6); "
        "empty: no forest family.",
    )
    forest_max_bins: int = param(32, "MLlib maxBins: candidate thresholds per feature.")
    seed: int = param(42, "Seed of the bootstrap samples and feature subsets.")
    driver_memory: str = param("2g", "Heap of the local Spark session.")
