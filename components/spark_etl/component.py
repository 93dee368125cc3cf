"""kfp component: the Spark ETL step (thin wrapper over :mod:`kfp_edge.spark_etl.etl`)."""

from typing import NamedTuple

from kfp import dsl

from kfp_edge.images import SPARK_IMAGE


@dsl.component(base_image=SPARK_IMAGE, install_kfp_package=False)
def SparkEtlOp(
    workspace: str,
    run_id: str,
    metrics: dsl.Output[dsl.Metrics],
    dataset: str = "iris",
    input_path: str = "",
    test_path: str = "",
    label_column: str = "",
    seed: int = 42,
    max_bad_fraction: float = 0.05,
    schema_path: str = "",
    delimiter: str = ",",
    window_seconds: float = -1.0,
    hop_seconds: float = 0.0,
    id_column: str = "",
    time_column: str = "",
    device_column: str = "",
    split_by: str = "auto",
    engine: str = "local",
    spark_image: str = "",
    executor_instances: int = 2,
    executor_cores: int = 1,
    executor_memory: str = "2g",
    driver_cores: int = 1,
    driver_memory: str = "2g",
    workspace_pvc: str = "kfp-edge-workspace",
    namespace: str = "",
    timeout_seconds: int = 3600,
    service_account: str = "spark-operator-spark",
    s3_secret: str = "",
    pod_settings: dict = {},  # noqa: B006 - kfp needs a literal default
    time_to_live_seconds: int = 86400,
) -> NamedTuple("Outputs", [("data_dir", str)]):
    """Cleans raw data into stratified TFRecord and Parquet splits on the workspace.

    Args:
        workspace: Root of the workspace volume (the PVC mount path in the cluster).
        run_id: The run id; the output goes to ``<workspace>/runs/<run_id>/data``.
        metrics: Rows and groups per split, quarantined rows per reason, approximate distinct
            counts, feature quantiles and rows per device.
        dataset: Bundled data when ``input_path`` is empty: ``iris`` or ``sensor``.
        input_path: CSV or Parquet file or directory, local or ``s3://bucket/prefix``
            (endpoint and credentials from the ``KFP_EDGE_S3_*`` environment variables).
        test_path: Labelled held-out rows (same columns and format, local or ``s3://``),
            cleaned like the input, as the whole test split; the input then gives train and
            validation.
        label_column: The label column of ``input_path``.
        seed: Seed of the deterministic stratified split.
        max_bad_fraction: Fail when more than this fraction of the rows is quarantined.
        schema_path: Declared schema file (YAML or JSON); empty to infer and write one.
        delimiter: CSV field delimiter.
        window_seconds: Tumbling window per device for time series; -1: the dataset's
            default (20 s for ``sensor``, off otherwise); 0: off.
        hop_seconds: Distance between sliding window starts; 0: tumbling windows
            (hop = window).
        id_column: Unique id column (duplicates quarantined); overrides the schema's, no file
            needed.
        time_column: Time column (windows, ``split_by=time``); UTC when a timestamp has no
            offset.
        device_column: Device or session column: windows per device, whole devices per split
            (``group``).
        split_by: ``row``, ``group`` (each device in one split) or ``time`` (per device, latest
            part is test); ``auto``: ``group`` with a device column, else ``row``.
        engine: ``local`` (Spark local[*] in this pod) or ``spark-operator`` (submit a
            SparkApplication and wait for it).
        spark_image: Image of the SparkApplication; empty for the kfp-edge Spark image.
        executor_instances: SparkApplication executors.
        executor_cores: Cores per executor.
        executor_memory: Memory per executor (Spark notation, e.g. ``2g``).
        driver_cores: Driver cores.
        driver_memory: Driver memory (also the local session's heap).
        workspace_pvc: Workspace PVC mounted in the driver and executors.
        namespace: Namespace of the SparkApplication; empty for the pipeline's own.
        timeout_seconds: How long to wait for the SparkApplication.
        service_account: Service account of the Spark driver (it creates the executors).
        s3_secret: Secret (keys accesskey, secretkey) given to the Spark driver for s3://
            input; empty for none.
        pod_settings: Placement of the Spark pods: node_selector, tolerations, affinity,
            labels and image_pull_secrets (the etl step of the resource profile).
        time_to_live_seconds: The operator deletes the finished SparkApplication after this.

    Returns:
        data_dir: The ETL output directory (manifest.json, shards, Parquet splits).
    """
    from collections import namedtuple

    from kfp_edge.spark_etl.etl import run_etl
    from kfp_edge.spark_etl.sparkapp import run_on_operator
    from kfp_edge.workspace import DATA_DIR, run_dir, update_report

    directory = run_dir(workspace, run_id)
    data_dir = directory / DATA_DIR
    options = {
        "dataset": dataset,
        "input_path": input_path,
        "test_path": test_path,
        "label_column": label_column,
        "seed": seed,
        "max_bad_fraction": max_bad_fraction,
        "schema_path": schema_path,
        "delimiter": delimiter,
        "window_seconds": None if window_seconds < 0 else window_seconds,
        "hop_seconds": hop_seconds,
        "id_column": id_column,
        "time_column": time_column,
        "device_column": device_column,
        "split_by": split_by,
    }
    if engine == "local":
        summary = run_etl(str(data_dir), driver_memory=driver_memory, **options)
    elif engine == "spark-operator":
        summary = run_on_operator(
            str(data_dir),
            options,
            run_id=run_id,
            image=spark_image,
            namespace=namespace,
            workspace_pvc=workspace_pvc,
            workspace_mount=workspace,
            executor_instances=executor_instances,
            executor_cores=executor_cores,
            executor_memory=executor_memory,
            driver_cores=driver_cores,
            driver_memory=driver_memory,
            timeout_seconds=timeout_seconds,
            service_account=service_account,
            s3_secret=s3_secret,
            pod_settings=pod_settings,
            time_to_live_seconds=time_to_live_seconds,
        )
    else:
        raise ValueError(f"engine must be 'local' or 'spark-operator', got {engine!r}")
    update_report(directory, "etl", summary)
    metrics.log_metric("rows_in", summary["rows_in"])
    metrics.log_metric("rows_good", summary["rows_good"])
    metrics.log_metric("rows_bad", summary["rows_bad"])
    for reason, count in summary["bad_by_reason"].items():
        metrics.log_metric(f"bad_{reason}", count)
    for split, count in summary["rows_per_split"].items():
        metrics.log_metric(f"rows_{split}", count)
    for column, count in summary["approx_distinct"].items():
        metrics.log_metric(f"distinct_{column}", count)
    for column, figures in summary["feature_profile"].items():
        for q, value in figures["approx_quantiles"].items():
            metrics.log_metric(f"quantile_{column}_p{round(float(q) * 100):02d}", value)
    for split, count in summary["groups_per_split"].items():
        metrics.log_metric(f"groups_{split}", count)
    if "devices" in summary:
        metrics.log_metric("devices", summary["devices"])
        for device, count in list(summary["rows_per_device"].items())[:100]:  # the largest
            metrics.log_metric(f"rows_device_{device}", count)
    metrics.log_metric("num_features", summary["num_features"])
    metrics.log_metric("num_classes", summary["num_classes"])
    outputs = namedtuple("Outputs", ["data_dir"])
    return outputs(str(data_dir))
