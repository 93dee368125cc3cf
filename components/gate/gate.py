"""The edge gate: service levels against the evaluation, and the choice of one variant.

:func:`decide` is pure: it takes the evaluation dict (``evaluation.json``), the service levels
and the champion (the published model scored on the same rows, or None), and returns the
decision with the reason every variant passed or lost. A variant passes when it meets every
service level: accuracy (the point estimate or the lower bound of its 95 % interval), accuracy
and per-class recall against the float reference, against the champion, shipped size, latency
and peak memory. The passing variants are ranked by shipped size, then accuracy, then latency
with ties within measurement noise (:mod:`kfp_edge.gate.ranking`), so the choice is stable.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from kfp_edge.gate.champion import class_recall_deltas, compare
from kfp_edge.gate.config import GateConfig
from kfp_edge.gate.ranking import rank, why_not_chosen
from kfp_edge.stage_config import defaults

# The service levels and their defaults: one source, the stage config.
DEFAULT_SLO = defaults(GateConfig)
SLO_KEYS = tuple(DEFAULT_SLO)
ACCURACY_BOUNDS = ("point", "lower")
_FRACTIONS = ("min_accuracy", "max_accuracy_drop", "max_class_recall_drop", "max_regression")


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
    if out["accuracy_bound"] not in ACCURACY_BOUNDS:
        raise ValueError(
            f"accuracy_bound: {out['accuracy_bound']!r} is not one of {list(ACCURACY_BOUNDS)}"
        )
    for key in SLO_KEYS:
        value = out[key]
        if key == "accuracy_bound":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{key}: expected a number, got {value!r}")
        if value < 0:
            raise ValueError(f"{key}: {value} must not be negative")
        if key in _FRACTIONS and value > 1:
            raise ValueError(f"{key}: {value} is above 1")
    return out


def _accuracy_reasons(variant: dict, reference: dict, slo: dict) -> list[tuple[str, float]]:
    """Accuracy against min_accuracy and the float reference: ``[(reason, shortfall)]``."""
    out = []
    accuracy = float(variant["accuracy"])
    if slo["accuracy_bound"] == "lower":
        low = float((variant.get("accuracy_interval") or [accuracy])[0])
        if low < slo["min_accuracy"]:
            out.append(
                (
                    f"accuracy lower 95 % bound {low:.4f} (accuracy {accuracy:.4f}) < "
                    f"min_accuracy {slo['min_accuracy']:.4f}",
                    (slo["min_accuracy"] - low) / max(slo["min_accuracy"], 1e-9),
                )
            )
    elif accuracy < slo["min_accuracy"]:
        out.append(
            (
                f"accuracy {accuracy:.4f} < min_accuracy {slo['min_accuracy']:.4f}",
                (slo["min_accuracy"] - accuracy) / max(slo["min_accuracy"], 1e-9),
            )
        )
    if reference.get("accuracy") is not None:
        drop = float(reference["accuracy"]) - accuracy
        if drop > slo["max_accuracy_drop"] + 1e-12:
            out.append(
                (
                    f"accuracy drop {drop:.4f} vs reference {float(reference['accuracy']):.4f} "
                    f"> max_accuracy_drop {slo['max_accuracy_drop']:.4f}",
                    (drop - slo["max_accuracy_drop"]) / max(float(reference["accuracy"]), 1e-9),
                )
            )
    for name, delta in class_recall_deltas(variant, reference).items():
        if -delta > slo["max_class_recall_drop"] + 1e-12:
            out.append(
                (
                    f"class {name!r} recall {variant['per_class'][name]['recall']:.4f} drops "
                    f"{-delta:.4f} vs reference > max_class_recall_drop "
                    f"{slo['max_class_recall_drop']:.4f}",
                    -delta - slo["max_class_recall_drop"],
                )
            )
    return out


def _resource_reasons(variant: dict, slo: dict) -> list[tuple[str, float]]:
    """Shipped size, latency, peak memory and ops: ``[(reason, relative shortfall)]``."""
    out = []
    shipped = int(variant["shipped_bytes"])
    if shipped > slo["max_size_bytes"]:
        out.append(
            (
                f"shipped size {shipped:,} B > max_size_bytes {int(slo['max_size_bytes']):,} B",
                (shipped - slo["max_size_bytes"]) / max(slo["max_size_bytes"], 1),
            )
        )
    for q in ("p50", "p95"):
        limit = slo[f"max_latency_{q}_us"]
        value = float(variant["latency_us"][q])
        if value > limit:
            out.append(
                (
                    f"latency {q} {value:.1f} µs > max_latency_{q}_us {limit:.1f} µs",
                    (value - limit) / max(limit, 1e-9),
                )
            )
    peak = variant.get("peak_memory_bytes")
    if peak is not None and peak > slo["max_peak_memory_bytes"]:
        limit = int(slo["max_peak_memory_bytes"])
        out.append(
            (
                f"peak memory {int(peak):,} B > max_peak_memory_bytes {limit:,} B",
                (peak - limit) / max(limit, 1),
            )
        )
    if variant.get("ops_ok") is False:
        ops = variant.get("select_tf_ops") or ["custom ops"]
        out.append((f"not builtin-only: needs {', '.join(ops)}", 1.0))
    return out


def _check_variant(variant: dict, reference: dict, champion: dict | None, slo: dict) -> tuple:
    """Returns ``(reasons, shortfall, vs_champion)`` of one variant."""
    name = variant.get("name", "?")
    for field in ("accuracy", "shipped_bytes", "latency_us"):
        if field not in variant:
            raise ValueError(f"evaluation: variant {name!r} has no {field!r}")
    found = _accuracy_reasons(variant, reference, slo) + _resource_reasons(variant, slo)
    reasons = [r for r, _ in found]
    shortfall = sum(s for _, s in found)
    vs_champion = None
    if champion and champion.get("comparable"):
        vs_champion, refused = compare(
            variant, champion, slo["max_regression"], slo["max_class_recall_drop"]
        )
        reasons += refused
        shortfall += len(refused) * 0.01 - min(0.0, vs_champion["accuracy_delta"])
    return reasons, shortfall, vs_champion


def decide(evaluation: dict, slo: dict, champion: dict | None = None) -> dict:
    """Checks every variant against the service levels and the champion, and picks one.

    Args:
        evaluation: The evaluation dict: ``{"reference": {"accuracy", "per_class", ...} or
            None, "variants": [{"name", "path", "accuracy", "accuracy_interval", "per_class",
            "shipped_bytes", "latency_us": {"p50", "p95", "p50_noise"}, "peak_memory_bytes",
            "ops_ok", ...}]}``.
        slo: Service levels (keys of :data:`SLO_KEYS`; missing ones take :data:`DEFAULT_SLO`).
        champion: The published model scored on the same rows
            (:func:`kfp_edge.gate.champion.score_champion`), or None.

    Returns:
        ``{"chosen": name or None, "chosen_path": path or None, "slo": {...},
        "reference_accuracy", "champion": champion or None, "ranking": [names, best first],
        "results": {name: {"passed", "reasons", "vs_champion", "browser_ready"}},
        "nearest_misses": [{"name", "reasons", "shortfall"}, ...] (failing variants, nearest
        first)}``.

    Raises:
        ValueError: Bad service levels, or an evaluation without variants or figures.
    """
    slo = check_slo(slo)
    variants = evaluation.get("variants") or []
    unrunnable = evaluation.get("unrunnable") or []
    if not variants and not unrunnable:
        raise ValueError("evaluation: no variants to gate")
    reference = evaluation.get("reference") or {}
    results, passing, misses = {}, [], []
    for variant in variants:
        reasons, shortfall, vs_champion = _check_variant(variant, reference, champion, slo)
        results[variant["name"]] = {
            "passed": not reasons,
            "reasons": reasons,
            "vs_champion": vs_champion,
        }
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
        results[variant["name"]] = {"passed": False, "reasons": reasons, "vs_champion": None}
        misses.append({"name": variant["name"], "reasons": reasons, "shortfall": 1.0})
    ranking = rank(passing, float(slo["latency_tie_fraction"]))
    chosen = ranking[0] if ranking else None
    for variant in ranking[1:]:
        results[variant["name"]]["reasons"] = [
            why_not_chosen(variant, chosen, float(slo["latency_tie_fraction"]))
        ]
    misses.sort(key=lambda m: (m["shortfall"], m["name"]))
    return {
        "chosen": chosen["name"] if chosen else None,
        "chosen_path": chosen.get("path") if chosen else None,
        "slo": slo,
        "reference_accuracy": reference.get("accuracy"),
        "champion": champion,
        "ranking": [v["name"] for v in ranking],
        "results": results,
        "nearest_misses": misses[:3],
    }


def comparison_metrics(chosen: dict, champion: dict | None) -> dict[str, float]:
    """The chosen variant and the champion side by side, as flat KFP metrics.

    Names: ``chosen_accuracy``, ``chosen_accuracy_low``, ``chosen_accuracy_high``,
    ``chosen_recall_<class>``, the same with ``champion_`` when a comparable champion was
    scored, and ``champion_version``.
    """
    out = {}
    sides = [("chosen", chosen)]
    if champion and champion.get("comparable"):
        sides.append(("champion", champion))
        out["champion_version"] = float(champion["version"])
    for prefix, figures in sides:
        low, high = figures.get("accuracy_interval") or (figures["accuracy"],) * 2
        out[f"{prefix}_accuracy"] = float(figures["accuracy"])
        out[f"{prefix}_accuracy_low"] = float(low)
        out[f"{prefix}_accuracy_high"] = float(high)
        for name, per_class in (figures.get("per_class") or {}).items():
            out[f"{prefix}_recall_{name}"] = float(per_class["recall"])
    return out


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
    workspace: str | os.PathLike,
    run_id: str,
    evaluation_path: str | os.PathLike,
    slo: dict,
    model_name: str = "",
    data_dir: str | os.PathLike = "",
) -> dict:
    """Scores the champion, decides, records the decision in the report, fails if none passed.

    Args:
        workspace: Root of the workspace volume.
        run_id: The run id.
        evaluation_path: The evaluation step's ``evaluation.json``.
        slo: Service levels (see :func:`decide`).
        model_name: The model's name in the store; its latest published version is the
            champion. Empty: no champion comparison.
        data_dir: The dataset (ETL output contract) whose ``evaluation["split"]`` the
            challengers were scored on; the champion is scored on the same rows. The
            retraining pipeline passes recent labelled data here (and evaluates on it).

    Returns:
        The decision (see :func:`decide`).

    Raises:
        FileNotFoundError: If the evaluation file is missing.
        ValueError: Bad evaluation or service levels, or data that do not fit the evaluation.
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
    champion = None
    if model_name and data_dir:
        champion = _score_champion_on_evaluation_rows(workspace, model_name, data_dir, evaluation)
    decision = decide(evaluation, slo, champion)
    update_report(run_dir(workspace, run_id), "gate", decision)
    if decision["chosen"] is None:
        raise GateFailed(failure_message(decision))
    return decision


def _score_champion_on_evaluation_rows(workspace, model_name, data_dir, evaluation) -> dict:
    """Scores the champion on the split the evaluation used, checking the rows match."""
    from kfp_edge.dataset import load_split, read_manifest
    from kfp_edge.gate.champion import score_champion

    split = evaluation.get("split", "test")
    manifest = read_manifest(data_dir)
    if split not in manifest["splits"]:
        raise ValueError(f"{data_dir}: the dataset has no split {split!r} (the evaluation's)")
    x, y = load_split(data_dir, split)
    if "rows" in evaluation and int(evaluation["rows"]) != len(y):
        raise ValueError(
            f"{data_dir}: split {split!r} has {len(y)} rows but the evaluation scored "
            f"{evaluation['rows']}: champion and challengers must be scored on the same rows"
        )
    classes = [str(c) for c in evaluation.get("classes") or manifest["classes"]]
    return score_champion(
        workspace, model_name, x, y, classes, int(evaluation.get("num_threads", 1))
    )
