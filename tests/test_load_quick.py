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
    ]
    done = subprocess.run([*cmd, "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
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
