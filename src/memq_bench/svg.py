"""Inline SVG charts for the HTML report: line charts and grouped bar charts, no JavaScript, no fonts.

Each function returns one ``<svg>`` element as a string, with a title, labelled axes, ticks, a legend
and a ``<title>`` tooltip on every point and bar, so the report opens offline in any browser.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

# Okabe–Ito and Tableau colours: distinguishable with common colour-vision deficiencies.
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#999933",
    "#000000",
    "#8C564B",
    "#7F7F7F",
    "#BCBD22",
    "#17BECF",
)
DASHES = ("", "6 3", "2 3", "8 3 2 3")
FONT = "font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif"


# Reference series (a ceiling such as the oracle) are drawn grey and dashed in every chart.
REFERENCE = {"oracle": ("#6b6b6b", "5 4")}


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _style(i: int, name: str) -> tuple[str, str]:
    """(colour, dash pattern) of the i-th series."""
    if name in REFERENCE:
        return REFERENCE[name]
    return colour(i), DASHES[(i // len(PALETTE)) % len(DASHES)]


def nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2, 2.5 or 5 times a power of ten apart)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(1, target)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step + 1e-9) * step
    ticks = []
    v = start
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 12))
        v += step
    if ticks[-1] < hi - 1e-12:
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


def fmt(v: float) -> str:
    """A short label for a tick or a tooltip value."""
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 10_000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 1:
        return f"{v:.3g}"
    return f"{v:.3f}".rstrip("0").rstrip(".")


def _text(x: float, y: float, s: str, *, size: int = 12, anchor: str = "middle", extra: str = "") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" {extra}>{escape(s)}</text>'
    )


def _legend(names: Sequence[str], x: float, y: float, *, line: bool) -> tuple[list[str], float]:
    """Legend entries stacked at (x, y); returns the SVG parts and the height used."""
    parts = ['<g class="legend">']
    for i, name in enumerate(names):
        yy = y + i * 18
        stroke, dash = _style(i, name)
        if line:
            parts.append(
                f'<line x1="{x}" y1="{yy + 6}" x2="{x + 22}" y2="{yy + 6}" stroke="{stroke}" '
                f'stroke-width="2.5" stroke-dasharray="{dash}"/>'
            )
        else:
            parts.append(f'<rect x="{x + 5}" y="{yy}" width="12" height="12" fill="{stroke}"/>')
        parts.append(_text(x + 28, yy + 10.5, name, size=12, anchor="start"))
    parts.append("</g>")
    return parts, len(names) * 18


def _frame(width: int, height: int, title: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" style="{FONT}">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        _text(width / 2, 22, title, size=15, extra='font-weight="600"'),
    ]


def _y_axis(
    ticks: Sequence[float], left: float, top: float, plot_w: float, plot_h: float, label: str
) -> list[str]:
    lo, hi = ticks[0], ticks[-1]
    parts = []
    for t in ticks:
        y = top + plot_h - (t - lo) / (hi - lo) * plot_h
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#e3e3e3" stroke-width="1"/>'
        )
        parts.append(_text(left - 6, y + 4, fmt(t), size=11, anchor="end"))
    parts.append(
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#333" stroke-width="1"/>'
    )
    cy = top + plot_h / 2
    parts.append(_text(16, cy, label, size=12, extra=f'transform="rotate(-90 16 {cy:.1f})"'))
    return parts


def line_chart(
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    y_range: tuple[float, float] | None = None,
    width: int = 720,
    height: int = 360,
) -> str:
    """One line per series; points are (x, y). ``y_range`` fixes the y axis (e.g. 0–1 for accuracy)."""
    series = {
        n: [(x, y) for x, y in pts if math.isfinite(x) and math.isfinite(y)] for n, pts in series.items()
    }
    names = [n for n, pts in series.items() if pts]
    xs = [x for n in names for x, _ in series[n]]
    ys = [y for n in names for _, y in series[n]]
    legend_w = 30 + 7.2 * max((len(n) for n in names), default=0)
    left, right, top, bottom = 62, 24 + legend_w, 40, 52
    height = max(height, top + 18 * len(names) + bottom)
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = _frame(width, height, title)
    if not names:
        parts.append(_text(width / 2, height / 2, "no data", size=13))
        return "\n".join([*parts, "</svg>"])
    y_lo, y_hi = y_range if y_range else (min(ys), max(ys))
    yt = nice_ticks(y_lo, y_hi)
    xt = nice_ticks(min(xs), max(xs), target=6)
    x_lo, x_hi, y0, y1 = xt[0], xt[-1], yt[0], yt[-1]

    def px(x: float) -> float:
        return left + (x - x_lo) / (x_hi - x_lo) * plot_w

    def py(y: float) -> float:
        return top + plot_h - (y - y0) / (y1 - y0) * plot_h

    parts += _y_axis(yt, left, top, plot_w, plot_h, y_label)
    base = top + plot_h
    parts.append(f'<line x1="{left}" y1="{base}" x2="{left + plot_w}" y2="{base}" stroke="#333"/>')
    for t in xt:
        parts.append(f'<line x1="{px(t):.1f}" y1="{base}" x2="{px(t):.1f}" y2="{base + 5}" stroke="#333"/>')
        parts.append(_text(px(t), base + 18, fmt(t), size=11))
    parts.append(_text(left + plot_w / 2, height - 12, x_label, size=12))
    for i, name in enumerate(names):
        pts = series[name]
        stroke, dash = _style(i, name)
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        parts.append(f'<g class="series" data-name="{escape(name)}">')
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{stroke}" stroke-width="2" '
            f'stroke-dasharray="{dash}" stroke-linejoin="round"/>'
        )
        for x, y in pts:
            parts.append(
                f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.2" fill="{stroke}">'
                f"<title>{escape(name)}: {fmt(y)} at {fmt(x)}</title></circle>"
            )
        parts.append("</g>")
    legend, _ = _legend(names, left + plot_w + 14, top + 4, line=True)
    parts += legend
    parts.append("</svg>")
    return "\n".join(parts)


def bar_chart(
    groups: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    title: str,
    y_label: str,
    y_range: tuple[float, float] | None = None,
    x_label: str = "",
    width: int | None = None,
    height: int = 360,
) -> str:
    """Grouped bars: one group per entry of ``groups``, one bar per series in each (None = no bar)."""
    series = {
        n: [v if v is not None and math.isfinite(v) else None for v in vals] for n, vals in series.items()
    }
    names = [n for n, vals in series.items() if any(v is not None for v in vals)]
    values = [v for n in names for v in series[n] if v is not None]
    legend_w = 30 + 7.2 * max((len(n) for n in names), default=0)
    n_bars = max(1, len(names))
    group_w = max(40, min(140, 14 * n_bars + 16))
    longest = max((len(g) for g in groups), default=0)
    rotate = longest * 6.5 > group_w
    bottom = 40 + (min(longest, 28) * 5.5 if rotate else 14) + (16 if x_label else 0)
    left, right, top = 62, 24 + legend_w, 40
    width = width or int(max(560, left + right + group_w * len(groups) + 20))
    height = max(height, int(top + 18 * len(names) + bottom))
    plot_w, plot_h = width - left - right, height - top - bottom
    if plot_h < 120:
        height += int(120 - plot_h)
        plot_h = 120
    parts = _frame(width, height, title)
    if not names or not groups:
        parts.append(_text(width / 2, height / 2, "no data", size=13))
        return "\n".join([*parts, "</svg>"])
    lo = min(0.0, min(values))
    hi = max(values)
    if y_range:
        lo, hi = y_range[0], max(y_range[1], hi)
    yt = nice_ticks(lo, hi)
    y0, y1 = yt[0], yt[-1]

    def py(y: float) -> float:
        return top + plot_h - (y - y0) / (y1 - y0) * plot_h

    parts += _y_axis(yt, left, top, plot_w, plot_h, y_label)
    base = py(max(y0, 0.0))
    parts.append(f'<line x1="{left}" y1="{base:.1f}" x2="{left + plot_w}" y2="{base:.1f}" stroke="#333"/>')
    slot = plot_w / len(groups)
    bar_w = max(3.0, min(28.0, (slot - 10) / n_bars))
    for gi, group in enumerate(groups):
        cx = left + slot * (gi + 0.5)
        ly = top + plot_h + 16
        if rotate:
            label = group if len(group) <= 28 else group[:27] + "…"
            parts.append(
                _text(
                    cx, ly, label, size=11, anchor="end", extra=f'transform="rotate(-35 {cx:.1f} {ly:.1f})"'
                )
            )
        else:
            parts.append(_text(cx, ly, group, size=11))
    for si, name in enumerate(names):
        parts.append(f'<g class="series" data-name="{escape(name)}">')
        for gi, group in enumerate(groups):
            vals = series[name]
            v = vals[gi] if gi < len(vals) else None
            if v is None:
                continue
            x = left + slot * gi + (slot - bar_w * n_bars) / 2 + bar_w * si
            y_top, y_bot = sorted((py(v), base))
            parts.append(
                f'<rect x="{x:.1f}" y="{y_top:.1f}" width="{bar_w - 1:.1f}" height="{max(0.5, y_bot - y_top):.1f}" '
                f'fill="{_style(si, name)[0]}"><title>{escape(name)} · {escape(group)}: {fmt(v)}</title></rect>'
            )
        parts.append("</g>")
    if x_label:
        parts.append(_text(left + plot_w / 2, height - 8, x_label, size=12))
    legend, _ = _legend(names, left + plot_w + 14, top + 4, line=False)
    parts += legend
    parts.append("</svg>")
    return "\n".join(parts)
