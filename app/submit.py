"""``kfp-edge submit``: compile the pipeline and start a run on a Kubeflow Pipelines server.

Authentication follows what ``kfp.Client`` supports, in this order:

1. ``KF_PIPELINES_TOKEN`` in the environment: a bearer token (for example
   ``kubectl create token <sa>`` or an identity-aware proxy token), passed as
   ``existing_token``;
2. the projected service-account token volume of a Kubeflow notebook or pod
   (``KF_PIPELINES_SA_TOKEN_PATH``, default ``/var/run/secrets/kubeflow/pipelines/token``),
   through ``ServiceAccountTokenVolumeCredentials``;
3. nothing (a ``kubectl port-forward`` to ml-pipeline-ui, or a cluster without auth).

Without ``--host``, ``kfp.Client`` takes ``KF_PIPELINES_ENDPOINT`` or, inside the cluster, the
in-cluster service address. Tokens are never printed or logged.

Before it creates a run, ``submit`` reads the server's version (``tag_name`` of
``/apis/v2beta1/healthz``, which the API server fills from its ``TAG_NAME``) and refuses a
backend older than the compiled pipelines need (:data:`kfp_edge.pipelines.edge_pipeline.
MIN_KFP_BACKEND`). A server that does not say its version (a dev build) is let through with a
warning.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
import warnings
from pathlib import Path

from kfp_edge.app.params import (
    add_param_option,
    coerce_arguments,
    parse_params,
    pipeline_parameters,
)

TOKEN_ENV = "KF_PIPELINES_TOKEN"
SA_TOKEN_PATH_ENV = "KF_PIPELINES_SA_TOKEN_PATH"
SA_TOKEN_DEFAULT_PATH = "/var/run/secrets/kubeflow/pipelines/token"
UI_ENDPOINT_ENV = "KF_PIPELINES_UI_ENDPOINT"
DEFAULT_EXPERIMENT = "kfp-edge"


class ConnectionProblem(ValueError):
    """The KFP API could not be reached or refused us; the message is one line for the user."""


def check_host(host: str | None) -> None:
    """Refuses a malformed ``--host``, and a missing one outside a cluster.

    Raises:
        ValueError: Naming the address and what a valid one looks like.
    """
    import urllib.parse

    host = host or os.environ.get("KF_PIPELINES_ENDPOINT")
    if not host:
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            return  # in a pod kfp.Client finds the in-cluster API itself
        raise ValueError("no KFP API address: give --host URL or set KF_PIPELINES_ENDPOINT")
    url = urllib.parse.urlsplit(host)
    if url.scheme not in ("http", "https") or not url.hostname or " " in host:
        raise ValueError(f"malformed KFP API address {host!r}: expected http(s)://HOST[:PORT]")
    try:
        url.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        raise ValueError(f"malformed KFP API address {host!r}: {exc}") from exc


@contextlib.contextmanager
def talking_to(host: str | None):
    """Turns connection, DNS, TLS and auth failures of kfp.Client into one-line errors."""
    import urllib3
    from kfp_server_api.exceptions import ApiException

    where = host or os.environ.get("KF_PIPELINES_ENDPOINT") or "the in-cluster KFP API"
    try:
        yield
    except urllib3.exceptions.MaxRetryError as exc:
        reason = exc.reason
        if isinstance(reason, urllib3.exceptions.NameResolutionError):
            raise ConnectionProblem(f"cannot resolve the host of {where}") from None
        if isinstance(reason, urllib3.exceptions.SSLError):
            raise ConnectionProblem(f"TLS failed with {where}: {_first_line(reason)}") from None
        raise ConnectionProblem(f"cannot connect to {where}: {_first_line(reason)}") from None
    except ApiException as exc:
        if exc.status in (401, 403):
            raise ConnectionProblem(
                f"{where} refused the credentials (HTTP {exc.status}): set {TOKEN_ENV} to a "
                "valid bearer token"
            ) from None
        detail = _api_error(exc.body) or exc.reason
        raise ConnectionProblem(f"{where} answered HTTP {exc.status}: {detail}") from None


def _api_error(body) -> str:
    """The ``error``/``message`` field of a KFP API error body, if it has one."""
    try:
        data = json.loads(body or "")
    except (TypeError, ValueError):
        return ""
    return (
        str(data.get("error") or data.get("message") or "")[:300] if isinstance(data, dict) else ""
    )


def _first_line(reason) -> str:
    text = str(reason)
    # urllib3 wraps the socket error: "HTTPConnection(...): Failed to ...: [Errno 111] ..."
    return text.split("): ", 1)[-1].splitlines()[0][:200]


def _client_class():
    import kfp

    class Client(kfp.Client):
        """A kfp.Client that asks healthz once; the first answer is final.

        kfp tries five times, 5 s apart, on any error (a 401 included), logging a traceback
        each time.
        """

        def get_kfp_healthz(self, sleep_duration: int = 5):
            return self._healthz_api.healthz_service_get_healthz()

    return Client


def make_client(host: str | None, namespace: str | None = None, ui_host: str | None = None):
    """Returns a ``kfp.Client`` authenticated as described in this module's docstring."""
    from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

    kwargs: dict = {"host": host, "ui_host": ui_host}
    if namespace:
        kwargs["namespace"] = namespace
    token = os.environ.get(TOKEN_ENV)
    sa_token_path = os.environ.get(SA_TOKEN_PATH_ENV, SA_TOKEN_DEFAULT_PATH)
    if token:
        kwargs["existing_token"] = token
    elif Path(sa_token_path).is_file():
        kwargs["credentials"] = ServiceAccountTokenVolumeCredentials(path=sa_token_path)
    with warnings.catch_warnings():
        # kfp.Client warns on every construction that it needs KFP >= 2.0.0-beta.2: documented.
        warnings.filterwarnings("ignore", message="This client only works", category=FutureWarning)
        return _client_class()(**kwargs)


