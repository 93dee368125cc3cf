"""The S3 client every stage shares: endpoint and credentials from the environment, errors named.

The model store's release layout in the bucket is in ``kfp_edge.model_store.s3_releases``.

Layout in the bucket: ``<prefix>/<name>/<version>/<file>`` and
``<prefix>/<name>/<version>/manifest.json``. The manifest is uploaded last and only with
``If-None-Match: *``, so a version exists for readers exactly when its manifest does, and an
existing version is never overwritten. Every object carries its sha256 in
``x-amz-checksum-sha256`` (the server verifies it) and in the user metadata ``sha256``.

Endpoint, bucket and credentials come from the environment, never from pipeline parameters:

``KFP_EDGE_S3_ENDPOINT``
    ``http://host:port`` or ``https://host:port`` (plain ``host:port`` means https).
``KFP_EDGE_S3_ACCESS_KEY`` / ``KFP_EDGE_S3_SECRET_KEY``
    Credentials. In the cluster: the Kubernetes Secret keys ``accesskey`` / ``secretkey``
    (the keys of Kubeflow's ``mlpipeline-minio-artifact`` secret) mapped with kfp-kubernetes
    ``use_secret_as_env``.
``KFP_EDGE_S3_BUCKET``
    Default bucket when none is given.
``KFP_EDGE_S3_REGION``
    Optional region.

Uses the ``minio`` client only (``pip install kfp-edge[s3]``); never TensorFlow or PySpark.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import contextmanager
from urllib.parse import urlparse

ENV_ENDPOINT = "KFP_EDGE_S3_ENDPOINT"
ENV_ACCESS_KEY = "KFP_EDGE_S3_ACCESS_KEY"
ENV_SECRET_KEY = "KFP_EDGE_S3_SECRET_KEY"
ENV_BUCKET = "KFP_EDGE_S3_BUCKET"
ENV_REGION = "KFP_EDGE_S3_REGION"
# Keys of the Kubernetes Secret holding the credentials -> the env vars they become.
SECRET_KEY_TO_ENV = {"accesskey": ENV_ACCESS_KEY, "secretkey": ENV_SECRET_KEY}
_MAX_SINGLE_PUT = 5 * 1024**3


def client_from_env(environ: Mapping[str, str] | None = None):
    """Returns a ``minio.Minio`` client configured from the ``KFP_EDGE_S3_*`` variables.

    Args:
        environ: The environment to read (``os.environ`` by default).

    Raises:
        ValueError: If the endpoint or a credential variable is missing (the message names it,
            never its value).
    """
    from minio import Minio

    env = os.environ if environ is None else environ
    missing = [k for k in (ENV_ENDPOINT, ENV_ACCESS_KEY, ENV_SECRET_KEY) if not env.get(k)]
    if missing:
        raise ValueError(f"S3 access needs the environment variables {', '.join(missing)}")
    endpoint = env[ENV_ENDPOINT]
    parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"{ENV_ENDPOINT}={endpoint!r}: expected http(s)://host:port")
    return Minio(
        parsed.netloc,
        access_key=env[ENV_ACCESS_KEY],
        secret_key=env[ENV_SECRET_KEY],
        secure=parsed.scheme == "https",
        region=env.get(ENV_REGION) or None,
    )


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Splits ``s3://bucket/prefix`` into ``(bucket, prefix)`` (prefix without slashes at ends).

    Raises:
        ValueError: If the URI is not ``s3://`` or has no bucket.
    """
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"invalid S3 location {uri!r}: expected s3://bucket[/prefix]")
    return parsed.netloc, parsed.path.strip("/")


@contextmanager
def readable_errors(location: str):
    """Turns S3 and connection errors into ``ValueError`` naming the location (no secrets).

    Args:
        location: What was being accessed, e.g. ``s3://bucket/prefix``.
    """
    from minio.error import MinioException, S3Error
    from urllib3.exceptions import HTTPError

    try:
        yield
    except S3Error as exc:
        raise ValueError(f"{location}: S3 error {exc.code}: {exc.message}") from exc
    except (MinioException, HTTPError) as exc:
        endpoint = os.environ.get(ENV_ENDPOINT, "")
        raise ValueError(f"{location}: cannot talk to S3 at {endpoint}: {exc}") from exc
