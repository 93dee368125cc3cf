"""kfp components: the random-forest family, fitted with Spark MLlib, compiled to TFLite."""

from typing import NamedTuple

from kfp import dsl

from kfp_edge.images import SPARK_IMAGE, TENSORFLOW_IMAGE


@dsl.component(base_image=SPARK_IMAGE, install_kfp_package=False)
def ForestTrainingOp(
    workspace: str,
    run_id: str,
    data_dir: str,
    metrics: dsl.Output[dsl.Metrics],
    forest_configs: list = [],  # noqa: B006 - kfp needs a literal default
    forest_max_bins: int = 32,
    seed: int = 42,
    driver_memory: str = "2g",
) -> NamedTuple("Outputs", [("forests_dir", str), ("candidates", int)]):
    """Fits random forests concurrently in one Spark session on the ETL's Parquet splits.

    Args:
        workspace: Root of the workspace volume (the PVC mount path in the cluster).
        run_id: The run id; forests go to <workspace>/runs/<run_id>/forests/.
        data_dir: The ETL's output directory (Parquet splits and manifest).
        metrics: Per forest: Spark validation accuracy and training seconds.
        forest_configs: Random forests as '<trees>x<depth>' strings; empty fits none.
        forest_max_bins: MLlib maxBins: candidate thresholds per feature.
        seed: Seed of the bootstrap samples and feature subsets.
        driver_memory: Heap of the local Spark session.

    Returns:
        forests_dir: The saved forests (arrays and MLlib's test probabilities).
        candidates: How many forests were fitted.
    """
    from collections import namedtuple

    from kfp_edge.forest_training.candidates import FORESTS_DIR, fit_forests
    from kfp_edge.workspace import run_dir, update_report

    directory = run_dir(workspace, run_id)
    summaries = fit_forests(
        data_dir,
        directory / FORESTS_DIR,
        list(forest_configs),
        seed=seed,
        max_bins=forest_max_bins,
        driver_memory=driver_memory,
    )
    for summary in summaries:
        for key in ("spark_validation_accuracy", "train_seconds"):
            metrics.log_metric(f"{summary['name']}_{key}", float(summary[key]))
    update_report(directory, "forest_training", {"forests": summaries})
    outputs = namedtuple("Outputs", ["forests_dir", "candidates"])
    return outputs(str(directory / FORESTS_DIR), len(summaries))


@dsl.component(base_image=TENSORFLOW_IMAGE, install_kfp_package=False)
def ForestExportOp(
    workspace: str,
    run_id: str,
    forests_dir: str,
    data_dir: str,
) -> NamedTuple("Outputs", [("variants_dir", str), ("candidates", int)]):
    """Compiles the fitted forests to TFLite and adds them to the run's variants.

    Args:
        workspace: Root of the workspace volume (the PVC mount path in the cluster).
        run_id: The run id; candidates go to <workspace>/runs/<run_id>/variants/.
        forests_dir: ForestTrainingOp's output.
        data_dir: The ETL's output directory (the test split of the check against MLlib).

    Returns:
        variants_dir: The run's variants directory (shared with the compression step).
        candidates: How many forests were added.
    """
    from collections import namedtuple
    from pathlib import Path

    from kfp_edge.forest_training.candidates import export_forest_candidates
    from kfp_edge.workspace import VARIANTS_DIR, run_dir, update_report

    directory = run_dir(workspace, run_id)
    entries = []
    if Path(forests_dir).is_dir():
        entries = export_forest_candidates(forests_dir, data_dir, directory / VARIANTS_DIR)
    if entries:
        update_report(directory, "forest_export", {"candidates": entries})
    outputs = namedtuple("Outputs", ["variants_dir", "candidates"])
    return outputs(str(directory / VARIANTS_DIR), len(entries))
