"""The TTL benchmark's docs page and table, regenerated from its results JSON (never typed by hand)."""

from __future__ import annotations

from pathlib import Path

from memq_bench.results import ResultsFile


def markdown_table(rf: ResultsFile) -> str:
    """The docs table for one results file (regenerated from the JSON, never typed by hand)."""
    has_test = any("acc_test" in r.metrics for r in rf.results)
    head = "| noise | learner | last 2,000 | overall | gap closed |" + (
        " test (frozen) |" if has_test else ""
    )
    sep = "|---|---|---|---|---|" + ("---|" if has_test else "")
    lines = [head, sep]
    for r in sorted(rf.results, key=lambda r: r.config.get("noise", 0.0)):  # stable: file order within
        m = r.metrics
        gap = m.get("gap_closed")
        row = (
            f"| {r.config.get('noise', 0.0):.1f} | {r.system} "
            f"| {m['acc_last2000']:.3f} ± {m['acc_last2000_std']:.3f} "
            f"| {m['acc_overall']:.3f} ± {m['acc_overall_std']:.3f} | {'' if gap is None else f'{gap:.2f}'} |"
        )
        if has_test:
            row += f" {m['acc_test']:.3f} ± {m['acc_test_std']:.3f} |" if "acc_test" in m else " |"
        lines.append(row)
    return "\n".join(lines)


def baseline_deltas(rf: ResultsFile) -> list[tuple[float, str, float, float | None]]:
    """(noise, learner, points of accuracy over similarity on the final window, gap closed)."""
    by = {(r.system, r.config.get("noise", 0.0)): r for r in rf.results}
    out = []
    for noise in sorted({r.config.get("noise", 0.0) for r in rf.results}):
        sim = by.get(("similarity", noise))
        if sim is None:
            continue
        for name in ("memrl", "memento_q", "memq"):
            r = by.get((name, noise))
            if r is not None:
                delta = 100 * (r.metrics["acc_last2000"] - sim.metrics["acc_last2000"])
                out.append((noise, name, delta, r.metrics.get("gap_closed")))
    return out


def markdown_page(rf: ResultsFile, command: str) -> str:
    """The results page: how it was made, the table, and the checks the learning issue asks for."""
    a, x = rf.args, rf.extra
    first = rf.results[0] if rf.results else None
    seeds = first.config.get("seeds", a.get("seeds")) if first else a.get("seeds")
    lines = [
        "# Test-time learning on a poisoned-experience stream",
        "",
        "Generated from the results JSON by `memq bench ttl ... --doc` (or `memq bench ttl-report`) — "
        "do not edit by hand.",
        "",
        f"Data: `{Path(a.get('data') or '?').name}` ({x.get('rows') or 0:,} rows, {x.get('labels')} labels)"
        + (f", held-out `{Path(a['test']).name}` with memory frozen" if a.get("test") else "")
        + f"; k = {a.get('k')}, {seeds} seeds, credit = `{a.get('credit', 'used')}`, "
        f"{x.get('seconds') or 0:.0f} s on {rf.machine.get('cpus')} cores.",
        "",
        "```",
        command,
        "```",
        "",
        "Accuracy, mean ± std over seeds; *last 2,000* = the final 2,000 steps of the stream; "
        "*gap closed* = (learner − similarity) / (oracle − similarity) on that window. Every learner runs "
        "through `Memory.search` / `feedback` / `remember_experience` on a SQLite store: *similarity* is "
        "memq's hybrid recipe with nothing learned, *oracle* the same recipe over the clean experiences "
        "only (a metadata filter), and a learner ranks once its promotion test shows it better than the "
        "recipe (`learning.promotion = guarded`, memq's default).",
        "",
        markdown_table(rf),
        "",
    ]
    if x.get("note"):
        lines += [f"Note: {x['note']}.", ""]
    checks = [
        f"| {noise:.1f} | {name} | {delta:+.2f} | {'' if gap is None else f'{gap:.2f}'} |"
        for noise, name, delta, gap in baseline_deltas(rf)
    ]
    if checks:
        lines += [
            "Against the similarity baseline (points of accuracy on the last 2,000 steps):",
            "",
            "| noise | learner | Δ vs similarity | gap closed |",
            "|---|---|---|---|",
            *checks,
            "",
        ]
    return "\n".join(lines)
