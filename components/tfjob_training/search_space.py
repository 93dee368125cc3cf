"""The hyperparameter search space of the training step, and the suggestions drawn from it.

One spec, two engines: the same space becomes the ``parameters`` of a Katib Experiment on the
cluster (:mod:`kfp_edge.tfjob_training.katib`) and the trials of the local search
(:mod:`kfp_edge.tfjob_training.local_search`). A space maps trainer arguments to ranges::

    {
        "learning_rate": {"type": "double", "min": 0.005, "max": 0.08, "scale": "log"},
        "width": {"type": "int", "min": 32, "max": 128, "step": 32},
        "model": {"type": "categorical", "values": ["mlp", "cnn1d"]},
    }

Algorithms (Katib's names): ``random`` (seeded draws, log-uniform where ``scale: log``) and
``grid`` (every combination, doubles at ``grid_points`` values, in Katib's order: the last
parameter varies fastest). Katib's Bayesian and TPE suggestions need its suggestion services;
they are named by :data:`ALGORITHMS` for the cluster and refused by the local engine.
"""

from __future__ import annotations

import itertools
import math
import random

SEARCHABLE = {
    "learning_rate": float,
    "batch_size": int,
    "epochs": int,
    "width": int,
    "depth": int,
    "model": str,
}
LOCAL_ALGORITHMS = ("random", "grid")
ALGORITHMS = (*LOCAL_ALGORITHMS, "bayesianoptimization", "tpe")
TYPES = ("double", "int", "categorical")


def validate_space(space: dict) -> dict:
    """Checks a search space and returns it normalised (every field explicit).

    Raises:
        ValueError: Naming the parameter and the field that is wrong; all problems at once.
    """
    if not isinstance(space, dict) or not space:
        raise ValueError("search space: expected a non-empty mapping of parameter -> range")
    problems, normalised = [], {}
    for name, spec in space.items():
        try:
            normalised[name] = _validate_parameter(name, spec)
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise ValueError("search space: " + "; ".join(problems))
    return normalised


def _validate_parameter(name: str, spec) -> dict:
    if name not in SEARCHABLE:
        raise ValueError(f"{name}: not searchable; choose from {', '.join(SEARCHABLE)}")
    if not isinstance(spec, dict) or spec.get("type") not in TYPES:
        raise ValueError(f"{name}.type: expected one of {', '.join(TYPES)}")
    kind = spec["type"]
    if kind == "categorical":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise ValueError(f"{name}.values: expected a non-empty list")
        return {"type": kind, "values": list(values)}
    low, high = spec.get("min"), spec.get("max")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        raise ValueError(f"{name}.min/max: expected numbers")
    if low > high:
        raise ValueError(f"{name}: min {low} > max {high}")
    scale = spec.get("scale", "linear")
    if scale not in ("linear", "log") or (scale == "log" and low <= 0):
        raise ValueError(f"{name}.scale: 'linear', or 'log' with min > 0")
    out = {"type": kind, "min": low, "max": high, "scale": scale}
    if kind == "int":
        out["min"], out["max"] = int(low), int(high)
        out["step"] = int(spec.get("step", 1))
        if out["step"] < 1:
            raise ValueError(f"{name}.step: expected a positive integer")
    return out


def grid_values(spec: dict, grid_points: int = 3) -> list:
    """Returns the grid of one parameter: categories, int steps, or evenly spaced doubles."""
    if spec["type"] == "categorical":
        return list(spec["values"])
    if spec["type"] == "int":
        return list(range(spec["min"], spec["max"] + 1, spec["step"]))
    if grid_points == 1 or spec["min"] == spec["max"]:
        return [float(spec["min"])]
    if spec["scale"] == "log":
        a, b = math.log(spec["min"]), math.log(spec["max"])
        return [math.exp(a + (b - a) * i / (grid_points - 1)) for i in range(grid_points)]
    step = (spec["max"] - spec["min"]) / (grid_points - 1)
    return [spec["min"] + step * i for i in range(grid_points)]


def _draw(spec: dict, rng: random.Random):
    if spec["type"] == "categorical":
        return rng.choice(spec["values"])
    if spec["type"] == "int":
        return rng.choice(range(spec["min"], spec["max"] + 1, spec["step"]))
    if spec["scale"] == "log":
        return math.exp(rng.uniform(math.log(spec["min"]), math.log(spec["max"])))
    return rng.uniform(spec["min"], spec["max"])


def suggest(
    space: dict, algorithm: str, max_trials: int, seed: int = 42, grid_points: int = 3
) -> list[dict]:
    """Returns the assignments of the trials, in the order they start.

    Args:
        space: A search space (see the module docstring).
        algorithm: ``random`` or ``grid``.
        max_trials: How many trials at most (the grid is cut to this many).
        seed: Seed of ``random``.
        grid_points: Values per double parameter in ``grid``.

    Raises:
        ValueError: For an unknown algorithm, a bad space or ``max_trials < 1``.
    """
    space = validate_space(space)
    if algorithm not in LOCAL_ALGORITHMS:
        raise ValueError(
            f"search algorithm {algorithm!r}: the local engine runs {', '.join(LOCAL_ALGORITHMS)}"
            f" (Katib on the cluster also runs {', '.join(ALGORITHMS[2:])})"
        )
    if max_trials < 1:
        raise ValueError(f"max_trials must be at least 1, got {max_trials}")
    names = list(space)
    if algorithm == "grid":
        grid = itertools.product(*(grid_values(space[n], grid_points) for n in names))
        return [
            dict(zip(names, values, strict=True)) for values in itertools.islice(grid, max_trials)
        ]
    rng = random.Random(seed)
    return [{n: _draw(space[n], rng) for n in names} for _ in range(max_trials)]


def as_trainer_options(assignment: dict) -> dict:
    """Casts one assignment to the trainer's argument types (ints stay ints)."""
    return {name: SEARCHABLE[name](value) for name, value in assignment.items()}
