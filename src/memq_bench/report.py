"""``memq bench report``: one self-contained HTML file from any mix of results files.

Inline CSS and inline SVG charts (``memq_bench.svg``), no scripts and no external resources, so it opens
offline. Per results file: learning curves (files with ``extra.curves``, the TTL stream), metrics by
slice (``recall@5/cat1`` … as grouped bars per system), overall quality, add/search latency p50/p95,
and a table of every metric. Sections without data are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from pathlib import Path

from memq_bench import svg
from memq_bench.catalog import BY_NAME, OTHER_PAGES
from memq_bench.results import BenchResult, ResultsFile
from memq_bench.view import (
    best_values,
    fmt_value,
    grouped_notes,
    labels,
    latency_metrics,
    load_results,
    metric_names,
    natural_key,
    quality_metrics,
    slice_order,
)

CEILINGS = ("oracle",)  # reference systems, never marked best
MAX_SLICE_CHARTS = 4
MAX_QUALITY_GROUPS = 10
_PREFERRED = ("recall@5", "recall@10", "ndcg@10", "em@1", "em@5", "recall_all@5", "recall_any@5")

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0;color:#1b1b1b;
background:#f6f7f9;line-height:1.45}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{font-size:26px;margin:0 0 4px} h2{font-size:21px;margin:36px 0 6px;border-bottom:2px solid #d8dbe0;
padding-bottom:4px} h3{font-size:16px;margin:22px 0 6px}
.meta{color:#555;font-size:13px} code{background:#eceef1;padding:1px 4px;border-radius:3px;font-size:12.5px}
.chart{background:#fff;border:1px solid #e0e2e6;border-radius:6px;padding:8px;margin:10px 0;overflow-x:auto}
.charts{display:flex;flex-wrap:wrap;gap:12px} .charts .chart{flex:1 1 auto}
table{border-collapse:collapse;font-size:12.5px;background:#fff} th,td{border:1px solid #dde0e4;padding:3px 7px;
text-align:right;white-space:nowrap} th{background:#eef0f3;position:sticky;top:0} td.l,th.l{text-align:left}
td.best{font-weight:700;background:#eaf5ea} .scroll{overflow:auto;max-height:640px;border:1px solid #e0e2e6}
nav a{margin-right:14px} .note{color:#555;font-size:13px;margin:4px 0}
"""


def _anchor(name: str, i: int) -> str:
    return f"s{i}-" + "".join(c if c.isalnum() else "-" for c in name.lower())


def _chart(svg_text: str) -> str:
    return f'<div class="chart">{svg_text}</div>'


def _unit_range(values: Sequence[float]) -> tuple[float, float] | None:
    return (0.0, 1.0) if values and all(0.0 <= v <= 1.0 for v in values) else None


def _meta(rf: ResultsFile) -> str:
    bits = [f"run {rf.created_at:%Y-%m-%d %H:%M} UTC"]
    m = rf.machine
    if m:
        bits.append(
            ", ".join(
                str(x)
                for x in (f"{m.get('cpus')} CPUs" if m.get("cpus") else None, f"Python {m.get('python')}")
                if x
            )
        )
    versions: dict[str, str] = {}
    for r in rf.results:
        versions.update(r.versions)
    if versions:
        bits.append(" ".join(f"{k} {v}" for k, v in sorted(versions.items())))
    html = f'<p class="meta">{escape(" · ".join(b for b in bits if b))}</p>'
    command = rf.args.get("command")
    if command:
        html += f'<p class="meta">command: <code>{escape(str(command))}</code></p>'
    return html


def _learning_curves(rf: ResultsFile) -> list[str]:
    curves = rf.extra.get("curves") or []
    if not curves:
        return []
    out = ["<h3>Learning curves</h3>"]
    window = rf.extra.get("curve_window")
    variants = sorted({c["variant"] for c in curves}, key=natural_key)
    charts = []
    for variant in variants:
        series = {
            c["system"]: list(zip(c["step"], c["accuracy"], strict=False))
            for c in curves
            if c["variant"] == variant and c.get("accuracy")
        }
        if not series:
            continue
        title = f"{rf.benchmark} {variant}: accuracy per {window}-step window" if window else variant
        x_label = rf.extra.get("curve_x_label", "step of the stream")  # e.g. "GRPO update" (memq rl)
        y_label = rf.extra.get("curve_y_label", "accuracy")
        charts.append(
            _chart(svg.line_chart(series, title=title, x_label=x_label, y_label=y_label, y_range=(0, 1)))
        )
    out.append('<div class="charts">' + "".join(charts) + "</div>")
    # final-window accuracy by variant (noise level), one bar per learner
    metric = next(
        (m for m in ("acc_last2000", "acc_final", "accuracy") if any(m in r.metrics for r in rf.results)),
        None,
    )
    if metric:
        systems = list(dict.fromkeys(r.system for r in rf.results))
        by = {(r.system, r.variant): r.metrics.get(metric) for r in rf.results}
        bars = {s: [by.get((s, v)) for v in variants] for s in systems}
        out.append(
            _chart(
                svg.bar_chart(
                    variants,
                    bars,
                    title=f"{metric} by variant",
                    y_label=metric,
                    y_range=(0, 1),
                    x_label="variant",
                )
            )
        )
    return out


