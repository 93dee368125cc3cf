"""The publish step: put a run's gated model into the store (and optionally into S3).

Pure Python (hashing and copying): no TensorFlow, no PySpark.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from kfp_edge import __version__, browser_model
from kfp_edge.dataset import MANIFEST_FILE as DATASET_MANIFEST
from kfp_edge.model_store.signing import ENV_SIGNING_KEY_FILE, signer_from_env
from kfp_edge.model_store.store import ModelStore
from kfp_edge.model_versions import (
    DATASET_MANIFEST_FILE,
    MODEL_FILE,
    PREPROCESSING_FILE,
    SAVED_MODEL_DIR,
    models_root,
)
from kfp_edge.s3 import ENV_BUCKET
from kfp_edge.workspace import BROWSER_DIR, read_report, run_dir, update_report


def store_for(workspace: str | os.PathLike) -> ModelStore:
    """Returns the model store of a workspace (``<workspace>/models``)."""
    return ModelStore(models_root(workspace))


def _chosen_figures(evaluation: dict, variant: str) -> dict:
    for entry in evaluation.get("variants") or []:
        if entry.get("name") == variant:
            return entry
    return {}


def publish_run(
    workspace: str,
    run_id: str,
    model_name: str,
    chosen_variant: str,
    chosen_path: str,
    saved_model_dir: str,
    data_dir: str,
    include_all_variants: bool = False,
    keep_last: int = 0,
    pinned_versions: list[int] | None = None,
    s3_bucket: str = "",
    s3_prefix: str = "models",
) -> dict:
    """Publishes the gated model of a run as the next version of ``model_name``.

    The version holds ``saved_model/``, ``model.tflite`` (the chosen variant),
    ``model.browser.tflite`` (its copy with batch 1 for LiteRT.js, when the browser can run it),
    ``preprocessing.json`` and ``dataset_manifest.json`` (and ``variants/`` when asked); its
    manifest carries the run's evaluation and gate sections, the chosen variant's figures and
    the lineage (run id, dataset manifest sha256, kfp-edge version, run parameters).

    Steps: check the gate's verdict and the inputs; collect the release's files and
    metadata; load the signing key and check the bucket (before anything is published);
    publish and prune; upload to S3 when asked; record the ``publish`` section.

    Args:
        workspace: Root of the workspace volume.
        run_id: The run id.
        model_name: Name of the model in the store.
        chosen_variant: The variant the gate chose.
        chosen_path: Its .tflite file.
        saved_model_dir: The trained SavedModel directory.
        data_dir: The ETL output directory (holds the dataset manifest and preprocessing spec).
        include_all_variants: Also publish every .tflite next to the chosen one, under
            ``variants/``.
        keep_last: Prune to this many newest versions after publishing (0 keeps all).
        pinned_versions: Versions that pruning keeps whatever their age.
        s3_bucket: Also upload the version to this bucket; when empty, the bucket named by
            ``KFP_EDGE_S3_BUCKET`` if set, else no upload. Endpoint and credentials come from
            the ``KFP_EDGE_S3_*`` environment variables.
        s3_prefix: Key prefix in the bucket.

    The manifest is signed with the Ed25519 key mounted from the Kubernetes Secret (or the file
    named by ``KFP_EDGE_SIGNING_KEY_FILE``); without a key the version is published unsigned,
    and devices refuse it.

    Returns:
        ``{"model_name", "version", "model_dir", "variant", "model_bytes", "shipped_bytes",
        "signed", "pruned", "s3"}``.

    Raises:
        ValueError: If the gate chose no variant or rejected the chosen one.
        FileNotFoundError: If an input file is missing.
    """
    directory = run_dir(workspace, run_id)
    report = read_report(directory)
    chosen, dataset_manifest = _check_inputs(
        directory, report, chosen_variant, chosen_path, data_dir
    )
    files, browser = _release_files(
        chosen, saved_model_dir, Path(data_dir), dataset_manifest, directory, include_all_variants
    )
    metadata = _release_metadata(report, run_id, chosen_variant, dataset_manifest, browser)
    signer = signer_from_env()  # before anything is published: a bad key fails here
    if signer is None:
        print(
            f"warning: no signing key ({ENV_SIGNING_KEY_FILE} unset, no Secret mounted); the "
            "version is published unsigned and devices will refuse it"
        )
    bucket = s3_bucket or os.environ.get(ENV_BUCKET, "")
    conn = _checked_bucket(bucket) if bucket else None
    store = store_for(workspace)
    published = store.publish(model_name, files, metadata, signer=signer)
    model_entry = published["manifest"]["files"][MODEL_FILE]
    pruned = store.prune(model_name, keep_last, pinned_versions or []) if keep_last > 0 else []
    result = {
        "model_name": model_name,
        "version": published["version"],
        "model_dir": published["path"],
        "variant": chosen_variant,
        "model_bytes": model_entry["size"],
        "shipped_bytes": model_entry["shipped"]["size"],
        "signed": signer is not None,
    }
    section = dict(result, **({"pruned": pruned} if pruned else {}))
    update_report(directory, "publish", section)
    uploaded = None
    if conn is not None:
        uploaded = _upload(conn, bucket, s3_prefix, published, workspace, model_name)
        section["s3"] = f"s3://{bucket}/{uploaded['manifest_key']}"
        update_report(directory, "publish", section)
    return {**result, "pruned": pruned, "s3": uploaded}


def _check_inputs(directory: Path, report: dict, variant: str, path: str, data_dir: str):
    """Refuses a variant the gate did not choose or rejected, and missing inputs."""
    gate = report.get("gate") or {}
    if not variant or not path:
        raise ValueError(f"{directory}: the gate chose no variant; nothing to publish")
    verdict = (gate.get("results") or {}).get(variant) or {}
    if verdict.get("passed") is False:
        raise ValueError(
            f"{directory / 'report.json'}: gate rejected variant {variant!r}: "
            f"{'; '.join(verdict.get('reasons') or [])}"
        )
    chosen = Path(path)
    if not chosen.is_file():
        raise FileNotFoundError(f"{chosen}: chosen variant {variant!r} has no .tflite file")
    dataset_manifest = Path(data_dir) / DATASET_MANIFEST
    if not dataset_manifest.is_file():
        raise FileNotFoundError(f"{dataset_manifest}: no dataset manifest; did the ETL finish?")
    return chosen, dataset_manifest


def _release_files(
    chosen: Path,
    saved_model_dir,
    data: Path,
    dataset_manifest: Path,
    directory: Path,
    include_all_variants: bool,
) -> tuple[dict, dict]:
    """The file table of a release (path in the version -> source) and its browser section."""
    files = {
        SAVED_MODEL_DIR: saved_model_dir,
        MODEL_FILE: str(chosen),
        PREPROCESSING_FILE: str(data / PREPROCESSING_FILE),
        DATASET_MANIFEST_FILE: str(dataset_manifest),
    }
    browser = browser_model.release_copy(chosen, directory / BROWSER_DIR)
    if browser["file"]:
        files[browser["file"]] = browser.pop("path")
    if include_all_variants:
        for tflite in sorted(chosen.parent.glob("*.tflite")):
            files[f"variants/{tflite.name}"] = str(tflite)
    return files, browser


def _release_metadata(
    report: dict, run_id: str, variant: str, dataset_manifest: Path, browser: dict
) -> dict:
    """The manifest's metadata: figures, evaluation, gate, browser section and lineage."""
    evaluation = report.get("evaluation") or {}
    return {
        "variant": variant,
        "metrics": _chosen_figures(evaluation, variant),
        "evaluation": evaluation,
        "gate": report.get("gate") or {},
        "browser": browser,
        "lineage": {
            "run_id": run_id,
            "dataset_manifest_sha256": hashlib.sha256(dataset_manifest.read_bytes()).hexdigest(),
            "kfp_edge_version": __version__,
            "parameters": (report.get("run") or {}).get("parameters", {}),
        },
    }


def _checked_bucket(bucket: str):
    """Connects to S3 and checks the bucket exists, before anything is published."""
    from kfp_edge import s3

    conn = s3.connect_from_env()
    with s3.readable_errors(f"s3://{bucket}"):
        if not conn.client.bucket_exists(bucket):
            raise ValueError(f"s3://{bucket}: the bucket does not exist")
    return conn


def _upload(conn, bucket: str, prefix: str, published: dict, workspace, model_name: str) -> dict:
    """Uploads a published version; a failure says how to retry (the version stays published)."""
    from kfp_edge import s3
    from kfp_edge.model_store import s3_releases

    location = f"s3://{bucket}/{prefix.strip('/')}"
    try:
        with s3.readable_errors(location):
            return s3_releases.upload_version(conn, bucket, prefix, published["path"])
    except (ValueError, OSError) as exc:
        raise RuntimeError(
            f"{model_name!r} version {published['version']} is published at "
            f"{published['path']} but its upload to {location} failed: {exc}. Retry with "
            f"`kfp-edge push --workspace {workspace} --name {model_name} "
            f"--version {published['version']} --s3 {location}`"
        ) from exc
