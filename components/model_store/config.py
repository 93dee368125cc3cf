"""The model store stage's parameters, one source for component, pipelines and CLI."""

from dataclasses import dataclass

from kfp_edge.stage_config import param


@dataclass(frozen=True)
class PublishConfig:
    """The publish step's parameters (see kfp_edge.stage_config)."""

    include_all_variants: bool = param(
        False, "Also publish every evaluated .tflite under variants/."
    )
    keep_last: int = param(0, "Keep only this many newest versions after publishing (0 keeps all).")
    pinned_versions: list = param([], "Versions that pruning keeps whatever their age.")
    s3_bucket: str = param(
        "",
        "Also upload the version to this bucket; when empty, the bucket in the "
        "KFP_EDGE_S3_BUCKET environment variable if set, else no upload.",
    )
    s3_prefix: str = param("models", "Key prefix in the bucket.")
