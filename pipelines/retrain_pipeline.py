"""The retraining pipeline: drift check, then on drift retraining, gate and publish.

Drift check -> if drifted: the reservoir (plus the original data when asked) -> the edge
pipeline (ETL, TFJob training, compression, LiteRT evaluation, SLO gate) -> a new version in
the model store.

Run it on a schedule (a Kubeflow recurring run, see ``examples/create_recurring_run.py``) over
the directory where new observations land: each run feeds them through the model's ADWIN
detectors, whose state and biased reservoir persist on the workspace volume, and only a run that
sees an open alarm trains and, if the gate passes, publishes. An alarm stays open until a
version published after it resolves it, so a failed or refused retraining is retried on the
next run. The retraining input holds no duplicate rows; its newest labelled rows are held out
as a recent test table (the ``test_path`` output of the retraining data step).
"""

from kfp import dsl

from kfp_edge import resources
from kfp_edge.pipelines.stage_defaults import (
    COMPRESSION,
    DRIFT,
    ETL,
    FOREST,
    GATE,
    PUBLISH,
    RETRAIN_DATA,
    TRAINING,
)
from kfp_edge.workspace import CLUSTER_MOUNT_PATH

PIPELINE_NAME = "kfp-edge-retrain"
DRIFT_STEP = "drift_check"
RETRAIN_DATA_STEP = "retrain_data"


