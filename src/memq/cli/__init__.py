"""The ``memq`` command line: ``memq --help`` lists the commands.

One module per concern, each adding its commands to the one app (:mod:`memq.cli.common`):
:mod:`.records` (add, get, list, history, update, invalidate, delete, purge, forget, archived,
restore, export, import, stats, reembed), :mod:`.learn` (search, feedback, prune-log, replay,
evaluate, learn status), :mod:`.service` (mcp; serve and keys come from :mod:`memq.server.cli`).
``memq bench``, ``demo``, ``evolve`` and ``rl`` are forwarded to the memq_bench package, imported only
when they run.
"""

from __future__ import annotations

import os

from memq.cli import learn, records, service  # noqa: F401  (each module registers its commands)
from memq.cli.common import app

__all__ = ["app", "run"]


def run() -> None:  # pragma: no cover - console entry point alias
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()
