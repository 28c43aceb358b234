"""A small line chart as SVG text (no plotting library): evenly spaced categories on x, a linear y from zero."""

from __future__ import annotations

import math
from html import escape

WIDTH, HEIGHT = 560, 340
LEFT, RIGHT, TOP, BOTTOM = 64, 150, 36, 48
COLOURS = ["#1f77b4", "#9ecae1", "#d62728", "#fc9272", "#2ca02c", "#999999"]
DASHES = {"p99": "6 4", "ideal": "2 3"}
FAMILY = {"direct": "#1f77b4", "chatweb": "#d62728", "ideal": "#777777"}  # one colour per source, in every chart


def _nice_max(value: float) -> float:
    if not value or math.isnan(value) or value <= 0:
        return 1.0
    exponent = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exponent:
            return step * exponent
    return 10 * exponent


def _label(v: float) -> str:
    return f"{v:,.0f}" if v >= 10 or v == 0 else f"{v:g}"


def line_chart(title: str, xs: list[float], x_label: str, y_unit: str, series: dict[str, list[float]]) -> str:
    """Series named "... p99" are dashed, "ideal" dotted; "direct ..." blue, "chatweb ..." red; a NaN leaves a gap."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    finite = [v for values in series.values() for v in values if v is not None and not math.isnan(v)]
    y_max = _nice_max(max(finite, default=1.0))

    def px(i: int) -> float:
        return LEFT + (plot_w * i / (len(xs) - 1) if len(xs) > 1 else plot_w / 2)

    def py(v: float) -> float:
        return TOP + plot_h * (1 - v / y_max)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT}" y="20" font-size="14" font-weight="bold">{escape(title)}</text>',
    ]
    for k in range(6):
        v = y_max * k / 5
        y = py(v)
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_label(v)}</text>')
    out.append(f'<text x="14" y="{TOP + plot_h / 2:.0f}" transform="rotate(-90 14 {TOP + plot_h / 2:.0f})" '
               f'text-anchor="middle">{escape(y_unit)}</text>')
    for i, x in enumerate(xs):
        out.append(f'<text x="{px(i):.1f}" y="{TOP + plot_h + 18}" text-anchor="middle">{_label(x)}</text>')
    out.append(f'<text x="{LEFT + plot_w / 2:.0f}" y="{HEIGHT - 10}" text-anchor="middle">{escape(x_label)}</text>')
    out.append(f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}" stroke="#333"/>')
    out.append(f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="#333"/>')
    for n, (name, values) in enumerate(series.items()):
        colour = next((c for key, c in FAMILY.items() if name.startswith(key)), COLOURS[n % len(COLOURS)])
        dash = next((d for key, d in DASHES.items() if key in name), "")
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        segments: list[list[str]] = [[]]
        for i, v in enumerate(values):
            if v is None or math.isnan(v):
                segments.append([])
                continue
            segments[-1].append(f"{px(i):.1f},{py(v):.1f}")
            out.append(f'<circle cx="{px(i):.1f}" cy="{py(v):.1f}" r="2.5" fill="{colour}"/>')
        for points in segments:
            if len(points) > 1:
                out.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="{colour}" '
                           f'stroke-width="2"{dash_attr}/>')
        ly = TOP + 8 + 18 * n
        lx = LEFT + plot_w + 12
        out.append(f'<line x1="{lx}" y1="{ly}" x2="{lx + 22}" y2="{ly}" stroke="{colour}" stroke-width="2"'
                   f'{dash_attr}/>')
        out.append(f'<text x="{lx + 28}" y="{ly + 4}">{escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
