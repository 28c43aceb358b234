"""Server-side SVG bar charts: no script, colours from currentColor (CSS tints them), a tooltip per bar."""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 960, 220
LEFT, RIGHT, TOP, BOTTOM = 64, 8, 12, 30  # margins: y labels on the left, x labels below
X_LABELS = 6


@dataclass(frozen=True)
class Bar:
    label: str  # what the bar is (a day), shown under the axis and in the tooltip
    value: float  # its height, in the axis' unit
    text: str  # the exact value for people ("12,345 tokens", "$0.0123")


def escape(value: object) -> str:
    """Django's escape without its lazy-string wrapper, which cost more than the escaping (thousands of calls a
    chart)."""
    return html.escape(str(value))


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 × 10^k at or above `value` (1 for nothing): round gridline labels."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power * (1 + 1e-9):
            return step * power
    return 10 * power  # pragma: no cover


def _f(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")


def bar_chart(
    *, chart_id: str, title: str, description: str, bars: Sequence[Bar], axis_text: Callable[[float], str]
) -> SafeString:
    """An <svg role="img"> of `bars` left to right over four gridlines, labelled by title and description.

    The page puts a table of the same numbers beside it for screen readers; tooltips come from <title>.
    """
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = nice_ceiling(max((b.value for b in bars), default=0))
    ident = escape(chart_id)
    parts = [
        f'<svg class="chart" id="{ident}" role="img" aria-labelledby="{ident}-title {ident}-desc" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" preserveAspectRatio="xMidYMid meet" '
        f'font-size="11" font-family="system-ui, sans-serif">',
        f'<title id="{ident}-title">{escape(title)}</title>',
        f'<desc id="{ident}-desc">{escape(description)}</desc>',
        '<g class="grid" stroke="currentColor" stroke-opacity="0.25" stroke-width="1">',
    ]
    labels = []
    for i in range(5):
        value = top * i / 4
        y = TOP + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{_f(y)}" y2="{_f(y)}"/>')
        labels.append(
            f'<text x="{LEFT - 6}" y="{_f(y + 4)}" text-anchor="end" fill="currentColor">'
            f"{escape(axis_text(value))}</text>"
        )
    parts.append("</g>")
    parts.append('<g class="axis">' + "".join(labels) + "</g>")
    if bars:
        slot = plot_w / len(bars)
        gap = slot * 0.15 if slot >= 4 else 0
        parts.append('<g class="bars" fill="currentColor">')
        for i, bar in enumerate(bars):
            h = plot_h * bar.value / top if top else 0
            if bar.value > 0:
                h = max(h, 1.0)  # a tiny value still shows
            x, y = LEFT + i * slot + gap / 2, TOP + plot_h - h
            parts.append(
                f'<rect x="{_f(x)}" y="{_f(y)}" width="{_f(max(slot - gap, 0.5))}" height="{_f(h)}">'
                f"<title>{escape(bar.label)}: {escape(bar.text)}</title></rect>"
            )
        parts.append("</g>")
        step = max(1, math.ceil(len(bars) / X_LABELS))
        ticks = sorted(set(range(0, len(bars), step)) | {len(bars) - 1})
        if len(ticks) > 1 and ticks[-1] - ticks[-2] < step / 2:
            ticks.pop(-2)  # keep the last label clear of its neighbour
        parts.append('<g class="axis" fill="currentColor">')
        for i in ticks:
            # The outermost labels align with the plot's edges so that they are never cut off.
            if i == 0:
                x, anchor = LEFT + gap / 2, "start"
            elif i == len(bars) - 1:
                x, anchor = LEFT + (i + 1) * slot - gap / 2, "end"
            else:
                x, anchor = LEFT + (i + 0.5) * slot, "middle"
            parts.append(
                f'<text x="{_f(x)}" y="{HEIGHT - 10}" text-anchor="{anchor}">{escape(bars[i].label)}</text>'
            )
        parts.append("</g>")
    else:
        parts.append(
            f'<text x="{LEFT + plot_w / 2:.0f}" y="{TOP + plot_h / 2:.0f}" text-anchor="middle" '
            'fill="currentColor">No usage in this period</text>'
        )
    parts.append(
        f'<line class="baseline" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}" '
        'stroke="currentColor" stroke-width="1"/></svg>'
    )
    return mark_safe("".join(parts))  # noqa: S308 (every piece of text above is escaped)


def tokens_axis(value: float) -> str:
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if value >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}" if value else "0"


def money_axis(value: float) -> str:
    if value == 0:
        return "$0"
    if value >= 100:
        return f"${value:,.0f}"
    return f"${value:.4g}"


def chart_table(
    *, table_id: str, caption: str, columns: Sequence[str], rows: Iterable[Sequence[object]]
) -> SafeString:
    """A chart's numbers as a table for screen readers (visually hidden with `sr-only`): the first column
    heads each row, the others are right-aligned numbers. Built here rather than in a template loop: a year
    of days is 365 rows, and Django's template engine would spend more time on it than the queries do."""
    num = ' class="num"'
    head = "".join(f'<th scope="col"{num if i else ""}>{escape(c)}</th>' for i, c in enumerate(columns))
    body = "".join(
        f'<tr><th scope="row">{escape(row[0])}</th>'
        + "".join(f'<td class="num">{escape(cell)}</td>' for cell in row[1:])
        + "</tr>"
        for row in rows
    )
    return mark_safe(  # noqa: S308 (every value is escaped)
        f'<table class="sr-only" id="{escape(table_id)}"><caption>{escape(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )
