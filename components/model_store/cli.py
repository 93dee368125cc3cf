"""``kfp-edge pull``, ``kfp-edge rollback``, ``kfp-edge models`` and ``kfp-edge push``.

Imports neither TensorFlow nor PySpark (nor kfp): this is what runs on the edge device.
"""

from __future__ import annotations


def register(subparsers) -> None:
    """Adds the ``pull``, ``push``, ``rollback`` and ``models`` subcommands.

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
    p.set_defaults(func=_cmd_pull)

    u = subparsers.add_parser(
        "push", help="upload a version of the workspace store to S3 (manifest last)"
    )
    u.add_argument("--workspace", required=True, help="workspace (PV) path holding models/")
    u.add_argument("--name", required=True, help="model name in the store")
    u.add_argument("--version", default="latest", help="version number or latest (default)")
    u.add_argument("--s3", dest="s3_uri", required=True, help="s3://bucket/prefix")
    u.set_defaults(func=_cmd_push)

    r = subparsers.add_parser("rollback", help="make the previously pulled model current again")
    r.add_argument("--dest", required=True, help="destination directory of kfp-edge pull")
    r.set_defaults(func=_cmd_rollback)

    m = subparsers.add_parser("models", help="list the models and versions of a store")
    src = m.add_mutually_exclusive_group(required=True)
    src.add_argument("--workspace", help="workspace (PV) path holding models/")
    src.add_argument("--s3", dest="s3_uri", help="s3://bucket/prefix")
    m.add_argument("--name", default=None, help="only this model")
    m.set_defaults(func=_cmd_models)


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
        )
    if result["changed"]:
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
    client = s3.client_from_env()
    with s3.readable_errors(args.s3_uri):
        result = s3_releases.upload_version(client, bucket, prefix, directory)
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
