"""The model store commands: pull, rollback, models, push, keys, s3-check, check-credentials.

Imports neither TensorFlow nor PySpark (nor kfp): this is what runs on the edge device. Every
error of these commands, OS errors (disk full, permissions) and S3 errors included, prints one
line and exits 2; 0 means success (exit 1 stays the drift command's "drift detected").
"""

from __future__ import annotations

import functools
import sys


def _error_types() -> tuple:
    kinds = [ValueError, OSError, KeyError]
    try:
        from minio.error import MinioException
        from urllib3.exceptions import HTTPError

        kinds += [MinioException, HTTPError]
    except ImportError:
        pass
    return tuple(kinds)


def _one_line(exc: BaseException) -> str:
    if type(exc).__name__ == "S3Error":
        from kfp_edge.s3 import explain

        return f"S3 error {explain(exc)}"
    text = str(exc) or type(exc).__name__
    if isinstance(exc, KeyError):
        text = f"missing key {text}"
    return " ".join(text.split())


def _exits_2(func):
    """Wraps a command: any expected error becomes one line on stderr and exit status 2."""

    @functools.wraps(func)
    def run(args) -> int:
        try:
            return func(args)
        except _error_types() as exc:
            print(f"kfp-edge {args.command}: error: {_one_line(exc)}", file=sys.stderr)
            return 2

    return run


def register(subparsers) -> None:
    """Adds the ``pull``, ``push``, ``rollback``, ``models``, ``keys`` and ``s3-check`` commands.

    Args:
        subparsers: The ``add_subparsers()`` object of the ``kfp-edge`` parser.
    """
    p = subparsers.add_parser(
        "pull", help="download a verified model version and swap it into DEST atomically"
    )
    p.add_argument("--name", required=True, help="model name in the store")
    p.add_argument("--version", default="latest", help="version number or latest (default)")
    p.add_argument("--dest", required=True, help="destination directory on the device")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--workspace", help="workspace (PV) path holding models/")
    src.add_argument(
        "--s3",
        dest="s3_uri",
        help="s3://bucket/prefix; endpoint and credentials from KFP_EDGE_S3_* variables",
    )
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="GLOB",
        help="download only matching files, e.g. --only model.tflite --only '*.json' "
        "(repeatable; default: the whole version)",
    )
    p.add_argument(
        "--trusted-key",
        action="append",
        default=[],
        metavar="FILE",
        help="PEM public key a release must be signed by (repeatable; default: the files "
        "in KFP_EDGE_TRUSTED_KEYS)",
    )
    p.add_argument(
        "--allow-downgrade",
        action="store_true",
        help="install a version lower than the highest one installed before",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="re-check the installed release and replace it if a file is damaged",
    )
    p.add_argument(
        "--smoke-load",
        action="store_true",
        help="load the model with LiteRT before the swap (needs ai_edge_litert)",
    )
    p.set_defaults(func=_exits_2(_cmd_pull))

    u = subparsers.add_parser(
        "push", help="upload a version of the workspace store to S3 (manifest last)"
    )
    u.add_argument("--workspace", required=True, help="workspace (PV) path holding models/")
    u.add_argument("--name", required=True, help="model name in the store")
    u.add_argument("--version", default="latest", help="version number or latest (default)")
    u.add_argument("--s3", dest="s3_uri", required=True, help="s3://bucket/prefix")
    u.set_defaults(func=_exits_2(_cmd_push))

    r = subparsers.add_parser("rollback", help="make the previously pulled model current again")
    r.add_argument("--dest", required=True, help="destination directory of kfp-edge pull")
    r.set_defaults(func=_exits_2(_cmd_rollback))

    m = subparsers.add_parser("models", help="list the models and versions of a store")
    src = m.add_mutually_exclusive_group(required=True)
    src.add_argument("--workspace", help="workspace (PV) path holding models/")
    src.add_argument("--s3", dest="s3_uri", help="s3://bucket/prefix")
    m.add_argument("--name", default=None, help="only this model")
    m.set_defaults(func=_exits_2(_cmd_models))

    k = subparsers.add_parser("keys", help="make the Ed25519 key pair that signs releases")
    ksub = k.add_subparsers(dest="keys_command", required=True)
    g = ksub.add_parser("generate", help="write a new private and public key (PEM files)")
    g.add_argument("--private", required=True, help="new file for the private key (mode 0600)")
    g.add_argument("--public", required=True, help="new file for the public key (for devices)")
    g.set_defaults(func=_exits_2(_cmd_keys_generate))

    c = subparsers.add_parser(
        "s3-check", help="check that an S3 server honours what the model store relies on"
    )
    c.add_argument("--s3", dest="s3_uri", required=True, help="s3://bucket/prefix to probe")
    c.set_defaults(func=_exits_2(_cmd_s3_check))

    d = subparsers.add_parser(
        "check-credentials",
        help="refuse placeholder or shared MinIO keys before deploying the manifests",
    )
    d.add_argument("directory", help="the manifests directory with *.env files (manifests/base)")
    d.set_defaults(func=_exits_2(_cmd_check_credentials))


