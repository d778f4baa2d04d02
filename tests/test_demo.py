"""`memq demo`: the BANKING77-style stream end to end on a tiny CSV (real MiniLM), report included."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from memq.cli import app
from memq_bench.demo import run_ttl_demo

INTENTS = {
    "card_pin": "how do I reset the pin number of my card",
    "exchange_rate": "what is the exchange rate for euros today",
    "lost_card": "I lost my card yesterday, please block it",
}


@pytest.fixture(scope="module")
def tiny_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = ["text,label"]
    for i in range(16):
        for label, text in INTENTS.items():
            rows.append(f'"{text}, request {i}",{label}')
    path = tmp_path_factory.mktemp("demo") / "tiny.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def cache(tiny_csv: Path) -> Path:
    """One embedding cache for the module: the second run embeds nothing."""
    return tiny_csv.parent / "cache.sqlite"


def test_demo_runs_the_stream_and_writes_the_report(tmp_path: Path, tiny_csv: Path, cache: Path) -> None:
    console = Console(record=True, width=120)
    out = tmp_path / "demo"
    summary = run_ttl_demo(data=tiny_csv, jobs=1, out_dir=out, cache=cache, console=console)
    text = console.export_text()
    assert summary["steps"] == 48 and set(summary["final"]) == {"similarity", "memrl", "memq", "oracle"}
    assert all(0.0 <= v <= 1.0 for v in summary["final"].values())
    assert summary["gap_closed"]["oracle"] in (None, 1.0)
    for header in ("Q1", "Q4", "last 48", "gap closed"):
        assert header in text
    assert str(summary["report"].resolve()) in text.replace("\n", "")
    results = json.loads(summary["results"].read_text())
    assert results["benchmark"] == "ttl" and {r["variant"] for r in results["results"]} == {"p=0.3"}
    assert all({"acc_q1", "acc_q4", "acc_last2000"} <= set(r["metrics"]) for r in results["results"])
    html = summary["report"].read_text()
    assert html.count("<svg") == 2  # the learning curves and the final-window bars
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    for learner in ("similarity", "memrl", "memq", "oracle"):
        assert f'data-name="{learner}"' in html


def test_demo_command_and_bad_input(tmp_path: Path, tiny_csv: Path, cache: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    args = [
        "--data",
        str(tiny_csv),
        "--jobs",
        "1",
        "--max-steps",
        "30",
        "--out-dir",
        "d",
        "--cache",
        str(cache),
    ]
    result = runner.invoke(app, ["demo", *args])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "d" / "report.html").exists()
    assert json.loads((tmp_path / "d" / "ttl-demo.json").read_text())["results"][0]["config"]["steps"] == 30
    bad = runner.invoke(app, ["demo", "--dataset", "nope"])
    assert bad.exit_code == 2 and "banking77 or locomo" in bad.output
    missing = runner.invoke(app, ["demo", "--data", str(tmp_path / "none.csv")])
    assert missing.exit_code == 2 and "does not exist" in " ".join(missing.output.split())