class BackendTooOld(ValueError):
    """The KFP server is older than the compiled pipelines need."""


def backend_version(client) -> str:
    """Returns the KFP server's ``tag_name`` (e.g. ``2.5.0``), or ``""`` when it has none.

    ``kfp.Client.get_kfp_healthz`` drops the field (its model has ``multi_user`` only), so the
    JSON is read through the client's own authenticated API client.
    """
    response = client._healthz_api.api_client.call_api(
        "/apis/v2beta1/healthz",
        "GET",
        auth_settings=["Bearer"],
        _preload_content=False,
        _return_http_data_only=True,
    )
    tag = json.loads(response.data or b"{}").get("tag_name") or ""
    return "" if tag == "unknown" else tag


def _release(tag: str) -> tuple[int, ...] | None:
    match = re.match(r"^v?(\d+)\.(\d+)\.(\d+)", tag)
    return tuple(int(x) for x in match.groups()) if match else None


def check_backend(tag: str, minimum: str) -> None:
    """Raises :class:`BackendTooOld` (one line) when ``tag`` is a release older than ``minimum``.

    A pre-release of the minimum (``2.5.0-rc.1``) counts as older; an unparsable or empty tag
    only warns.
    """
    release, wanted = _release(tag), _release(minimum)
    if release is None:
        warnings.warn(
            f"the KFP server does not report a release ({tag or 'no tag_name'}); "
            f"kfp-edge needs {minimum} or later",
            stacklevel=2,
        )
        return
    prerelease = release == wanted and bool(re.match(r"^v?\d+\.\d+\.\d+-", tag))
    if release < wanted or prerelease:
        raise BackendTooOld(
            f"the KFP backend is {tag}; kfp-edge pipelines need {minimum} or later "
            "(see docs/deploy.md)"
        )


def run_url(client, host: str | None, ui_host: str | None, run_id: str) -> str:
    """Returns the UI address of a run (``<ui>/#/runs/details/<id>``)."""
    base = os.environ.get(UI_ENDPOINT_ENV) or ui_host or host
    if not base:
        base = client._get_url_prefix()  # kfp's own choice in-cluster: /pipeline
    if not base.startswith(("http://", "https://", "/")):
        base = "https://" + base
    return f"{base.rstrip('/')}/#/runs/details/{run_id}"


