"""Small inline SVG charts (scatter, lines) for self-contained HTML pages: no script, no network."""

from __future__ import annotations

import html
import math

W, H, PAD = 420, 280, 48
COLORS = (
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
)


def _frame(title: str, x_label: str, y_label: str, css_class: str) -> list[str]:
    """The opening tag, title, axes and axis labels of a chart."""
    t = html.escape(title)
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{css_class}" width="{W}" height="{H}" '
        f'role="img" aria-label="{t}">',
        f'<text x="{W / 2}" y="16" text-anchor="middle" font-size="13">{t}</text>',
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="#333"/>',
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H - PAD}" stroke="#333"/>',
        f'<text x="{W / 2}" y="{H - 10}" text-anchor="middle" font-size="11">'
        f"{html.escape(x_label)}</text>",
        f'<text x="12" y="{H / 2}" font-size="11" transform="rotate(-90 12 {H / 2})" '
        f'text-anchor="middle">{html.escape(y_label)}</text>',
    ]


def _range(values: list[float], min_span: float) -> tuple[float, float]:
    """A padded axis range over ``values``, at least ``min_span`` wide."""
    lo, hi = min(values), max(values)
    if hi - lo < min_span:
        lo, hi = lo - min_span / 2, hi + min_span / 2
    span = hi - lo
    return lo - 0.08 * span, hi + 0.08 * span


def _scale(lo: float, hi: float, a: float, b: float):
    return lambda v: a + (v - lo) / (hi - lo) * (b - a)


def _y_ticks(py, lo: float, hi: float) -> list[str]:
    return [
        f'<text x="{PAD - 4}" y="{py(v) + 3:.1f}" text-anchor="end" font-size="10">{v:.3g}</text>'
        for v in (lo + f * (hi - lo) for f in (0.0, 0.5, 1.0))
    ]


def scatter(points: list[tuple[str, float, float]], x_label: str, y_label: str, title: str) -> str:
    """Returns an SVG scatter plot of ``(label, x, y)`` points with a log x axis.

    Args:
        points: One ``(label, x, y)`` per point; x must be positive (it is clamped to 1e-9).
        x_label: Caption of the x axis ("(log scale)" is appended).
        y_label: Caption of the y axis.
        title: Title drawn above the chart and its accessible name.
    """
    if not points:
        return ""
    xs = [math.log10(max(p[1], 1e-9)) for p in points]
    x_lo, x_hi = _range(xs, 1.0)
    y_lo, y_hi = _range([p[2] for p in points], 0.02)
    px = _scale(x_lo, x_hi, PAD, W - PAD)
    py = _scale(y_lo, y_hi, H - PAD, PAD)
    parts = _frame(title, f"{x_label} (log scale)", y_label, "chart scatter")
    for k in range(math.ceil(x_lo), math.floor(x_hi) + 1):
        parts.append(
            f'<text x="{px(k):.1f}" y="{H - PAD + 14}" text-anchor="middle" '
            f'font-size="10">1e{k}</text>'
        )
    parts += _y_ticks(py, y_lo, y_hi)
    for i, ((label, xv, yv), lx) in enumerate(zip(points, xs, strict=True)):
        color, name = COLORS[i % len(COLORS)], html.escape(label)
        parts.append(
            f'<circle class="point" cx="{px(lx):.1f}" cy="{py(yv):.1f}" r="5" fill="{color}">'
            f"<title>{name}: {xv:,.1f}, {yv:.4f}</title></circle>"
            f'<text x="{px(lx) + 7:.1f}" y="{py(yv) - 6:.1f}" font-size="10" fill="{color}">'
            f"{name}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def lines(series: dict[str, list[tuple[float, float]]], x_label: str, title: str) -> str:
    """Returns an SVG line chart, one polyline per named series of ``(x, y)`` points.

    Args:
        series: ``{name: [(x, y), ...]}``; series without points are left out.
        x_label: Caption of the x axis.
        title: Title drawn above the chart and its accessible name.
    """
    series = {k: v for k, v in series.items() if v}
    if not series:
        return ""
    points = [p for v in series.values() for p in v]
    x_lo, x_hi = _range([p[0] for p in points], 1.0)
    y_lo, y_hi = _range([p[1] for p in points], 0.02)
    px = _scale(x_lo, x_hi, PAD, W - PAD)
    py = _scale(y_lo, y_hi, H - PAD, PAD)
    parts = _frame(title, x_label, "", "chart lines") + _y_ticks(py, y_lo, y_hi)
    for i, (name, values) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in values)
        parts.append(
            f'<polyline class="series" points="{coords}" fill="none" stroke="{color}" '
            f'stroke-width="2"><title>{html.escape(name)}</title></polyline>'
            f'<text x="{PAD + 8}" y="{PAD + 12 + 14 * i}" font-size="10" fill="{color}">'
            f"{html.escape(name)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
