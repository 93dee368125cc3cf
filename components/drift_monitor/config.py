"""The drift monitor stage's parameters, one source for component, pipelines and CLI."""

from dataclasses import dataclass

from kfp_edge.stage_config import param


@dataclass(frozen=True)
class DriftConfig:
    """The drift monitor's parameters (see kfp_edge.stage_config)."""

    version: str = param("latest", "Watched model version, or latest.")
    delta: float = param(
        0.002, "ADWIN's confidence parameter (smaller: fewer false alarms, later detection)."
    )
    window: int = param(10, "Observations per window mean of the feature detectors.")
    bias_rate: float = param(
        0.0,
        "Bias rate of the reservoir (it holds at most 1/bias_rate rows); 0 keeps the saved "
        "reservoir's rate, or takes 0.001 for a new reservoir.",
    )
    label_column: str = param("", "Label column of the observations; empty for the model's.")
    reference_path: str = param(
        "", "Optional data like the training data, to prime fresh detectors."
    )
    model_in_loop: bool = param(True, "Run the model on labelled rows for the error indicator.")


@dataclass(frozen=True)
class RetrainDataConfig:
    """The retraining data step's parameters (see kfp_edge.stage_config)."""

    version: str = param("latest", "The watched model version (for the original data).")
    include_original: bool = param(
        False, "Append the original train, validation and test data of that version."
    )
    min_rows: int = param(30, "Fail when fewer labelled rows than this are available.")
