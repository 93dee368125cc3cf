"""An HTML page of the evaluation: accuracy against size and latency (inline SVG), and the table.

Needs nothing but the standard library, so the KFP UI shows it as it is.
"""

from __future__ import annotations

import html
import math

_W, _H, _PAD = 420, 280, 48
_COLORS = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#393b79",
    "#637939",
    "#8c6d31",
]


def _scatter(points: list[tuple[str, float, float]], x_label: str, title: str) -> str:
    """An SVG scatter plot of ``(label, x, accuracy)`` with a log x axis."""
    xs = [max(p[1], 1e-9) for p in points]
    ys = [p[2] for p in points]
    lx_min, lx_max = math.log10(min(xs)), math.log10(max(xs))
    if lx_max - lx_min < 1e-6:
        lx_min, lx_max = lx_min - 0.5, lx_max + 0.5
    y_min, y_max = min(ys), max(ys)
    if y_max - y_min < 0.02:
        y_min, y_max = y_min - 0.01, y_max + 0.01
    span_x, span_y = lx_max - lx_min, y_max - y_min
    lx_min, lx_max = lx_min - 0.08 * span_x, lx_max + 0.08 * span_x
    y_min, y_max = y_min - 0.1 * span_y, y_max + 0.1 * span_y

    def px(v: float) -> float:
        return _PAD + (math.log10(max(v, 1e-9)) - lx_min) / (lx_max - lx_min) * (_W - 2 * _PAD)

    def py(v: float) -> float:
        return _H - _PAD - (v - y_min) / (y_max - y_min) * (_H - 2 * _PAD)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
        f'role="img" aria-label="{html.escape(title)}">',
        f'<text x="{_W / 2}" y="16" text-anchor="middle" font-size="13">{html.escape(title)}'
        "</text>",
        f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - _PAD}" y2="{_H - _PAD}" stroke="#333"/>',
        f'<line x1="{_PAD}" y1="{_PAD}" x2="{_PAD}" y2="{_H - _PAD}" stroke="#333"/>',
        f'<text x="{_W / 2}" y="{_H - 10}" text-anchor="middle" font-size="11">'
        f"{html.escape(x_label)} (log scale)</text>",
        f'<text x="12" y="{_H / 2}" font-size="11" transform="rotate(-90 12 {_H / 2})" '
        'text-anchor="middle">accuracy</text>',
    ]
    for k in range(math.ceil(lx_min), math.floor(lx_max) + 1):
        x = px(10.0**k)
        parts.append(
            f'<text x="{x:.1f}" y="{_H - _PAD + 14}" text-anchor="middle" '
            f'font-size="10">1e{k}</text>'
        )
    for frac in (0.0, 0.5, 1.0):
        v = y_min + frac * (y_max - y_min)
        parts.append(
            f'<text x="{_PAD - 4}" y="{py(v) + 3:.1f}" text-anchor="end" '
            f'font-size="10">{v:.3f}</text>'
        )
    for i, (label, xv, yv) in enumerate(points):
        color = _COLORS[i % len(_COLORS)]
        parts.append(
            f'<circle cx="{px(xv):.1f}" cy="{py(yv):.1f}" r="5" fill="{color}">'
            f"<title>{html.escape(label)}: {xv:,.1f}, {yv:.4f}</title></circle>"
        )
        parts.append(
            f'<text x="{px(xv) + 7:.1f}" y="{py(yv) - 6:.1f}" font-size="10" '
            f'fill="{color}">{html.escape(label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _rows(evaluation: dict) -> list[dict]:
    rows = []
    reference = evaluation.get("reference")
    if reference:
        rows.append({**reference, "name": "saved_model (reference)"})
    rows.extend(evaluation.get("variants") or [])
    return rows


def render_html(evaluation: dict, decision: dict | None = None) -> str:
    """Returns a self-contained HTML page with two charts and the table of every variant.

    Args:
        evaluation: The evaluation dict (``evaluation.json``).
        decision: The gate's decision, to show which variant passed and why others lost.
    """
    rows = _rows(evaluation)
    results = (decision or {}).get("results") or {}
    chosen = (decision or {}).get("chosen")
    size_points = [(r["name"], float(r["size_bytes"]), float(r["accuracy"])) for r in rows]
    latency_points = [
        (r["name"], float(r["latency_us"]["p50"]), float(r["accuracy"])) for r in rows
    ]
    header = [
        "variant",
        "technique",
        "size B",
        "shipped B",
        "gzip B",
        "accuracy [95 % interval]",
        "recall per class",
        "p50 µs",
        "p95 µs",
        "p99 µs",
        "invoke p50 µs",
        "cold start µs",
        "rows/s",
        "peak memory B",
        "builtin ops",
        "gate",
    ]
    body = []
    for r in rows:
        gate = ""
        if r["name"] in results:
            res = results[r["name"]]
            gate = (
                "chosen"
                if r["name"] == chosen
                else ("pass" if res["passed"] else "; ".join(res["reasons"]))
            )
        peak = r.get("peak_memory_bytes")
        cells = [
            r["name"],
            r.get("technique", ""),
            f"{int(r['size_bytes']):,}",
            f"{int(r['shipped_bytes']):,}" if "shipped_bytes" in r else "n/a",
            f"{int(r['gzip_bytes']):,}",
            _accuracy_cell(r),
            ", ".join(f"{c} {v['recall']:.2f}" for c, v in (r.get("per_class") or {}).items()),
            f"{r['latency_us']['p50']:.1f}",
            f"{r['latency_us']['p95']:.1f}",
            f"{r['latency_us']['p99']:.1f}",
            f"{r['invoke_latency_us']['p50']:.1f}" if "invoke_latency_us" in r else "n/a",
            f"{r['cold_start_us']:,.0f}" if "cold_start_us" in r else "n/a",
            f"{float(r.get('throughput_rows_per_s', 0)):,.0f}",
            f"{int(peak):,}" if peak is not None else "n/a",
            {True: "yes", False: "NO: " + ", ".join(r.get("select_tf_ops") or [])}.get(
                r.get("ops_ok"), "n/a"
            ),
            gate,
        ]
        style = ' style="font-weight:bold"' if r["name"] == chosen else ""
        body.append(
            f"<tr{style}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>"
        )
    split = html.escape(str(evaluation.get("split", "")))
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>kfp-edge evaluation</title>'
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}</style></head><body>"
        f"<h2>Variants on the {split} split ({evaluation.get('rows', '?')} rows, "
        f"{evaluation.get('num_threads', 1)} thread(s))</h2>"
        f"<div>{_scatter(size_points, 'size in bytes', 'Accuracy vs size')}"
        f"{_scatter(latency_points, 'p50 single-sample latency in µs', 'Accuracy vs latency')}"
        "</div><table><tr>"
        + "".join(f"<th>{html.escape(h)}</th>" for h in header)
        + "</tr>"
        + "".join(body)
        + "</table>"
        + _champion_section(decision)
        + "</body></html>"
    )