def _scaled_bars(groups: list[str], series: dict[str, list[float | None]], **labels: str) -> str:
    """A bar chart on a 0-1 axis when every value is a share, else scaled to the data."""
    values = [v for vals in series.values() for v in vals if v is not None]
    return _chart(svg.bar_chart(groups, series, y_range=_unit_range(values), **labels))


def _slice_charts(bench: str, results: list[BenchResult], names: list[str]) -> list[str]:
    bases = slice_order(results, _PREFERRED)
    if not bases:
        return []
    order = list(bases)
    out = ["<h3>By slice</h3>"]
    for base in order[:MAX_SLICE_CHARTS]:
        slices = bases[base]
        groups = [*slices, "all"] if any(base in r.metrics for r in results) else slices
        series = {
            lab: [r.metrics.get(base if g == "all" else f"{base}/{g}") for g in groups]
            for lab, r in zip(names, results, strict=True)
        }
        out.append(
            _scaled_bars(
                groups,
                series,
                title=f"{bench}: {base} by slice",
                y_label=base,
                x_label="slice (category, context length, …)",
            )
        )
    if len(order) > MAX_SLICE_CHARTS:
        rest = ", ".join(order[MAX_SLICE_CHARTS:])
        out.append(f'<p class="note">Also per slice in the table below: {escape(rest)}.</p>')
    return out


def _quality_chart(bench: str, results: list[BenchResult], names: list[str]) -> list[str]:
    metrics = [n for n in quality_metrics(results) if n != "gap_closed"]
    charted = set(
        list(slice_order(results, _PREFERRED))[:MAX_SLICE_CHARTS]
    )  # already shown as "all" by slice
    metrics = [m for m in metrics if m not in charted]
    values = [r.metrics[m] for r in results for m in metrics if m in r.metrics]
    if not metrics or _unit_range(values) is None:
        metrics = [m for m in metrics if all(0 <= r.metrics.get(m, 0) <= 1 for r in results)]
    metrics = metrics[:MAX_QUALITY_GROUPS]
    if not metrics:
        return []
    series = {lab: [r.metrics.get(m) for m in metrics] for lab, r in zip(names, results, strict=True)}
    return [
        "<h3>Overall</h3>",
        _chart(
            svg.bar_chart(metrics, series, title=f"{bench}: overall metrics", y_label="value", y_range=(0, 1))
        ),
    ]


def _latency_charts(bench: str, results: list[BenchResult], names: list[str]) -> list[str]:
    present = latency_metrics(results)
    if not present:
        return []
    charts = []
    for kind in ("add", "search"):
        cols = [m for m in present if m.startswith(f"{kind}_ms_")]
        if not cols:
            continue
        series = {m.rsplit("_", 1)[1]: [r.metrics.get(m) for r in results] for m in cols}
        charts.append(
            _chart(
                svg.bar_chart(
                    names,
                    series,
                    title=f"{bench}: {kind} latency per call",
                    y_label="milliseconds",
                    x_label="system",
                )
            )
        )
    return ["<h3>Latency</h3>", '<div class="charts">' + "".join(charts) + "</div>"]


def _table(results: list[BenchResult], names: list[str]) -> str:
    metrics = metric_names(results)
    if not metrics:
        return ""
    best = best_values(results, metrics, skip=CEILINGS)

    def cell(m: str, r: BenchResult) -> str:
        v = r.metrics.get(m)
        cls = ' class="best"' if v is not None and best.get(m) == v else ""
        return f"<td{cls}>{escape(fmt_value(m, v))}</td>"

    rows = []
    if len(results) > len(metrics):  # many results, few metrics: one row per result
        head = '<tr><th class="l">system</th>' + "".join(f"<th>{escape(m)}</th>" for m in metrics) + "</tr>"
        for lab, r in zip(names, results, strict=True):
            rows.append(
                f'<tr><td class="l">{escape(lab)}</td>' + "".join(cell(m, r) for m in metrics) + "</tr>"
            )
    else:  # one row per metric, one column per result
        head = '<tr><th class="l">metric</th>' + "".join(f"<th>{escape(lab)}</th>" for lab in names) + "</tr>"
        for m in metrics:
            rows.append(
                f'<tr><td class="l">{escape(m)}</td>' + "".join(cell(m, r) for r in results) + "</tr>"
            )
    return (
        "<h3>Every metric</h3>"
        '<p class="note">Best value per metric in bold (higher quality, lower latency).</p>'
        f'<div class="scroll"><table><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table></div>'
    )


