"""Native extensions memq loads together must load in any order (a crash here kills every process
that uses the default embedder and the SQLite vector index).

usearch 2.26.2 and later crash in libstdc++ when onnxruntime is imported after them; pyproject.toml
pins usearch below that. Each order runs in a fresh interpreter, since a crash is a SIGSEGV.
"""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "first, second", [("usearch.index", "onnxruntime"), ("onnxruntime", "usearch.index")]
)
def test_onnxruntime_and_usearch_import_in_either_order(first: str, second: str) -> None:
    code = (
        f"import {first}, {second}\n"
        "import numpy as np\n"
        "from usearch.index import Index\n"
        "index = Index(ndim=4, metric='ip', dtype='f32')\n"
        "index.add(np.arange(2), np.eye(2, 4, dtype=np.float32))\n"
        "print(int(index.search(np.eye(1, 4, dtype=np.float32)[0], 1).keys[0]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-500:]}"
    assert done.stdout.strip() == "0"
