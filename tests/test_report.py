"""The HTML report, docs/results.md generation, terminal tables and `memq bench all` plumbing."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from memq.cli import app
from memq.errors import InvalidInputError
from memq_bench import svg
from memq_bench.all import command_for, plan, run_all
from memq_bench.catalog import BY_NAME
from memq_bench.report import build_report
from memq_bench.results import BenchResult, ResultsFile, write_results
from memq_bench.results_md import render, write_results_md
from memq_bench.tables import results_table
from memq_bench.view import labels, load_results

SVG_NS = "{http://www.w3.org/2000/svg}"
runner = CliRunner()


def retrieval_file(systems=("memq", "mem0", "chroma")) -> ResultsFile:
    results = []
    for i, name in enumerate(systems):
        metrics = {"recall@5": 0.6 - 0.1 * i, "recall@10": 0.7 - 0.1 * i, "ndcg@10": 0.5 - 0.05 * i}
        for cat in (1, 2, 3, 4):
            metrics[f"recall@5/cat{cat}"] = round(0.3 + 0.1 * cat - 0.05 * i, 3)
        metrics.update(
            add_ms_p50=2.0 + 10 * i, add_ms_p95=4.0 + 12 * i, search_ms_p50=8.0 + i, search_ms_p95=15.0 + i
        )
        metrics.update(records=100.0, bytes=123_456.0, questions=150.0, malformed_evidence=1.0)
        results.append(BenchResult(system=name, dataset="locomo10", metrics=metrics, seconds=1.5))
    return ResultsFile(benchmark="locomo", results=results, args={"command": "memq bench locomo"})


def ttl_file() -> ResultsFile:
    learners = ("similarity", "memrl", "memq", "oracle")
    results, curves = [], []
    for p in (0.0, 0.3):
        for j, name in enumerate(learners):
            acc = [0.3 + 0.1 * t + 0.02 * j * (p > 0) for t in range(5)]
            results.append(
                BenchResult(
                    system=name,
                    dataset="banking77",
                    variant=f"p={p:g}",
                    config={"noise": p, "k": 3, "seeds": 1, "steps": 1250},
                    metrics={
                        "acc_last2000": acc[-1],
                        "acc_last2000_std": 0.0,
                        "acc_overall": sum(acc) / 5,
                        "acc_overall_std": 0.0,
                    },
                    seconds=2.0,
                )
            )
            curves.append(
                {
                    "system": name,
                    "variant": f"p={p:g}",
                    "step": [250 * (t + 1) for t in range(5)],
                    "accuracy": acc,
                }
            )
    return ResultsFile(
        benchmark="ttl",
        args={"data": "banking77/train.csv", "k": 3, "seeds": 1},
        results=results,
        extra={"curves": curves, "curve_window": 250, "rows": 1250, "labels": 77, "seconds": 9.0},
    )


def svgs(html: str) -> list[ET.Element]:
    """Every inline chart, parsed as XML (so a malformed chart fails here)."""
    return [ET.fromstring(m) for m in re.findall(r"<svg\b.*?</svg>", html, flags=re.S)]


def legend(chart: ET.Element) -> list[str]:
    return [g.get("data-name") for g in chart.iter(f"{SVG_NS}g") if g.get("class") == "series"]


def title(chart: ET.Element) -> str:
    return chart.find(f"{SVG_NS}title").text


def test_report_is_one_offline_file_with_a_chart_per_section() -> None:
    html = build_report([("locomo.json", retrieval_file()), ("ttl.json", ttl_file())])
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, flags=re.I)
    assert "<script" not in html.lower() and "<link" not in html.lower() and "@import" not in html
    charts = {title(c): c for c in svgs(html)}
    # TTL: one learning-curve chart per noise level and the final-window bars; LoCoMo: recall@5 by
    # category, the overall metrics and add/search latency.
    assert set(charts) == {
        "ttl p=0: accuracy per 250-step window",
        "ttl p=0.3: accuracy per 250-step window",
        "acc_last2000 by variant",
        "locomo: recall@5 by slice",
        "locomo: overall metrics",
        "locomo: add latency per call",
        "locomo: search latency per call",
    }
    learners = ["similarity", "memrl", "memq", "oracle"]
    assert legend(charts["ttl p=0.3: accuracy per 250-step window"]) == learners
    assert legend(charts["acc_last2000 by variant"]) == learners
    assert legend(charts["locomo: recall@5 by slice"]) == ["memq", "mem0", "chroma"]
    assert legend(charts["locomo: add latency per call"]) == ["p50", "p95"]
    slice_labels = [t.text for t in charts["locomo: recall@5 by slice"].iter(f"{SVG_NS}text")]
    assert {"cat1", "cat4", "all"} <= set(slice_labels)
    overall = {t.text for t in charts["locomo: overall metrics"].iter(f"{SVG_NS}text")}
    assert {"recall@10", "ndcg@10"} <= overall and not {
        "recall@5",
        "questions",
        "malformed_evidence",
    } & overall
    # each curve has one point per window, with its value in a tooltip
    curve = next(
        g
        for g in charts["ttl p=0.3: accuracy per 250-step window"].iter(f"{SVG_NS}g")
        if g.get("data-name") == "memq"
    )
    assert len(list(curve.iter(f"{SVG_NS}circle"))) == 5
    # the table holds every metric, including per-slice ones and costs
    for metric in ("recall@5/cat3", "search_ms_p95", "bytes", "acc_overall"):
        assert f">{metric}<" in html


def test_report_leaves_out_sections_without_data() -> None:
    quality_only = ResultsFile(
        benchmark="longmemeval",
        results=[
            BenchResult(system="memq", dataset="s", metrics={"session_recall_all@5": 0.8}, seconds=1),
            BenchResult(system="chroma", dataset="s", metrics={"session_recall_all@5": 0.7}, seconds=1),
        ],
    )
    html = build_report([quality_only, ResultsFile(benchmark="empty")])
    assert [title(c) for c in svgs(html)] == ["longmemeval: overall metrics"]
    assert "Latency" not in html and "Learning curves" not in html and "No results in this file" in html
    assert "<svg" not in build_report([])


def test_bars_scale_to_their_values_and_ticks_cover_the_range() -> None:
    chart = ET.fromstring(
        svg.bar_chart(["a", "b"], {"x": [1.0, 4.0], "y": [2.0, None]}, title="t", y_label="v")
    )
    heights = [
        float(r.get("height")) for r in chart.iter(f"{SVG_NS}rect") if r.find(f"{SVG_NS}title") is not None
    ]
    assert len(heights) == 3 and heights[1] == pytest.approx(4 * heights[0], rel=0.02)
    for lo, hi in ((0, 1), (0.12, 0.87), (3, 1234), (-5, 5), (7, 7)):
        ticks = svg.nice_ticks(lo, hi)
        assert ticks[0] <= lo and ticks[-1] >= hi and ticks == sorted(ticks) and 2 <= len(ticks) <= 12


def test_labels_name_variant_and_dataset_only_where_they_vary() -> None:
    rs = [
        BenchResult(system="memq", dataset="d", variant="off", seconds=1),
        BenchResult(system="memq", dataset="d", variant="on", seconds=1),
        BenchResult(system="chroma", dataset="d", variant="off", seconds=1),
    ]
    assert labels(rs) == ["memq · off", "memq · on", "chroma · off"]
    assert labels(rs[:1]) == ["memq"]


def test_report_and_show_commands(tmp_path: Path) -> None:
    a = write_results(tmp_path / "locomo.json", retrieval_file())
    b = write_results(tmp_path / "ttl.json", ttl_file())
    out = tmp_path / "r" / "report.html"
    result = runner.invoke(app, ["bench", "report", str(a), str(b), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(svgs(out.read_text())) == 7
    shown = runner.invoke(app, ["bench", "show", str(a), "--metrics", "recall@5,search_ms_p50"])
    assert shown.exit_code == 0 and "mem0" in shown.output and "0.600" in shown.output
    (tmp_path / "bad.json").write_text(json.dumps({"hello": 1}))
    bad = runner.invoke(app, ["bench", "report", str(tmp_path / "bad.json"), "--out", str(out)])
    assert bad.exit_code == 2 and "not a memq results file" in " ".join(bad.output.split())


def test_terminal_table_marks_the_best_value() -> None:
    console = Console(record=True, width=200)
    console.print(results_table(retrieval_file()))
    text = console.export_text(clear=False)
    assert "recall@5" in text and "chroma" in text and "add_ms_p50" in text and "2.00" in text
    styled = console.export_html(inline_styles=True)
    assert re.search(r"font-weight: bold[^>]*>0\.600<", styled)  # memq has the best recall@5


def test_results_md_renders_tables_missing_sections_and_keeps_notes(tmp_path: Path) -> None:
    write_results(tmp_path / "locomo.json", retrieval_file())
    write_results(tmp_path / "ttl.json", ttl_file())
    (tmp_path / "ann.json").write_text(json.dumps({"benchmark": "ann", "rows": []}))
    doc = tmp_path / "results.md"
    result = runner.invoke(app, ["bench", "results-md", "--results-dir", str(tmp_path), "--out", str(doc)])
    assert result.exit_code == 0, result.output
    text = doc.read_text()
    assert "| system | recall@5 | recall@10 | ndcg@10 |" in text
    assert "| memq | **0.600** | **0.700** | **0.500** |" in text
    assert "| system | cat1 | cat2 | cat3 | cat4 | all |" in text  # recall@5 by category
    assert "add_ms_p50" in text and "add_ms_p99" not in text
    assert "Counts (the same for every row): questions 150, malformed_evidence 1." in text
    assert "| 0.3 | memq | 0.740 ± 0.000 |" in text  # the TTL table
    assert "memq bench longmemeval --out" in text and "_No results yet._" in text
    assert "ann.json" in text  # other JSON are named, not rendered
    # notes written inside a block survive regeneration
    doc.write_text(text.replace("<!-- notes:locomo -->\n", "<!-- notes:locomo -->\nHand-written remark.\n"))
    write_results_md(tmp_path, doc)
    assert "Hand-written remark." in doc.read_text()
    assert render(tmp_path) != doc.read_text()  # without keep_notes_from the remark is gone


def test_load_results_reads_the_first_ttl_format(tmp_path: Path) -> None:
    legacy = {
        "benchmark": "ttl",
        "data": "../shared/data/banking77/train.csv",
        "test": None,
        "rows": 10,
        "labels": 2,
        "k": 3,
        "seeds": 1,
        "curve_window": 5,
        "results": [
            {
                "learner": name,
                "noise": 0.3,
                "k": 3,
                "seeds": 1,
                "steps": 10,
                "last2000_mean": acc,
                "last2000_std": 0.0,
                "overall_mean": acc,
                "overall_std": 0.0,
                "seconds": 1.0,
                "curve": [acc, acc],
            }
            for name, acc in (("similarity", 0.5), ("memq", 0.7), ("oracle", 0.9))
        ],
    }
    path = tmp_path / "old.json"
    path.write_text(json.dumps(legacy))
    rf = load_results(path)
    assert rf.benchmark == "ttl" and [r.system for r in rf.results] == ["similarity", "memq", "oracle"]
    assert rf.results[0].dataset == "banking77" and rf.results[0].variant == "p=0.3"
    assert rf.extra["curves"][1]["step"] == [5, 10]
    with pytest.raises(InvalidInputError):
        load_results(tmp_path / "missing.json")


def test_bench_all_plans_and_regenerates_without_running(tmp_path: Path) -> None:
    assert [b.name for b in plan(None, "embedders,locomo")] == ["longmemeval", "conflict", "ttl"]
    assert [b.name for b in plan("ttl", None)] == ["ttl"]
    with pytest.raises(InvalidInputError):
        plan("nope", None)
    cmd = command_for(BY_NAME["ttl"], tmp_path / "ttl.json", quick=True)
    assert (
        cmd[1:5] == ["-m", "memq", "bench", "ttl"] and "--max-steps" in cmd and cmd[-1].endswith("ttl.json")
    )
    assert "--doc" in command_for(BY_NAME["ttl"], tmp_path / "ttl.json", quick=False)
    write_results(tmp_path / "ttl.json", ttl_file())
    doc, html = tmp_path / "results.md", tmp_path / "report.html"
    result = runner.invoke(
        app,
        [
            "bench",
            "all",
            "--no-run",
            "--results-dir",
            str(tmp_path),
            "--doc",
            str(doc),
            "--report",
            str(html),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "gap closed" in doc.read_text() and len(svgs(html.read_text())) == 3
    # a benchmark this install lacks is reported, not silently dropped
    ok = run_all([BY_NAME["locomo"]], results_dir=tmp_path, doc=doc, report=html, available=[])
    assert ok is False
    assert runner.invoke(app, ["bench", "all", "--only", "nope"]).exit_code == 2


def test_charts_draw_the_main_variant_and_compare_variants_apart() -> None:
    results = [
        BenchResult(
            system=s,
            dataset="d",
            variant=v,
            metrics={"recall@5": x, "recall@5/cat1": x / 2, "recall@5/gain": 0.1}
            if v == "online"
            else {"recall@5": x, "recall@5/cat1": x / 2},
            seconds=1,
        )
        for s, v, x in (
            ("memq", "default", 0.6),
            ("chroma", "default", 0.4),
            ("mem0", "default", 0.41),
            ("memq", "audit", 0.62),
            ("memq-memq", "online", 0.3),
        )
    ]
    charts = {title(c): c for c in svgs(build_report([ResultsFile(benchmark="locomo", results=results)]))}
    assert set(charts) == {"locomo (default): recall@5 by slice", "locomo: recall@5 by variant"}
    by_slice = charts["locomo (default): recall@5 by slice"]
    assert legend(by_slice) == ["memq", "chroma", "mem0"]
    assert "gain" not in {t.text for t in by_slice.iter(f"{SVG_NS}text")}  # online-only slice left out
    assert legend(charts["locomo: recall@5 by variant"]) == ["default", "audit", "online"]
