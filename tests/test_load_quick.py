"""The load test script runs end to end in its smoke mode (``--quick``): it starts ``memq serve``,
drives concurrent clients, and writes a results file with zero errors.

SQLite and the model-free embedder only, to stay fast; the committed run (MiniLM, SQLite and
PostgreSQL) is ``benchmarks/load_test.py`` without ``--quick``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOCOMO = ROOT.parent / "shared" / "data" / "locomo" / "locomo10.json"


@pytest.mark.skipif(not LOCOMO.exists(), reason=f"the load test reads LoCoMo from {LOCOMO}")
def test_load_script_quick_run(tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    cmd = [
        sys.executable,
        "benchmarks/load_test.py",
        "--quick",
        "--backends",
        "sqlite",
        "--embedder",
        "hashing",
        "--repeats",
        "2",
    ]
    doc = tmp_path / "load.md"
    done = subprocess.run(
        [*cmd, "--out", str(out), "--doc", str(doc)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads(out.read_text())
    assert results["benchmark"] == "load"
    (run,) = results["results"]
    m = run["metrics"]
    assert run["system"] == "memq serve (sqlite)" and run["config"]["clients"] == 4
    assert m["errors"] == 0 and m["requests"] == 60
    assert m["add_n"] + m["search_n"] + m["feedback_n"] == 60
    assert m["search_n"] > 0 and m["feedback_n"] > 0  # feedback went to real retrieval ids
    assert 0 < m["search_ms_p50"] <= m["search_ms_p95"] <= m["search_ms_p99"]
    # two rounds: the row is the slower one (the lower of the middle two), both throughputs beside it
    rates = [run["timings"]["run1_throughput_rps"], run["timings"]["run2_throughput_rps"]]
    assert m["runs"] == 2 and run["config"]["repeats"] == 2
    assert m["throughput_rps"] == m["throughput_rps_lowest"] == min(rates)
    assert m["throughput_rps_highest"] == max(rates) and m["errors_all_runs"] == 0
    page = doc.read_text()
    assert f"| {min(rates):.1f} ({min(rates):.1f}–{max(rates):.1f}, 2 rounds) |" in page
    assert f"Rounds in order: {rates[0]:.1f}, {rates[1]:.1f} req/s" in page