def _accuracy_cell(row: dict) -> str:
    interval = row.get("accuracy_interval")
    text = f"{float(row['accuracy']):.4f}"
    return f"{text} [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else text


def _champion_section(decision: dict | None) -> str:
    """The champion (published version) against every challenger, when the gate scored one."""
    champion = (decision or {}).get("champion")
    if not champion:
        return ""
    title = f"Champion: {champion['model_name']} v{champion['version']}"
    if not champion.get("comparable"):
        return (
            f"<h3>{html.escape(title)}</h3><p>not compared: {html.escape(champion['reason'])}</p>"
        )
    recalls = ", ".join(f"{c} {v['recall']:.2f}" for c, v in champion["per_class"].items())
    rows = [
        f"<tr><td>{html.escape(name)}</td><td>{res['vs_champion']['accuracy_delta']:+.4f}</td>"
        "<td>"
        + html.escape(
            ", ".join(f"{c} {d:+.2f}" for c, d in res["vs_champion"]["class_recall_deltas"].items())
        )
        + "</td></tr>"
        for name, res in decision["results"].items()
        if res.get("vs_champion")
    ]
    return (
        f"<h3>{html.escape(title)}</h3><p>accuracy {_accuracy_cell(champion)} on "
        f"{champion['rows']} rows; recall {html.escape(recalls)}</p>"
        "<table><tr><th>challenger</th><th>accuracy vs champion</th>"
        "<th>recall vs champion</th></tr>" + "".join(rows) + "</table>"
    )