def _main_variant(results: list[BenchResult]) -> tuple[str | None, list[BenchResult]]:
    """(the variant with most results, its results); (None, all) when there is one variant."""
    counts: dict[str, int] = {}
    for r in results:
        counts[r.variant] = counts.get(r.variant, 0) + 1
    if len(counts) <= 1:
        return None, results
    variant = max(counts, key=lambda v: counts[v])  # first seen wins a tie
    return variant, [r for r in results if r.variant == variant]


def _headline(results: list[BenchResult]) -> str | None:
    plain = quality_metrics(results)
    return next((m for m in _PREFERRED if m in plain), plain[0] if plain else None)


def _variant_chart(bench: str, results: list[BenchResult]) -> list[str]:
    """The headline metric per system, one bar per variant (e.g. default vs audit, online vs baseline)."""
    variants = list(dict.fromkeys(r.variant for r in results))
    metric = _headline(results)
    if len(variants) < 2 or metric is None:
        return []
    systems = list(dict.fromkeys(r.system for r in results))
    by = {(r.system, r.variant): r.metrics.get(metric) for r in results}
    series = {v: [by.get((s, v)) for s in systems] for v in variants}
    return [
        "<h3>Variants</h3>",
        _scaled_bars(
            systems, series, title=f"{bench}: {metric} by variant", y_label=metric, x_label="system"
        ),
    ]


def _title(benchmark: str) -> str:
    if benchmark in BY_NAME:
        return BY_NAME[benchmark].title
    return OTHER_PAGES[benchmark][0] if benchmark in OTHER_PAGES else benchmark


def _section(rf: ResultsFile, source: str, anchor: str) -> str:
    results = list(rf.results)
    parts = [f'<h2 id="{anchor}">{escape(_title(rf.benchmark))}</h2>', _meta(rf)]
    if rf.benchmark in BY_NAME:
        parts.append(f'<p class="note">{escape(BY_NAME[rf.benchmark].about)}</p>')
    if source:
        parts.append(f'<p class="meta">file: <code>{escape(source)}</code></p>')
    if not results:
        parts.append('<p class="note">No results in this file.</p>')
        return "\n".join(parts)
    names = labels(results)
    parts += _learning_curves(rf)
    # Charts draw the main variant (the one with most results), so each bar group stays legible;
    # a separate chart compares the variants on the headline metric, and the table has everything.
    variant, main = _main_variant(results)
    bench = f"{rf.benchmark} ({variant})" if variant else rf.benchmark
    main_names = labels(main)
    parts += _slice_charts(bench, main, main_names)
    if not rf.extra.get("curves"):
        parts += _quality_chart(bench, main, main_names)
        parts += _variant_chart(rf.benchmark, results)
    parts += _latency_charts(bench, main, main_names)
    parts.append(_table(results, names))
    notes = grouped_notes(results, names)
    if notes:
        parts.append("<h3>Notes</h3><ul>" + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>")
    return "\n".join(parts)


def build_report(
    files: Sequence[ResultsFile | tuple[str, ResultsFile]], *, title: str = "memq benchmark report"
) -> str:
    """The HTML text of the report for ``files`` (results files, or (source path, results file) pairs)."""
    pairs = [f if isinstance(f, tuple) else ("", f) for f in files]
    anchors = [_anchor(rf.benchmark, i) for i, (_, rf) in enumerate(pairs)]
    nav = " ".join(
        f'<a href="#{a}">{escape(rf.benchmark)}</a>' for a, (_, rf) in zip(anchors, pairs, strict=True)
    )
    body = [_section(rf, src, a) for a, (src, rf) in zip(anchors, pairs, strict=True)]
    if not body:
        body = ['<p class="note">No results files given.</p>']
    now = datetime.now(UTC)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body><main>"
        f"<h1>{escape(title)}</h1>"
        f'<p class="meta">generated {now:%Y-%m-%d %H:%M} UTC by <code>memq bench report</code> from '
        f"{len(pairs)} results file(s); hover a bar or point for its value.</p>"
        f"<nav>{nav}</nav>" + "\n".join(body) + "</main></body></html>\n"
    )


def write_report(
    paths: Sequence[str | Path], out: str | Path, *, title: str = "memq benchmark report"
) -> Path:
    """Read results files and write the report next to nowhere else: one file, atomically."""
    files = [(str(p), load_results(p)) for p in paths]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(build_report(files, title=title), encoding="utf-8")
    tmp.replace(out)
    return out
