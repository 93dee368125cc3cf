"""Pipeline parameters on the command line: one ``--param NAME=VALUE`` syntax, checked names.

``kfp-edge run``, ``kfp-edge submit`` and the recurring-run example read parameters the same way:
values are YAML (numbers, lists, booleans), names are checked against the pipeline's inputs and
a mistyped name is answered with the nearest valid ones.
"""

from __future__ import annotations

import difflib
import json
import os

# Parameter types of the kfp v2 IR -> Python types a run's runtime config carries.
_IR_TYPES = {
    "STRING": str,
    "NUMBER_INTEGER": int,
    "NUMBER_DOUBLE": float,
    "BOOLEAN": bool,
    "LIST": list,
    "STRUCT": dict,
}


def add_param_option(parser) -> None:
    """Adds the repeatable ``--param NAME=VALUE`` option to a command's parser."""
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="pipeline parameter, value read as YAML (repeatable; run --help lists them)",
    )


def parse_params(pairs: list[str]) -> dict:
    """Parses ``NAME=VALUE`` pairs; values are read as YAML (numbers, lists, booleans).

    Raises:
        ValueError: If a pair has no ``=`` or its value is not valid YAML.
    """
    import yaml

    params = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"pipeline parameter {pair!r} is not NAME=VALUE")
        try:
            params[name.strip()] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError as exc:
            raise ValueError(f"pipeline parameter {name.strip()}: {value!r} is not YAML") from exc
    return params


def unknown_name(name: str, valid, what: str = "pipeline parameter") -> str:
    """Returns the message for an unknown name: the nearest valid names, or all of them."""
    valid = sorted(valid)
    near = difflib.get_close_matches(name, valid, n=3, cutoff=0.6)
    if near:
        return f"unknown {what} {name!r}; did you mean {' or '.join(near)}?"
    return f"unknown {what} {name!r}; valid names: {', '.join(valid)}"


def pipeline_parameters(package: str | os.PathLike) -> dict:
    """Returns ``{name: IR parameter type}`` of a compiled pipeline's inputs."""
    import yaml

    with open(package, encoding="utf-8") as f:
        spec = next(d for d in yaml.safe_load_all(f) if d)
    params = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    return {name: p["parameterType"] for name, p in params.items()}


def function_parameters(pipeline) -> dict:
    """Returns ``{name: IR parameter type}`` of a ``@dsl.pipeline`` function's inputs."""
    from kfp.pipeline_spec import pipeline_spec_pb2

    names = pipeline_spec_pb2.ParameterType.ParameterTypeEnum.Name
    params = pipeline.pipeline_spec.root.input_definitions.parameters
    return {name: names(p.parameter_type) for name, p in params.items()}


def coerce_arguments(raw: dict, parameters: dict) -> dict:
    """Checks ``name=value`` arguments against the pipeline's parameters and converts them.

    Args:
        raw: Arguments as parsed from the command line (YAML scalars, lists, mappings).
        parameters: ``{name: IR parameter type}`` (:func:`pipeline_parameters`,
            :func:`function_parameters`).

    Returns:
        The arguments with the types the pipeline declares.

    Raises:
        ValueError: Unknown parameter (with the nearest valid names), or a value that does not
            fit its type (naming both).
    """
    out = {}
    for name, value in raw.items():
        if name not in parameters:
            raise ValueError(unknown_name(name, parameters))
        kind = parameters[name]
        expected = _IR_TYPES.get(kind)
        if expected is str:
            value = "" if value is None else value if isinstance(value, str) else json.dumps(value)
        elif expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        ok = expected is None or (
            isinstance(value, expected) and not (expected is not bool and isinstance(value, bool))
        )
        if not ok:
            raise ValueError(
                f"pipeline parameter {name}={value!r}: expected {kind.lower().replace('_', ' ')}"
            )
        out[name] = value
    return out


def describe(pipeline, skip=("workspace", "run_id")) -> str:
    """Returns a help text listing a pipeline's parameters: name, default and description."""
    rows = []
    for name, spec in sorted(pipeline.component_spec.inputs.items()):
        if name in skip:
            continue
        default = json.dumps(spec.default) if spec.default is not None else "-"
        rows.append(f"  {name:<20} {default:<12} {' '.join((spec.description or '').split())}")
    return "pipeline parameters (--param NAME=VALUE), with their defaults:\n" + "\n".join(rows)
