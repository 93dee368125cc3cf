"""The order of the passing variants: shipped size, then accuracy, then latency beyond noise.

Shipped size and accuracy are deterministic (the same bytes, the same predictions on the same
rows), so they are compared exactly. Latency is not: two runs of the same model differ, and two
variants of the same shape (``pruned_int8`` and ``full_int8`` have the same dense kernels) have
p50s a few hundredths of a microsecond apart whose order flips from run to run. The evaluation
times all variants side by side in interleaved rounds, so drift hits them alike; two p50s are
still a tie when they differ by less than the sum of their measured noises
(``latency_us.p50_noise``, see :func:`kfp_edge.litert.latency_summary`) or by less than
``tie_fraction`` of the faster one, a floor for the drift between runs that no single run can
see (other engineers' jobs on a shared machine, frequency scaling). A tie goes to the name.
"""

from __future__ import annotations


def latency_tie(a: dict, b: dict, tie_fraction: float) -> bool:
    """Whether the p50 latencies of two evaluated variants are within measurement noise."""
    pa, pb = float(a["latency_us"]["p50"]), float(b["latency_us"]["p50"])
    noise = float(a["latency_us"].get("p50_noise", 0.0)) + float(
        b["latency_us"].get("p50_noise", 0.0)
    )
    return abs(pa - pb) <= max(noise, tie_fraction * min(pa, pb))


def _key(variant: dict) -> tuple:
    return int(variant["shipped_bytes"]), -float(variant["accuracy"])


def rank(passing: list[dict], tie_fraction: float) -> list[dict]:
    """Returns the passing variants best first (see the module docstring).

    Within a group of equal shipped size and accuracy, the fastest variant and every variant
    tied with it form the lead, ordered by name; the others follow by the same rule.
    """
    ordered = []
    groups: dict[tuple, list[dict]] = {}
    for variant in sorted(passing, key=lambda v: (*_key(v), v["name"])):
        groups.setdefault(_key(variant), []).append(variant)
    for group in groups.values():
        rest = list(group)
        while rest:
            fastest = min(rest, key=lambda v: (float(v["latency_us"]["p50"]), v["name"]))
            lead = [v for v in rest if latency_tie(v, fastest, tie_fraction)]
            ordered.extend(sorted(lead, key=lambda v: v["name"]))
            rest = [v for v in rest if v not in lead]
    return ordered


def why_not_chosen(variant: dict, chosen: dict, tie_fraction: float) -> str:
    """Explains why a passing variant lost to the chosen one, in the order of the ranking."""
    vs = (
        f"{chosen['name']!r} ({int(chosen['shipped_bytes']):,} B shipped, accuracy "
        f"{float(chosen['accuracy']):.4f}, p50 {float(chosen['latency_us']['p50']):.2f} µs)"
    )
    if int(variant["shipped_bytes"]) != int(chosen["shipped_bytes"]):
        return f"passed, but {vs} ships smaller than its {int(variant['shipped_bytes']):,} B"
    if float(variant["accuracy"]) != float(chosen["accuracy"]):
        return f"passed, but {vs} is as small and more accurate than its {variant['accuracy']:.4f}"
    p50 = float(variant["latency_us"]["p50"])
    if latency_tie(variant, chosen, tie_fraction):
        return (
            f"passed; ties with {vs}: p50 {p50:.2f} µs is within measurement noise, "
            "and the tie goes to the name"
        )
    return f"passed, but {vs} is as small, as accurate and faster beyond noise (p50 {p50:.2f} µs)"
