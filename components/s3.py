"""The S3 client every stage shares: endpoint and credentials from the environment, errors named.

The model store's release layout in the bucket is in ``kfp_edge.model_store.s3_releases``.

Endpoint, bucket and credentials come from the environment, never from pipeline parameters:

``KFP_EDGE_S3_ENDPOINT``
    ``http://host:port`` or ``https://host:port`` (plain ``host:port`` means https).
``KFP_EDGE_S3_ACCESS_KEY`` / ``KFP_EDGE_S3_SECRET_KEY``
    Credentials. In the cluster: the Kubernetes Secret keys ``accesskey`` / ``secretkey``
    mapped with kfp-kubernetes ``use_secret_as_env``. Devices get read-only keys.
``KFP_EDGE_S3_BUCKET``
    Default bucket when none is given.
``KFP_EDGE_S3_REGION``
    Optional region (``us-east-1`` when unset).
``KFP_EDGE_S3_CA_BUNDLE``
    Optional PEM file of the CA certificates that sign an https endpoint's certificate.
``KFP_EDGE_S3_CONNECT_TIMEOUT`` / ``KFP_EDGE_S3_READ_TIMEOUT`` / ``KFP_EDGE_S3_DEADLINE``
    Seconds (defaults 5, 15 and 120): to connect, to wait for any byte of an answer, and for
    a whole operation (a pull or an upload) including retries.

Uses the ``minio`` client only (``pip install kfp-edge[s3]``); never TensorFlow or PySpark.
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import quote, urlparse, urlsplit

ENV_ENDPOINT = "KFP_EDGE_S3_ENDPOINT"
ENV_ACCESS_KEY = "KFP_EDGE_S3_ACCESS_KEY"
ENV_SECRET_KEY = "KFP_EDGE_S3_SECRET_KEY"
ENV_BUCKET = "KFP_EDGE_S3_BUCKET"
ENV_REGION = "KFP_EDGE_S3_REGION"
ENV_CA_BUNDLE = "KFP_EDGE_S3_CA_BUNDLE"
ENV_CONNECT_TIMEOUT = "KFP_EDGE_S3_CONNECT_TIMEOUT"
ENV_READ_TIMEOUT = "KFP_EDGE_S3_READ_TIMEOUT"
ENV_DEADLINE = "KFP_EDGE_S3_DEADLINE"
# Keys of the Kubernetes Secret holding the credentials -> the env vars they become.
SECRET_KEY_TO_ENV = {"accesskey": ENV_ACCESS_KEY, "secretkey": ENV_SECRET_KEY}
_TIMEOUT_DEFAULTS = {ENV_CONNECT_TIMEOUT: 5.0, ENV_READ_TIMEOUT: 15.0, ENV_DEADLINE: 120.0}
# What an S3 error code means, for servers that answer with a code and no message.
CODE_EXPLANATIONS = {
    "AccessDenied": "the credentials may not do this (a device's keys are read-only)",
    "InvalidAccessKeyId": "the access key is unknown to the server",
    "SignatureDoesNotMatch": "the secret key is wrong for this access key",
    "NoSuchBucket": "the bucket does not exist",
    "NoSuchKey": "no such object",
    "PreconditionFailed": "the object already exists (create-only write)",
    "XAmzContentSHA256Mismatch": "the uploaded bytes do not match their signed sha256",
    "BadDigest": "the uploaded bytes do not match their checksum",
    "RequestTimeTooSkewed": "the clocks of this machine and the server differ too much",
    "SlowDown": "the server is overloaded; retry later",
}


@dataclass
class S3Connection:
    """A configured client: the ``minio.Minio`` object and what raw requests need.

    Attributes:
        client: The ``minio.Minio`` client (its HTTP pool has the timeouts below).
        base_url: ``http(s)://host:port``.
        region: The signing region.
        deadline_s: Seconds a whole operation may take.
    """

    client: object
    base_url: str
    region: str
    deadline_s: float
    _credentials: object
    _http: object

    def deadline(self) -> float:
        """Returns the ``time.monotonic()`` value by which an operation started now must end."""
        return time.monotonic() + self.deadline_s

    def put_stream(
        self,
        bucket: str,
        key: str,
        body: BinaryIO,
        size: int,
        sha256_hex: str,
        headers: Mapping[str, str],
    ) -> None:
        """PUTs one object streamed from ``body`` in a single signed request.

        The payload's sha256 is signed (``x-amz-content-sha256``), so a server that checks it
        rejects bytes changed on the way. ``headers`` may hold ``If-None-Match: *`` (which
        ``Minio.put_object`` cannot send) and ``x-amz-meta-*`` entries.

        Raises:
            minio.error.S3Error: On an error answer (code and message from the server).
        """
        from minio.error import S3Error
        from minio.signer import sign_v4_s3

        url = urlsplit(f"{self.base_url}/{bucket}/{quote(key, safe='/-_.~')}")
        date = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
        signed = sign_v4_s3(
            method="PUT",
            url=url,
            region=self.region,
            headers={
                **headers,
                "Host": url.netloc,
                "Content-Length": str(size),
                "x-amz-content-sha256": sha256_hex,
                "x-amz-date": date.strftime("%Y%m%dT%H%M%SZ"),
            },
            credentials=self._credentials,
            content_sha256=sha256_hex,
            date=date,
        )
        response = self._http.urlopen(
            "PUT", url.geturl(), body=body, headers=signed, preload_content=True, retries=False
        )
        if response.status not in (200, 204):
            raise (
                S3Error.fromxml(response)
                if response.data
                else S3Error(response, str(response.status), None, key, None, None, bucket, key)
            )


def _seconds(env: Mapping[str, str], name: str) -> float:
    text = env.get(name) or str(_TIMEOUT_DEFAULTS[name])
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise ValueError(f"{name}={text!r}: expected a number of seconds in (0, 3600]")
    return value


def connect_from_env(environ: Mapping[str, str] | None = None) -> S3Connection:
    """Returns an ``S3Connection`` configured from the ``KFP_EDGE_S3_*`` variables.

    Args:
        environ: The environment to read (``os.environ`` by default).

    Raises:
        ValueError: If the endpoint or a credential variable is missing or a setting is
            invalid (the message names the variable, never a secret's value).
    """
    import urllib3
    from minio import Minio
    from minio.credentials import Credentials, StaticProvider

    env = os.environ if environ is None else environ
    missing = [k for k in (ENV_ENDPOINT, ENV_ACCESS_KEY, ENV_SECRET_KEY) if not env.get(k)]
    if missing:
        raise ValueError(f"S3 access needs the environment variables {', '.join(missing)}")
    endpoint = env[ENV_ENDPOINT]
    parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"{ENV_ENDPOINT}={endpoint!r}: expected http(s)://host:port")
    ca_bundle = env.get(ENV_CA_BUNDLE) or None
    if ca_bundle and not os.path.isfile(ca_bundle):
        raise ValueError(f"{ENV_CA_BUNDLE}={ca_bundle!r}: no such file")
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(
            connect=_seconds(env, ENV_CONNECT_TIMEOUT), read=_seconds(env, ENV_READ_TIMEOUT)
        ),
        # Connection failures and 5xx answers are retried twice; a read timeout is not (a
        # server that accepted and went silent would otherwise cost several timeouts).
        retries=urllib3.Retry(
            total=2, read=0, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]
        ),
        maxsize=10,
        cert_reqs="CERT_REQUIRED",
        ca_certs=ca_bundle,
    )
    region = env.get(ENV_REGION) or "us-east-1"
    access, secret = env[ENV_ACCESS_KEY], env[ENV_SECRET_KEY]
    client = Minio(
        parsed.netloc,
        credentials=StaticProvider(access, secret),
        secure=parsed.scheme == "https",
        region=region,
        http_client=http,
    )
    return S3Connection(
        client=client,
        base_url=f"{parsed.scheme}://{parsed.netloc}",
        region=region,
        deadline_s=_seconds(env, ENV_DEADLINE),
        _credentials=Credentials(access, secret),
        _http=http,
    )


def client_from_env(environ: Mapping[str, str] | None = None):
    """Returns the ``minio.Minio`` client of ``connect_from_env`` (same configuration)."""
    return connect_from_env(environ).client


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Splits ``s3://bucket/prefix`` into ``(bucket, prefix)`` (prefix without slashes at ends).

    Raises:
        ValueError: If the URI is not ``s3://`` or has no bucket.
    """
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"invalid S3 location {uri!r}: expected s3://bucket[/prefix]")
    return parsed.netloc, parsed.path.strip("/")


def explain(exc) -> str:
    """Returns ``code: message`` of an ``S3Error``, explaining a code that came without one."""
    message = exc.message or CODE_EXPLANATIONS.get(exc.code, "")
    if not message and str(exc.code).isdigit():
        message = f"HTTP status {exc.code} without an S3 error body"
    return f"{exc.code}: {message}" if message else str(exc.code)


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
        raise ValueError(f"{location}: S3 error {explain(exc)}") from exc
    except (MinioException, HTTPError) as exc:
        endpoint = os.environ.get(ENV_ENDPOINT, "")
        raise ValueError(f"{location}: cannot talk to S3 at {endpoint}: {exc}") from exc
