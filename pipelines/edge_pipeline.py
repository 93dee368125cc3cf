"""The edge pipeline: raw data to a verified model in the versioned model store.

Spark ETL -> TFJob training -> compression -> LiteRT evaluation -> SLO gate -> model store.

Every step mounts the workspace PVC (bulky data lives there; kfp artifacts carry metrics), and
caching is off for all of them: kfp's cache key ignores PVC contents.

The images of the pods created at run time (TFJob replicas, Spark driver and executors) are
pipeline parameters whose defaults are fixed at compile time from the registry and the profile
(the GPU training image for a GPU profile), so they follow ``KFP_EDGE_IMAGE_REGISTRY`` as the
steps do. The compiled YAML needs a KFP backend of at least :data:`MIN_KFP_BACKEND` (see
docs/deploy.md and tests/pipelines/test_backend_compat.py).
"""

from kfp import dsl, kubernetes

from kfp_edge import resources
from kfp_edge.pipelines.stage_defaults import COMPRESSION, ETL, FOREST, GATE, PUBLISH, TRAINING
from kfp_edge.workspace import CLUSTER_MOUNT_PATH

PIPELINE_NAME = "kfp-edge"
WORKSPACE_PVC = "kfp-edge-workspace"
# The MinIO of manifests/base: its Secret (keys accesskey, secretkey) and in-namespace Service.
MINIO_SECRET = "kfp-edge-minio"
MINIO_ENDPOINT = "http://kfp-edge-minio:9000"
DEFAULT_VARIANTS = COMPRESSION.variants
#: The oldest KFP backend that runs the compiled pipelines (docs/deploy.md says why).
MIN_KFP_BACKEND = "2.5.0"
BACKEND_NOTE = f" Needs a Kubeflow Pipelines backend {MIN_KFP_BACKEND} or later."


def on_workspace(task, step: str, profile: dict):
    """Mounts the workspace PVC, switches caching off and applies the step's resources."""
    kubernetes.mount_pvc(task, pvc_name=WORKSPACE_PVC, mount_path=CLUSTER_MOUNT_PATH)
    task.set_caching_options(False)
    task.set_display_name(step.replace("_", "-"))
    return resources.apply_to_task(task, profile.get(step, {}))


