"""The drift monitor stage's parameters, one source for component, pipelines and CLI."""

from dataclasses import dataclass

from kfp_edge.stage_config import param


@dataclass(frozen=True)
class DriftConfig:
    """The drift monitor's parameters (see kfp_edge.stage_config)."""

    version: str = param("latest", "Watched model version, or latest.")
    delta: float = param(
        0.002, "Family-wise ADWIN confidence, split evenly over all detectors (Bonferroni)."
    )
    window: int = param(200, "Observations per window of the windowed detectors.")
    bias_rate: float = param(
        0.0,
        "Bias rate of the reservoir (it holds at most 1/bias_rate rows); 0 keeps the saved "
        "reservoir's rate, or takes 0.001 for a new reservoir.",
    )
    label_column: str = param("", "Label column of the observations; empty for the model's.")
    id_column: str = param("", "Row id column for late labels; empty for the model's, if any.")
    reference_path: str = param(
        "", "Optional data like the training data, to prime fresh detectors."
    )
    model_in_loop: bool = param(
        True, "Run the model on every row: predicted classes, confidence and errors."
    )


@dataclass(frozen=True)
class RetrainDataConfig:
    """The retraining data step's parameters (see kfp_edge.stage_config)."""

    version: str = param("latest", "The watched model version (for the original data).")
    include_original: bool = param(
        False, "Add the original training data of that version (capped by original_share)."
    )
    original_share: float = param(
        0.5, "At most this share of the training rows comes from the original data."
    )
    test_fraction: float = param(
        0.2, "Share of the newest labelled rows held out as the recent test split."
    )
    min_rows: int = param(30, "Fail when fewer labelled rows than this are available.")
