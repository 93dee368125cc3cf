"""The edge gate: service levels against the evaluation, and the choice of one variant.

:func:`decide` is pure: it takes the evaluation dict (``evaluation.json``) and the service
levels, and returns the decision with the reason every variant passed or lost. The gate picks
the smallest passing variant, then the fastest (p50), then the name, so the choice is
deterministic.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

SLO_KEYS = (
    "min_accuracy",
    "max_accuracy_drop",
    "max_size_bytes",
    "max_latency_p50_us",
    "max_latency_p95_us",
)
DEFAULT_SLO = {
    "min_accuracy": 0.9,
    "max_accuracy_drop": 0.05,
    "max_size_bytes": 10_000_000,
    "max_latency_p50_us": 10_000.0,
    "max_latency_p95_us": 50_000.0,
}


class GateFailed(RuntimeError):
    """No variant meets the service levels; the message lists the nearest misses."""


def check_slo(slo: dict) -> dict:
    """Returns the service levels with defaults filled in.

    Raises:
        ValueError: An unknown key or a value out of range (named).
    """
    unknown = sorted(set(slo) - set(SLO_KEYS))
    if unknown:
        raise ValueError(f"unknown service level {unknown[0]!r}; known: {list(SLO_KEYS)}")
    out = {**DEFAULT_SLO, **{k: v for k, v in slo.items() if v is not None}}
    for key in SLO_KEYS:
        value = out[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{key}: expected a number, got {value!r}")
        if value < 0:
            raise ValueError(f"{key}: {value} must not be negative")
    if out["min_accuracy"] > 1:
        raise ValueError(f"min_accuracy: {out['min_accuracy']} is above 1")
    return out


def _check_variant(variant: dict, reference_accuracy: float | None, slo: dict) -> tuple:
    """Returns ``(reasons, shortfall)``: why the variant fails and by how much (relative)."""
    reasons, shortfall = [], 0.0
    name = variant.get("name", "?")
    for field in ("accuracy", "size_bytes", "latency_us"):
        if field not in variant:
            raise ValueError(f"evaluation: variant {name!r} has no {field!r}")
    accuracy = float(variant["accuracy"])
    if accuracy < slo["min_accuracy"]:
        reasons.append(f"accuracy {accuracy:.4f} < min_accuracy {slo['min_accuracy']:.4f}")
        shortfall += (slo["min_accuracy"] - accuracy) / max(slo["min_accuracy"], 1e-9)
    if reference_accuracy is not None:
        drop = reference_accuracy - accuracy
        if drop > slo["max_accuracy_drop"] + 1e-12:
            reasons.append(
                f"accuracy drop {drop:.4f} vs reference {reference_accuracy:.4f} > "
                f"max_accuracy_drop {slo['max_accuracy_drop']:.4f}"
            )
            shortfall += (drop - slo["max_accuracy_drop"]) / max(reference_accuracy, 1e-9)
    size = int(variant["size_bytes"])
    if size > slo["max_size_bytes"]:
        reasons.append(f"size {size:,} B > max_size_bytes {int(slo['max_size_bytes']):,} B")
        shortfall += (size - slo["max_size_bytes"]) / max(slo["max_size_bytes"], 1)
    for q in ("p50", "p95"):
        limit = slo[f"max_latency_{q}_us"]
        value = float(variant["latency_us"][q])
        if value > limit:
            reasons.append(f"latency {q} {value:.1f} µs > max_latency_{q}_us {limit:.1f} µs")
            shortfall += (value - limit) / max(limit, 1e-9)
    if variant.get("ops_ok") is False:
        ops = variant.get("select_tf_ops") or ["custom ops"]
        reasons.append(f"not builtin-only: needs {', '.join(ops)}")
        shortfall += 1.0
    return reasons, shortfall


def decide(evaluation: dict, slo: dict) -> dict:
    """Checks every variant against the service levels and picks one.

    Args:
        evaluation: The evaluation dict: ``{"reference": {"accuracy", ...} or None,
            "variants": [{"name", "path", "accuracy", "size_bytes", "latency_us": {"p50",
            "p95"}, "ops_ok", ...}]}``.
        slo: Service levels (keys of :data:`SLO_KEYS`; missing ones take :data:`DEFAULT_SLO`).

    Returns:
        ``{"chosen": name or None, "chosen_path": path or None, "slo": {...},
        "reference_accuracy", "results": {name: {"passed", "reasons", "browser_ready"}},
        "nearest_misses":
        [{"name", "reasons", "shortfall"}, ...] (failing variants, nearest first)}``.

    Raises:
        ValueError: Bad service levels, or an evaluation without variants or figures.
    """
    slo = check_slo(slo)
    variants = evaluation.get("variants") or []
    unrunnable = evaluation.get("unrunnable") or []
    if not variants and not unrunnable:
        raise ValueError("evaluation: no variants to gate")
    reference = evaluation.get("reference") or {}
    reference_accuracy = reference.get("accuracy")
    results, passing, misses = {}, [], []
    for variant in variants:
        reasons, shortfall = _check_variant(variant, reference_accuracy, slo)
        results[variant["name"]] = {"passed": not reasons, "reasons": reasons}
        if "browser" in variant:  # informational: whether LiteRT.js runs its batch-1 copy
            results[variant["name"]]["browser_ready"] = variant["browser"]["browser_ready"]
        if reasons:
            misses.append(
                {"name": variant["name"], "reasons": reasons, "shortfall": round(shortfall, 6)}
            )
        else:
            passing.append(variant)
    for variant in unrunnable:
        ops = variant.get("select_tf_ops") or variant.get("custom_ops") or ["unsupported ops"]
        reasons = [f"not builtin-only: needs {', '.join(ops)}; LiteRT cannot run it"]
        results[variant["name"]] = {"passed": False, "reasons": reasons}
        misses.append({"name": variant["name"], "reasons": reasons, "shortfall": 1.0})
    passing.sort(key=lambda v: (int(v["size_bytes"]), float(v["latency_us"]["p50"]), v["name"]))
    chosen = passing[0] if passing else None
    if chosen is not None:
        for variant in passing[1:]:
            results[variant["name"]]["reasons"] = [
                f"passed, but {chosen['name']!r} is smaller or as small and faster "
                f"({int(chosen['size_bytes']):,} B, p50 {float(chosen['latency_us']['p50']):.1f}"
                f" µs vs {int(variant['size_bytes']):,} B, p50 "
                f"{float(variant['latency_us']['p50']):.1f} µs)"
            ]
    misses.sort(key=lambda m: (m["shortfall"], m["name"]))
    return {
        "chosen": chosen["name"] if chosen else None,
        "chosen_path": chosen.get("path") if chosen else None,
        "slo": slo,
        "reference_accuracy": reference_accuracy,
        "results": results,
        "nearest_misses": misses[:3],
    }


def failure_message(decision: dict) -> str:
    """Returns the message of a failed gate: the service levels and the nearest misses."""
    lines = [
        "no variant meets the service levels "
        + ", ".join(f"{k}={v}" for k, v in decision["slo"].items())
        + "; nearest misses:"
    ]
    for miss in decision["nearest_misses"]:
        lines.append(f"  {miss['name']}: " + "; ".join(miss["reasons"]))
    return "\n".join(lines)


def run_gate(
    workspace: str | os.PathLike, run_id: str, evaluation_path: str | os.PathLike, slo: dict
) -> dict:
    """Decides, records the decision in the run report, then fails if nothing passed.

    Args:
        workspace: Root of the workspace volume.
        run_id: The run id.
        evaluation_path: The evaluation step's ``evaluation.json``.
        slo: Service levels (see :func:`decide`).

    Returns:
        The decision (see :func:`decide`).

    Raises:
        FileNotFoundError: If the evaluation file is missing.
        GateFailed: If no variant passes (after the decision is in the report).
    """
    from kfp_edge.workspace import run_dir, update_report

    path = Path(evaluation_path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no evaluation; did the evaluation step finish?")
    try:
        evaluation = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from exc
    decision = decide(evaluation, slo)
    update_report(run_dir(workspace, run_id), "gate", decision)
    if decision["chosen"] is None:
        raise GateFailed(failure_message(decision))
    return decision