def build_retrain_pipeline(profile: dict | None = None):
    """Returns the retraining pipeline function with a resource profile applied.

    Args:
        profile: A resource profile (see :mod:`kfp_edge.resources`); the default when None.
            The drift check and the retraining input use the ``evaluation`` step's spec; the
            edge sub-pipeline uses its own steps' specs.
    """
    from kfp_edge.drift_monitor.component import DriftMonitorOp, RetrainDataOp
    from kfp_edge.pipelines.edge_pipeline import (
        BACKEND_NOTE,
        MINIO_SECRET,
        build_edge_pipeline,
        on_workspace,
    )

    profile = profile or resources.load_profile(None)
    edge_pipeline = build_edge_pipeline(profile)

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Drift check with ADWIN on new observations; when drift is found, retrain "
        "on the biased reservoir (plus the original data when asked), gate and publish."
        + BACKEND_NOTE,
    )
    def retrain_pipeline(
        input_path: str,
        workspace: str = CLUSTER_MOUNT_PATH,
        run_id: str = "",
        model_name: str = "edge-model",
        version: str = DRIFT.version,
        delta: float = DRIFT.delta,
        window: int = DRIFT.window,
        bias_rate: float = DRIFT.bias_rate,
        label_column: str = DRIFT.label_column,
        id_column: str = DRIFT.id_column,
        reference_path: str = DRIFT.reference_path,
        include_original: bool = RETRAIN_DATA.include_original,
        original_share: float = RETRAIN_DATA.original_share,
        test_fraction: float = RETRAIN_DATA.test_fraction,
        min_rows: int = RETRAIN_DATA.min_rows,
        seed: int = ETL.seed,
        max_bad_fraction: float = ETL.max_bad_fraction,
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
    ):
        """Checks for drift and, when found, retrains, gates and publishes a new version.

        Args:
            input_path: New observations: a CSV or Parquet file or a directory of them.
            workspace: Mount path of the workspace volume (a local directory in local runs).
            run_id: Run id of the drift check; empty to use the KFP run id. The retraining
                run gets ``<run id>-retrain``.
            model_name: The watched model in the model store; the new version goes there too.
            version: Watched model version, or latest.
            delta: Family-wise ADWIN confidence, split evenly over all detectors.
            window: Observations per window of the windowed detectors.
            bias_rate: Bias rate of the reservoir (it holds at most 1/bias_rate rows); 0 keeps
                the saved reservoir's rate, or takes 0.001 for a new reservoir.
            label_column: Label column of the observations; empty for the model's.
            id_column: Row id column for late labels; empty for the model's, if any.
            reference_path: Optional data like the training data, to prime fresh detectors.
            include_original: Retrain on the original data as well as the reservoir.
            original_share: At most this share of the training rows is original data.
            test_fraction: Share of the newest labelled rows held out as the recent test split.
            min_rows: The retraining input needs at least this many labelled rows.
            seed: Seed of the deterministic split and of training.
            max_bad_fraction: The ETL fails when more rows than this fraction are quarantined.
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
            training_engine: kubernetes (a TFJob on the cluster) or local.
            variants: Compressed variants to produce and evaluate.
            forest_configs: Random forests to add as candidates ('<trees>x<depth>').
            min_accuracy: Gate: minimum test accuracy.
            max_accuracy_drop: Gate: maximum accuracy lost against the float reference.
            max_size_bytes: Gate: maximum shipped (gzip) .tflite size in bytes.
            max_latency_p50_us: Gate: maximum single-sample p50 latency in microseconds.
            max_latency_p95_us: Gate: maximum single-sample p95 latency in microseconds.
            keep_last: Model store retention: keep this many versions plus pinned ones
                (0 keeps all).
            s3_bucket: MinIO bucket to distribute the new version to (empty: no upload).
            s3_prefix: Key prefix in the bucket (``<prefix>/<name>/<version>/...``).
            etl_engine: local (Spark local[*] in the ETL step's pod) or spark-operator.
            spark_namespace: Namespace of the SparkApplication; empty for the pipeline's own.
            spark_service_account: Service account of the Spark driver.
            spark_s3_secret: Secret with the S3 credentials for the Spark driver.
            spark_image: Image of the Spark driver and executors.
            training_image: Image of the TFJob replicas (the GPU flavour for GPU profiles).
        """
        drift = DriftMonitorOp(
            workspace=workspace,
            run_id=run_id,
            job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            model_name=model_name,
            input_path=input_path,
            version=version,
            delta=delta,
            window=window,
            bias_rate=bias_rate,
            label_column=label_column,
            id_column=id_column,
            reference_path=reference_path,
        )
        on_workspace(drift, "evaluation", profile)
        drift.set_display_name(DRIFT_STEP.replace("_", "-"))
        with dsl.If(drift.outputs["Output"] == True, name="drifted"):  # noqa: E712
            data = RetrainDataOp(
                workspace=workspace,
                run_id=run_id,
                job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                model_name=model_name,
                version=version,
                include_original=include_original,
                original_share=original_share,
                test_fraction=test_fraction,
                min_rows=min_rows,
            )
            on_workspace(data, "evaluation", profile)
            data.set_display_name(RETRAIN_DATA_STEP.replace("_", "-"))
            # Every input of the sub-pipeline is passed: backends before 2.14 do not fill in a
            # sub-pipeline's defaults (tests/pipelines/test_backend_compat.py checks it).
            retrain = edge_pipeline(
                workspace=workspace,
                run_id=data.outputs["train_run_id"],
                dataset=ETL.dataset,
                input_path=data.outputs["input_path"],
                # the recent held-out rows: the gate compares champion and challenger on them
                test_path=data.outputs["test_path"],
                label_column=data.outputs["label_column"],
                # The retraining table holds model rows (windows already applied by the drift
                # monitor) with no id, time or device column: the ETL's defaults, explicitly.
                schema_path=ETL.schema_path,
                delimiter=ETL.delimiter,
                id_column=ETL.id_column,
                time_column=ETL.time_column,
                device_column=ETL.device_column,
                window_seconds=0.0,
                hop_seconds=ETL.hop_seconds,
                split_by=ETL.split_by,
                seed=seed,
                max_bad_fraction=max_bad_fraction,
                model=model,
                epochs=epochs,
                batch_size=batch_size,
                learning_rate=learning_rate,
                search_space=search_space,
                search_algorithm=search_algorithm,
                search_max_trials=search_max_trials,
                search_parallel_trials=search_parallel_trials,
                search_size_penalty=search_size_penalty,
                workers=workers,
                training_engine=training_engine,
                variants=variants,
                forest_configs=forest_configs,
                model_name=model_name,
                min_accuracy=min_accuracy,
                max_accuracy_drop=max_accuracy_drop,
                max_size_bytes=max_size_bytes,
                max_latency_p50_us=max_latency_p50_us,
                max_latency_p95_us=max_latency_p95_us,
                keep_last=keep_last,
                s3_bucket=s3_bucket,
                s3_prefix=s3_prefix,
                etl_engine=etl_engine,
                spark_namespace=spark_namespace,
                spark_service_account=spark_service_account,
                spark_s3_secret=spark_s3_secret,
                spark_image=spark_image,
                training_image=training_image,
            )
            retrain.set_display_name("retrain")
            retrain.set_caching_options(False)  # the sub-pipeline reads the PVC like its steps

    return retrain_pipeline


def __getattr__(name: str):
    # `from kfp_edge.pipelines import retrain_pipeline` builds the default pipeline on first use.
    if name == "retrain_pipeline":
        return build_retrain_pipeline()
    raise AttributeError(name)