def _cmd_pull(args) -> int:
    from contextlib import nullcontext

    from kfp_edge.model_store.pull import pull

    guard = nullcontext()
    if args.s3_uri:
        from kfp_edge.s3 import readable_errors

        guard = readable_errors(args.s3_uri)
    with guard:
        result = pull(
            args.name,
            args.dest,
            args.version,
            workspace=args.workspace,
            s3_uri=args.s3_uri,
            only=args.only,
            trusted_keys=args.trusted_key,
            allow_downgrade=args.allow_downgrade,
            verify=args.verify,
            smoke_load=args.smoke_load,
        )
    if result["repaired"]:
        print(f"repaired {result['name']} version {result['version']} at {result['path']}")
    elif result["changed"]:
        previous = result["previous_version"]
        print(
            f"pulled {result['name']} version {result['version']} into {result['path']}"
            + (f" (previous: version {previous})" if previous is not None else "")
        )
    else:
        print(
            f"{result['name']} version {result['version']} is already current at {result['path']}"
        )
    return 0


def _cmd_push(args) -> int:
    from kfp_edge import s3
    from kfp_edge.model_store import s3_releases
    from kfp_edge.model_store.store import ModelStore
    from kfp_edge.model_versions import models_root

    directory = ModelStore(models_root(args.workspace)).get(args.name, args.version)
    bucket, prefix = s3.parse_s3_uri(args.s3_uri)
    conn = s3.connect_from_env()
    with s3.readable_errors(args.s3_uri):
        result = s3_releases.upload_version(conn, bucket, prefix, directory)
    print(
        f"uploaded {result['name']} version {result['version']} "
        f"to s3://{bucket}/{result['manifest_key']} ({result['objects']} objects)"
    )
    return 0


def _cmd_rollback(args) -> int:
    from kfp_edge.model_store.pull import rollback

    result = rollback(args.dest)
    print(
        f"rolled back: {result['name']} version {result['version']} is current at {result['path']}"
    )
    return 0


def _row(name: str, version: int, manifest: dict) -> tuple:
    return (name, version, manifest.get("created_at", ""), manifest.get("variant", ""))


def _cmd_models(args) -> int:
    rows = []
    if args.workspace:
        from kfp_edge.model_store.store import ModelStore
        from kfp_edge.model_versions import models_root

        store = ModelStore(models_root(args.workspace))
        for name in [args.name] if args.name else store.names():
            for version in store.versions(name):
                rows.append(_row(name, version, store.read_manifest(name, version)))
    else:
        from kfp_edge import s3
        from kfp_edge.model_store import s3_releases

        bucket, prefix = s3.parse_s3_uri(args.s3_uri)
        client = s3.client_from_env()
        with s3.readable_errors(args.s3_uri):
            for name in (
                [args.name] if args.name else s3_releases.list_names(client, bucket, prefix)
            ):
                for version in s3_releases.list_versions(client, bucket, prefix, name):
                    manifest = s3_releases.read_manifest(client, bucket, prefix, name, version)
                    rows.append(_row(name, version, manifest))
    if not rows:
        print("no models")
        return 0
    latest = {}
    for name, version, *_ in rows:
        latest[name] = max(latest.get(name, 0), version)
    header = ("name", "version", "created", "variant", "latest")
    lines = [(n, str(v), c, var, "*" if latest[n] == v else "") for n, v, c, var in rows]
    widths = [max(len(c) for c in col) for col in zip(header, *lines, strict=False)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    print(fmt.format(*header))
    for line in lines:
        print(fmt.format(*line))
    return 0


def _cmd_keys_generate(args) -> int:
    from kfp_edge.model_store.signing import generate_keys

    key_id = generate_keys(args.private, args.public)
    print(
        f"wrote private key {args.private} (keep it in a Kubernetes Secret only) and public "
        f"key {args.public} (install it on devices); key id {key_id}"
    )
    return 0


def _cmd_s3_check(args) -> int:
    from kfp_edge import s3
    from kfp_edge.model_store.s3_check import check_server

    bucket, prefix = s3.parse_s3_uri(args.s3_uri)
    with s3.readable_errors(args.s3_uri):
        results = check_server(s3.connect_from_env(), bucket, prefix)
    for name, ok, detail in results:
        print(f"{'ok  ' if ok else 'FAIL'}  {name}: {detail}")
    failed = [name for name, ok, _ in results if not ok]
    if failed:
        raise ValueError(f"{args.s3_uri}: the server does not honour {', '.join(failed)}")
    return 0


def _cmd_check_credentials(args) -> int:
    from kfp_edge.model_store.credentials_check import check_credentials

    problems = check_credentials(args.directory)
    for problem in problems[:-1]:
        print(problem, file=sys.stderr)
    if problems:
        raise ValueError(f"{problems[-1]}; do not deploy with these credentials")
    print(f"{args.directory}: every credential file is set, with its own keys")
    return 0
