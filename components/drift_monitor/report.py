"""The drift report: the decision as JSON and as one self-contained HTML page.

The page needs nothing but the standard library and no network: the open alarms with their
start, the share of drifted features, and per feature a table row and an inline SVG plot of the
reference and recent histograms (in training standard deviations).
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from kfp_edge.workspace import write_json_atomic

JSON_FILE = "drift_report.json"
HTML_FILE = "drift_report.html"
_W, _H, _PAD = 320, 140, 24


def _histogram_svg(name: str, histogram: dict) -> str:
    """An SVG of two overlaid histograms (reference grey, recent orange)."""
    ref, cur = histogram["reference"], histogram["recent"]
    total_ref, total_cur = max(sum(ref), 1), max(sum(cur), 1)
    shares = [v / total_ref for v in ref] + [v / total_cur for v in cur]
    top = max(max(shares), 1e-9)
    width = (_W - 2 * _PAD) / len(ref)
    bars = []
    for series, total, color in ((ref, total_ref, "#999999"), (cur, total_cur, "#ff7f0e")):
        for i, count in enumerate(series):
            h = (count / total) / top * (_H - 2 * _PAD)
            x, y = _PAD + i * width, _H - _PAD - h
            bars.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{h:.1f}" '
                f'fill="{color}" fill-opacity="0.55"/>'
            )
    edges = histogram["edges"]
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" role="img" '
        f'aria-label="{html.escape(name)}">'
        f'<text x="{_PAD}" y="14" font-size="12">{html.escape(name)}</text>'
        + "".join(bars)
        + f'<text x="{_PAD}" y="{_H - 6}" font-size="10">{edges[0]:.2f}</text>'
        f'<text x="{_W - _PAD}" y="{_H - 6}" font-size="10" text-anchor="end">'
        f"{edges[-1]:.2f}</text></svg>"
    )


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else html.escape(str(value))


def render_html(decision: dict) -> str:
    """Returns the drift report of a decision as a self-contained HTML page."""
    model = decision["model"]
    dist = decision["distribution"]
    share = dist["drifted_share"]
    alarms = "".join(
        f"<li>{html.escape(a['detector'])} ({html.escape(a['kind'])}): open since "
        f"{html.escape(a['opened_at'])}, version {a['model_version']}, "
        f"{a['detections']} detection(s)</li>"
        for a in decision["alarms"]
    )
    rows, plots = [], []
    for name, tests in dist["features"].items():
        cells = [name, tests["test"], tests["pvalue"], tests["psi"], tests["wasserstein"]]
        cells += [tests["std_ratio"], "yes" if tests["drifted"] else "no"]
        alarm = "yes" if decision["features"].get(name, {}).get("detected") else "no"
        rows.append("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in cells + [alarm]) + "</tr>")
        plots.append(_histogram_svg(name, tests["histogram"]))
    header = ["feature", "test", "p-value", "PSI", "Wasserstein", "std ratio", "drifted", "alarm"]
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>Drift report: {html.escape(model['name'])} v{model['version']}</title>"
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px;border:1px solid #ccc}"
        "table{border-collapse:collapse}</style></head><body>"
        f"<h1>Drift report: {html.escape(model['name'])} version {model['version']}</h1>"
        f"<p>{'DRIFT' if decision['drifted'] else 'no drift'}; {decision['observations']} "
        f"observations; checked at {html.escape(decision['checked_at'])}; share of drifted "
        f"features: {'-' if share is None else f'{share:.0%}'}</p>"
        f"<h2>Open alarms</h2><ul>{alarms or '<li>none</li>'}</ul>"
        "<h2>Features (recent against reference)</h2><table><tr>"
        + "".join(f"<th>{h}</th>" for h in header)
        + "</tr>"
        + "".join(rows)
        + "</table><div>"
        + "".join(plots)
        + "</div></body></html>"
    )


def write_report(decision: dict, directory: str | os.PathLike) -> tuple[Path, Path]:
    """Writes ``drift_report.json`` and ``drift_report.html`` into a directory.

    Returns:
        The paths of the JSON and the HTML file.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_json_atomic(directory / JSON_FILE, decision)
    page = directory / HTML_FILE
    tmp = page.with_name(f".{HTML_FILE}.{os.getpid()}.tmp")
    tmp.write_text(render_html(decision))
    os.replace(tmp, page)
    return directory / JSON_FILE, page
