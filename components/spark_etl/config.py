"""The Spark ETL's parameters, one source for component, pipelines and CLI."""

from dataclasses import dataclass

from kfp_edge.stage_config import param


@dataclass(frozen=True)
class EtlConfig:
    """The Spark ETL's parameters (see kfp_edge.stage_config)."""

    dataset: str = param(
        "iris", "Bundled data when ``input_path`` is empty: ``iris`` or ``sensor``."
    )
    input_path: str = param(
        "",
        "CSV or Parquet file or directory, local or ``s3://bucket/prefix`` (endpoint and "
        "credentials from the ``KFP_EDGE_S3_*`` environment variables).",
    )
    test_path: str = param(
        "",
        "Labelled held-out rows (same columns and format, local or ``s3://``), cleaned like "
        "the input, as the whole test split; the input then gives train and validation.",
    )
    label_column: str = param("", "The label column of ``input_path``.")
    seed: int = param(42, "Seed of the deterministic stratified split.")
    max_bad_fraction: float = param(
        0.05, "Fail when more than this fraction of the rows is quarantined."
    )
    schema_path: str = param(
        "", "Declared schema file (YAML or JSON); empty to infer and write one."
    )
    delimiter: str = param(",", "CSV field delimiter.")
    window_seconds: float = param(
        -1.0,
        "Tumbling window per device for time series; -1: the dataset's default (20 s for "
        "``sensor``, off otherwise); 0: off.",
    )
    hop_seconds: float = param(
        0.0, "Distance between sliding window starts; 0: tumbling windows (hop = window)."
    )
    id_column: str = param(
        "", "Unique id column (duplicates quarantined); overrides the schema's, no file needed."
    )
    time_column: str = param(
        "", "Time column (windows, ``split_by=time``); UTC when a timestamp has no offset."
    )
    device_column: str = param(
        "", "Device or session column: windows per device, whole devices per split (``group``)."
    )
    split_by: str = param(
        "auto",
        "``row``, ``group`` (each device in one split) or ``time`` (per device, latest part is "
        "test); ``auto``: ``group`` with a device column, else ``row``.",
    )
    engine: str = param(
        "local",
        "``local`` (Spark local[*] in this pod) or ``spark-operator`` (submit a "
        "SparkApplication and wait for it).",
    )
    spark_image: str = param(
        "", "Image of the SparkApplication; empty for the kfp-edge Spark image."
    )
    executor_instances: int = param(2, "SparkApplication executors.")
    executor_cores: int = param(1, "Cores per executor.")
    executor_memory: str = param("2g", "Memory per executor (Spark notation, e.g. ``2g``).")
    driver_cores: int = param(1, "Driver cores.")
    driver_memory: str = param("2g", "Driver memory (also the local session's heap).")
    workspace_pvc: str = param(
        "kfp-edge-workspace", "Workspace PVC mounted in the driver and executors."
    )
    namespace: str = param("", "Namespace of the SparkApplication; empty for the pipeline's own.")
    timeout_seconds: int = param(3600, "How long to wait for the SparkApplication.")
    service_account: str = param(
        "spark-operator-spark",
        "Service account of the Spark driver (it creates the executors).",
    )
    s3_secret: str = param(
        "",
        "Secret (keys accesskey, secretkey) given to the Spark driver for s3:// input; empty "
        "for none.",
    )
    pod_settings: dict = param(
        {},
        "Placement of the Spark pods: node_selector, tolerations, affinity, labels and "
        "image_pull_secrets (the etl step of the resource profile).",
    )
    time_to_live_seconds: int = param(
        86400, "The operator deletes the finished SparkApplication after this."
    )
