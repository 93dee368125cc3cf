"""kfp component: publish the gated model into the versioned model store."""

from typing import NamedTuple

from kfp import dsl

from kfp_edge.images import TENSORFLOW_IMAGE


@dsl.component(base_image=TENSORFLOW_IMAGE, install_kfp_package=False)
def ModelStoreOp(
    workspace: str,
    run_id: str,
    model_name: str,
    chosen_variant: str,
    chosen_path: str,
    saved_model_dir: str,
    data_dir: str,
    include_all_variants: bool = False,
    keep_last: int = 0,
    pinned_versions: list = [],  # noqa: B006 (kfp reads the default; never mutated)
    s3_bucket: str = "",
    s3_prefix: str = "models",
) -> NamedTuple("Outputs", [("version", int), ("model_dir", str)]):
    """Publishes the run's gated model as the next version in the store on the workspace.

    The version appears atomically under ``<workspace>/models/<model_name>/<version>/`` with
    the SavedModel, the chosen .tflite, the preprocessing spec, the dataset manifest and a
    manifest of sha256 checksums, metrics, gate decision and lineage. With ``s3_bucket`` set,
    the version is also uploaded (manifest last); the endpoint and credentials are read from
    the KFP_EDGE_S3_ENDPOINT, KFP_EDGE_S3_ACCESS_KEY and KFP_EDGE_S3_SECRET_KEY environment
    variables (a Kubernetes Secret in the cluster), never from parameters. The manifest is
    signed with the Ed25519 key of the mounted Secret (see use_signing_key) or of the file
    KFP_EDGE_SIGNING_KEY_FILE names; devices install only signed releases.

    Args:
        workspace: Root of the workspace volume (the PVC mount path in the cluster).
        run_id: The run id on the workspace.
        model_name: Name of the model in the store (letters, digits, '.', '_', '-').
        chosen_variant: The variant the gate chose.
        chosen_path: The chosen variant's .tflite file.
        saved_model_dir: The trained SavedModel directory.
        data_dir: The ETL output directory (dataset manifest and preprocessing spec).
        include_all_variants: Also publish every evaluated .tflite under variants/.
        keep_last: Keep only this many newest versions after publishing (0 keeps all).
        pinned_versions: Versions that pruning keeps whatever their age.
        s3_bucket: Also upload the version to this bucket; when empty, the bucket in the
            KFP_EDGE_S3_BUCKET environment variable if set, else no upload.
        s3_prefix: Key prefix in the bucket.

    Returns:
        version: The published version number.
        model_dir: The version's directory on the workspace.
    """
    from collections import namedtuple

    from kfp_edge.model_store.publish import publish_run

    result = publish_run(
        workspace=workspace,
        run_id=run_id,
        model_name=model_name,
        chosen_variant=chosen_variant,
        chosen_path=chosen_path,
        saved_model_dir=saved_model_dir,
        data_dir=data_dir,
        include_all_variants=include_all_variants,
        keep_last=keep_last,
        pinned_versions=[int(v) for v in pinned_versions],
        s3_bucket=s3_bucket,
        s3_prefix=s3_prefix,
    )
    print(f"published {result['model_name']} version {result['version']} at {result['model_dir']}")
    outputs = namedtuple("Outputs", ["version", "model_dir"])
    return outputs(result["version"], result["model_dir"])


# Kubeflow's own MinIO: the Service in the kubeflow namespace and the Secret that Kubeflow
# copies into every profile namespace (keys ``accesskey`` and ``secretkey``).
DEFAULT_S3_SECRET = "mlpipeline-minio-artifact"
DEFAULT_S3_ENDPOINT = "http://minio-service.kubeflow:9000"


def use_s3_credentials(
    task: dsl.PipelineTask,
    secret_name: str = DEFAULT_S3_SECRET,
    endpoint: str = DEFAULT_S3_ENDPOINT,
    bucket: str = "",
) -> dsl.PipelineTask:
    """Gives a publish task the S3 endpoint and the credentials from a Kubernetes Secret.

    The credentials reach the pod as environment variables taken from the Secret (kfp-kubernetes
    ``use_secret_as_env``): the compiled YAML names the Secret and its keys, never the values.

    Args:
        task: The ``ModelStoreOp`` task (or any task that calls the S3 helpers).
        secret_name: Secret with the keys ``accesskey`` and ``secretkey``.
        endpoint: ``http(s)://host:port`` of the S3 service (not a secret).
        bucket: If set, the default bucket (``KFP_EDGE_S3_BUCKET``) the step uploads to.

    Returns:
        The task.
    """
    from kfp import kubernetes

    from kfp_edge.s3 import ENV_BUCKET, ENV_ENDPOINT, SECRET_KEY_TO_ENV

    # Not optional: KFP backends before 2.15 ignore `optional` (the pod then waits for the
    # Secret anyway), and kfp-edge supports 2.5; manifests/base creates the Secret.
    kubernetes.use_secret_as_env(
        task, secret_name=secret_name, secret_key_to_env=SECRET_KEY_TO_ENV, optional=False
    )
    task.set_env_variable(ENV_ENDPOINT, endpoint)
    if bucket:
        task.set_env_variable(ENV_BUCKET, bucket)
    # the label the NetworkPolicy in manifests/base/minio-setup.yaml admits to MinIO's S3 port
    kubernetes.add_pod_label(task, S3_CLIENT_LABEL, "true")
    return task


# The Secret holding the publisher's Ed25519 private key (``kfp-edge keys generate``), key
# ``private.pem``; mounted read-only as a file, never passed as a parameter or env value.
DEFAULT_SIGNING_SECRET = "kfp-edge-signing-key"
S3_CLIENT_LABEL = "kfp-edge/s3-client"


def use_signing_key(
    task: dsl.PipelineTask, secret_name: str = DEFAULT_SIGNING_SECRET
) -> dsl.PipelineTask:
    """Mounts the release signing key from a Kubernetes Secret into a publish task.

    The compiled YAML names the Secret and the mount path, never the key. The step signs each
    version's manifest with the file it finds there (``signing.DEFAULT_SIGNING_KEY_FILE``);
    without the Secret the pod does not start, so a release is never published unsigned by
    accident in the cluster. (A local run mounts nothing and publishes unsigned, with a
    warning.)

    Args:
        task: The ``ModelStoreOp`` task.
        secret_name: Secret with the key ``private.pem`` (PKCS#8 PEM, Ed25519).

    Returns:
        The task.
    """
    import posixpath

    from kfp import kubernetes

    from kfp_edge.model_store.signing import DEFAULT_SIGNING_KEY_FILE

    mount = posixpath.dirname(DEFAULT_SIGNING_KEY_FILE)
    kubernetes.use_secret_as_volume(task, secret_name=secret_name, mount_path=mount)
    return task
