"""One source for each stage's parameters: a frozen dataclass per stage with one-line docs.

Each stage's logic module declares its tunable parameters once::

    @dataclass(frozen=True)
    class TrainingConfig:
        epochs: int = param(100, "Training epochs.")

The pipelines take their defaults from it (``epochs: int = TrainingConfig.epochs``), and so do
``kfp-edge run`` and ``run_local`` through the pipelines. Lightweight kfp components must keep
literal defaults in their signatures (kfp ships the function's source alone), so a test checks
that each component's literal defaults equal its stage config's (:func:`mismatched_defaults`).
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any


def param(default: Any, doc: str) -> Any:
    """Declares one stage parameter: its default and a one-line description.

    Args:
        default: The default value (lists and dicts are copied for each instance).
        doc: What the parameter does, in one line.
    """
    if isinstance(default, (list, dict)):
        return dataclasses.field(
            default_factory=lambda: type(default)(default), metadata={"doc": doc}
        )
    return dataclasses.field(default=default, metadata={"doc": doc})


def defaults(config: type) -> dict[str, Any]:
    """Returns parameter name -> default of a stage config class."""
    return {f.name: getattr(config(), f.name) for f in dataclasses.fields(config)}


def docs(config: type) -> dict[str, str]:
    """Returns parameter name -> one-line description of a stage config class."""
    return {f.name: f.metadata.get("doc", "") for f in dataclasses.fields(config)}


def mismatched_defaults(function, config: type) -> list[str]:
    """Lists the parameters whose literal default in ``function`` differs from the config's.

    Args:
        function: A component's Python function (``component.python_func``) or any callable.
        config: The stage config class.

    Returns:
        One line per mismatch, ``name: signature says X, config says Y``; empty when they agree.
    """
    wanted = defaults(config)
    problems = []
    for name, parameter in inspect.signature(function).parameters.items():
        if name in wanted and parameter.default is not inspect.Parameter.empty:
            if parameter.default != wanted[name]:
                problems.append(
                    f"{name}: signature says {parameter.default!r}, config says {wanted[name]!r}"
                )
    return problems