def submit(
    host: str | None = None,
    namespace: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    resources: str | None = None,
    arguments: dict | None = None,
    pipeline: str = "edge",
    run_name: str | None = None,
    service_account: str | None = None,
    ui_host: str | None = None,
    package: str | os.PathLike | None = None,
) -> dict:
    """Compiles a pipeline with a resource profile and creates a run on a KFP server.

    Args:
        host: KFP API address, e.g. ``http://localhost:8080``; None lets kfp.Client pick it
            (``KF_PIPELINES_ENDPOINT`` or the in-cluster address).
        namespace: Kubeflow profile namespace (multi-user deployments).
        experiment: Experiment name; created when it does not exist.
        resources: Resource profile name or YAML path (see :mod:`kfp_edge.resources`).
        arguments: Pipeline parameters; checked against the compiled pipeline's inputs.
        pipeline: Which pipeline to compile (``edge`` or ``retrain``).
        run_name: Display name of the run (default ``kfp-edge <pipeline> <timestamp>``).
        service_account: Kubernetes service account of the run's pods (default: the
            namespace's pipeline runner).
        ui_host: UI address for the printed link when it differs from ``host``.
        package: An already compiled pipeline YAML to submit instead of compiling one
            (``pipeline`` and ``resources`` are then not used).

    Returns:
        ``{"run_id", "experiment", "url", "arguments"}``.
    """
    import datetime as dt

    if package is not None and resources is not None:
        raise ValueError(
            "give either --package (already compiled) or --resources (to compile), not both"
        )
    with tempfile.TemporaryDirectory(prefix="kfp-edge-submit-") as tmp:
        if package is None:
            target = Path(tmp) / f"{pipeline}_pipeline.yaml"
            from kfp_edge.pipelines.compile import compile_pipeline

            package = compile_pipeline(pipeline, target, resources)
        elif not Path(package).is_file():
            raise FileNotFoundError(f"pipeline package {package} does not exist")
        typed = coerce_arguments(arguments or {}, pipeline_parameters(package))
        check_host(host)
        name = run_name or (
            f"kfp-edge {pipeline} {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H-%M-%S}"
        )
        with talking_to(host):
            client = make_client(host, namespace, ui_host)
            from kfp_edge.pipelines.edge_pipeline import MIN_KFP_BACKEND

            check_backend(backend_version(client), MIN_KFP_BACKEND)
            result = client.create_run_from_pipeline_package(
                str(package),
                arguments=typed,
                run_name=name,
                experiment_name=experiment,
                namespace=namespace,
                service_account=service_account,
            )
    return {
        "run_id": result.run_id,
        "experiment": experiment,
        "url": run_url(client, host, ui_host, result.run_id),
        "arguments": typed,
    }


# Run states of the KFP v2beta1 API after which a run changes no more.
FINAL_STATES = ("SUCCEEDED", "SKIPPED", "FAILED", "CANCELED")


def wait_for_run(client, run_id: str, host: str | None, poll_seconds: float = 10.0, say=print):
    """Follows a run until it ends, saying each new state; returns the final state.

    Args:
        client: The ``kfp.Client`` the run was created with.
        run_id: The run to follow.
        host: The API address (for error messages).
        poll_seconds: Seconds between two looks at the run.
        say: Where each new state is reported (one line per change).
    """
    last = None
    while True:
        with talking_to(host):
            state = str(client.get_run(run_id).state or "PENDING")
        state = state.rsplit(".", 1)[-1].upper()  # an enum name or its plain string
        if state != last:
            say(f"run {run_id}: {state}")
            last = state
        if state in FINAL_STATES:
            return state
        time.sleep(poll_seconds)


def register(subparsers) -> None:
    """Adds ``kfp-edge submit`` to the command line."""
    p = subparsers.add_parser(
        "submit",
        help="compile the pipeline and start a run on Kubeflow Pipelines",
        description="Compile the pipeline with a resource profile and create a run through "
        f"kfp.Client. Auth: ${TOKEN_ENV} (bearer token) or the in-cluster service-account "
        "token volume.",
    )
    p.add_argument("--host", default=None, help="KFP API URL (default: $KF_PIPELINES_ENDPOINT)")
    p.add_argument("--namespace", default=None, help="Kubeflow profile namespace")
    p.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="experiment name")
    p.add_argument(
        "--resources",
        default=None,
        help="resource profile: cpu-small, gpu-single, gpu-multi or a YAML file",
    )
    p.add_argument("--pipeline", default="edge", choices=("edge", "retrain"), help="which one")
    p.add_argument("--run-name", default=None, help="display name of the run")
    p.add_argument("--service-account", default=None, help="service account of the run's pods")
    p.add_argument("--ui-host", default=None, help="UI URL for the printed link")
    p.add_argument("--package", default=None, help="submit this compiled YAML as it is")
    p.add_argument("--wait", action="store_true", help="follow the run; exit 0 if it succeeds")
    p.add_argument("--poll-seconds", type=float, default=10.0, help="with --wait: poll interval")
    add_param_option(p)
    p.set_defaults(func=_cmd_submit)


def _cmd_submit(args) -> int:
    result = submit(
        host=args.host,
        namespace=args.namespace,
        experiment=args.experiment,
        resources=args.resources,
        arguments=parse_params(args.param),
        pipeline=args.pipeline,
        run_name=args.run_name,
        service_account=args.service_account,
        ui_host=args.ui_host,
        package=args.package,
    )
    print(f"run {result['run_id']} created in experiment {result['experiment']!r}")
    print(result["url"])
    if not args.wait:
        return 0
    with talking_to(args.host):
        client = make_client(args.host, args.namespace, args.ui_host)
    state = wait_for_run(client, result["run_id"], args.host, args.poll_seconds)
    return 0 if state in ("SUCCEEDED", "SKIPPED") else 1