def build_edge_pipeline(profile: dict | None = None):
    """Returns the edge pipeline function with a resource profile applied.

    Args:
        profile: A resource profile (see :mod:`kfp_edge.resources`); the default when None.
    """
    from kfp_edge.compression.component import CompressionOp
    from kfp_edge.evaluation.component import EvaluationOp
    from kfp_edge.forest_training.component import ForestExportOp, ForestTrainingOp
    from kfp_edge.gate.component import GateOp
    from kfp_edge.model_store.component import ModelStoreOp, use_s3_credentials, use_signing_key
    from kfp_edge.run_context.component import RunContextOp
    from kfp_edge.spark_etl.component import SparkEtlOp
    from kfp_edge.tfjob_training.component import TfjobTrainingOp

    profile = profile or resources.load_profile(None)
    replica_resources = resources.training_replica_resources(profile)

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Raw data to a small, verified edge model: Spark ETL, TFJob training, "
        "compression, LiteRT evaluation, SLO gate and a versioned model store." + BACKEND_NOTE,
    )
    def edge_pipeline(
        workspace: str = CLUSTER_MOUNT_PATH,
        run_id: str = "",
        dataset: str = ETL.dataset,
        input_path: str = ETL.input_path,
        test_path: str = ETL.test_path,
        label_column: str = ETL.label_column,
        seed: int = ETL.seed,
        max_bad_fraction: float = ETL.max_bad_fraction,
        schema_path: str = ETL.schema_path,
        delimiter: str = ETL.delimiter,
        id_column: str = ETL.id_column,
        time_column: str = ETL.time_column,
        device_column: str = ETL.device_column,
        window_seconds: float = ETL.window_seconds,
        hop_seconds: float = ETL.hop_seconds,
        split_by: str = ETL.split_by,
        model: str = TRAINING.model,
        epochs: int = TRAINING.epochs,
        batch_size: int = TRAINING.batch_size,
        learning_rate: float = TRAINING.learning_rate,
        search_space: dict = TRAINING.search_space,
        search_algorithm: str = TRAINING.search_algorithm,
        search_max_trials: int = TRAINING.search_max_trials,
        search_parallel_trials: int = TRAINING.search_parallel_trials,
        search_size_penalty: float = TRAINING.search_size_penalty,
        workers: int = int(profile["training"]["workers"]),
        training_engine: str = "kubernetes",
        variants: list = COMPRESSION.variants,
        forest_configs: list = FOREST.forest_configs,
        model_name: str = "edge-model",
        min_accuracy: float = GATE.min_accuracy,
        max_accuracy_drop: float = GATE.max_accuracy_drop,
        max_size_bytes: int = GATE.max_size_bytes,
        max_latency_p50_us: float = GATE.max_latency_p50_us,
        max_latency_p95_us: float = GATE.max_latency_p95_us,
        keep_last: int = PUBLISH.keep_last,
        s3_bucket: str = PUBLISH.s3_bucket,
        s3_prefix: str = PUBLISH.s3_prefix,
        etl_engine: str = ETL.engine,
        spark_namespace: str = ETL.namespace,
        spark_service_account: str = ETL.service_account,
        spark_s3_secret: str = MINIO_SECRET,
        spark_image: str = resources.spark_image(profile),
        training_image: str = resources.training_image(profile),
    ) -> int:
        """Trains, compresses, evaluates, gates and publishes one edge model.

        Args:
            workspace: Mount path of the workspace volume (a local directory in local runs).
            run_id: Run id on the workspace; empty to use the KFP run id.
            dataset: Bundled dataset (iris or sensor) when no input_path is given.
            input_path: Your own CSV or Parquet file or directory (local path or s3:// URI).
            test_path: Labelled held-out rows of the same columns and format: the whole test
                split (the gate compares models on them); empty to split one off the input.
            label_column: Label column of input_path.
            seed: Seed of the deterministic split and of training.
            max_bad_fraction: The ETL fails when more rows than this fraction are quarantined.
            schema_path: Declared input schema (YAML or JSON); empty to infer one.
            delimiter: CSV field delimiter.
            id_column: Unique id column of input_path (duplicates quarantined).
            time_column: Time column of input_path (windows, split_by=time); UTC without an
                offset.
            device_column: Device or session column of input_path (windows per device, whole
                devices per split).
            window_seconds: Window per device for time series (-1: the dataset's default,
                0: off).
            hop_seconds: Distance between sliding window starts (0: tumbling windows).
            split_by: row, group (each device in one split), time (latest part of each
                device is test) or auto (group with a device column, else row).
            model: Model from the training registry (iris_mlp, mlp, cnn1d).
            epochs: Training epochs.
            batch_size: Per-replica batch size.
            learning_rate: Adam learning rate.
            search_space: Hyperparameter search of the training step ({name: {type, min, max,
                scale, step, values}}); empty: train once.
            search_algorithm: Search algorithm: random or grid.
            search_max_trials: Trials of the search at most.
            search_parallel_trials: Trials running at the same time.
            search_size_penalty: Objective penalty per million parameters.
            workers: Training replicas of the TFJob (chief included).
            training_engine: kubernetes (a TFJob on the cluster) or local (replicas as
                processes in the step's pod).
            variants: Compressed variants to produce and evaluate.
            forest_configs: Random forests (Spark MLlib, compiled to TFLite) to add as
                candidates, as '<trees>x<depth>' strings; empty: neural networks only.
            model_name: Name of the model in the model store.
            min_accuracy: Gate: minimum test accuracy.
            max_accuracy_drop: Gate: maximum accuracy lost against the float reference.
            max_size_bytes: Gate: maximum shipped (gzip) .tflite size in bytes.
            max_latency_p50_us: Gate: maximum single-sample p50 latency in microseconds.
            max_latency_p95_us: Gate: maximum single-sample p95 latency in microseconds.
            keep_last: Model store retention: keep this many versions plus pinned ones
                (0 keeps all).
            s3_bucket: MinIO bucket to distribute the published version to (empty: no upload).
            s3_prefix: Key prefix in the bucket (``<prefix>/<name>/<version>/...``).
            etl_engine: local (Spark local[*] in the ETL step's pod) or spark-operator (a
                SparkApplication of the Kubeflow Spark Operator).
            spark_namespace: Namespace of the SparkApplication; empty for the pipeline's own.
            spark_service_account: Service account of the Spark driver.
            spark_s3_secret: Secret with the S3 credentials for the Spark driver (s3:// input).
            spark_image: Image of the Spark driver and executors.
            training_image: Image of the TFJob replicas (the GPU flavour for GPU profiles).

        Returns:
            The published model version.
        """
        context = RunContextOp(
            workspace=workspace,
            run_id=run_id,
            job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            dataset=dataset,
            input_path=input_path,
            label_column=label_column,
            seed=seed,
            model=model,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            workers=workers,
            training_engine=training_engine,
            model_name=model_name,
            min_accuracy=min_accuracy,
            max_accuracy_drop=max_accuracy_drop,
            max_size_bytes=max_size_bytes,
            max_latency_p50_us=max_latency_p50_us,
            max_latency_p95_us=max_latency_p95_us,
        )
        on_workspace(context, "run_context", profile)
        resolved_run_id = context.outputs["run_id"]

        etl = SparkEtlOp(
            workspace=workspace,
            run_id=resolved_run_id,
            dataset=dataset,
            input_path=input_path,
            test_path=test_path,
            label_column=label_column,
            seed=seed,
            max_bad_fraction=max_bad_fraction,
            engine=etl_engine,
            spark_image=spark_image,
            namespace=spark_namespace,
            service_account=spark_service_account,
            s3_secret=spark_s3_secret,
            pod_settings=resources.spark_pod_settings(profile),
            schema_path=schema_path,
            delimiter=delimiter,
            id_column=id_column,
            time_column=time_column,
            device_column=device_column,
            window_seconds=window_seconds,
            hop_seconds=hop_seconds,
            split_by=split_by,
        )
        on_workspace(etl, "etl", profile)
        use_s3_credentials(etl, secret_name=MINIO_SECRET, endpoint=MINIO_ENDPOINT)  # s3:// input

        training = TfjobTrainingOp(
            workspace=workspace,
            run_id=resolved_run_id,
            data_dir=etl.outputs["data_dir"],
            model=model,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            workers=workers,
            engine=training_engine,
            replica_resources=replica_resources,
            image=training_image,
            search_space=search_space,
            search_algorithm=search_algorithm,
            search_max_trials=search_max_trials,
            search_parallel_trials=search_parallel_trials,
            search_size_penalty=search_size_penalty,
        )
        on_workspace(training, "training_launcher", profile)

        compression = CompressionOp(
            workspace=workspace,
            run_id=resolved_run_id,
            saved_model_dir=training.outputs["saved_model_dir"],
            data_dir=etl.outputs["data_dir"],
            variants=variants,
        )
        on_workspace(compression, "compression", profile)

        forests = ForestTrainingOp(
            workspace=workspace,
            run_id=resolved_run_id,
            data_dir=etl.outputs["data_dir"],
            forest_configs=forest_configs,
            seed=seed,
        )
        on_workspace(forests, "forest_training", profile)
        forest_candidates = ForestExportOp(
            workspace=workspace,
            run_id=resolved_run_id,
            forests_dir=forests.outputs["forests_dir"],
            data_dir=etl.outputs["data_dir"],
        )
        on_workspace(forest_candidates, "forest_export", profile)

        evaluation = EvaluationOp(
            workspace=workspace,
            run_id=resolved_run_id,
            variants_dir=compression.outputs["variants_dir"],
            data_dir=etl.outputs["data_dir"],
            saved_model_dir=training.outputs["saved_model_dir"],
        )
        evaluation.after(forest_candidates)  # the forests join the variants directory
        on_workspace(evaluation, "evaluation", profile)

        gate = GateOp(
            workspace=workspace,
            run_id=resolved_run_id,
            evaluation_path=evaluation.outputs["evaluation_path"],
            model_name=model_name,  # its published version is the champion
            data_dir=etl.outputs["data_dir"],
            min_accuracy=min_accuracy,
            max_accuracy_drop=max_accuracy_drop,
            max_size_bytes=max_size_bytes,
            max_latency_p50_us=max_latency_p50_us,
            max_latency_p95_us=max_latency_p95_us,
        )
        on_workspace(gate, "gate", profile)

        publish = ModelStoreOp(
            workspace=workspace,
            run_id=resolved_run_id,
            model_name=model_name,
            chosen_variant=gate.outputs["chosen_variant"],
            chosen_path=gate.outputs["chosen_path"],
            saved_model_dir=training.outputs["saved_model_dir"],
            data_dir=etl.outputs["data_dir"],
            keep_last=keep_last,
            s3_bucket=s3_bucket,
            s3_prefix=s3_prefix,
        )
        on_workspace(publish, "publish", profile)
        use_s3_credentials(publish, secret_name=MINIO_SECRET, endpoint=MINIO_ENDPOINT)
        use_signing_key(publish)
        return publish.outputs["version"]

    return edge_pipeline


def __getattr__(name: str):
    # `from kfp_edge.pipelines.edge_pipeline import edge_pipeline` builds the default pipeline
    # on first use, so importing this module stays cheap.
    if name == "edge_pipeline":
        return build_edge_pipeline()
    raise AttributeError(name)
