"""The benchmarks ``memq bench all`` runs, in order, with their documented default and quick settings.

Each runs as ``memq bench <name> <args> --out <results-dir>/<name>.json``. ``quick`` args cut the work
to a small slice for a smoke run (they never land in docs/results.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Benchmark:
    name: str
    title: str
    about: str
    args: tuple[str, ...] = ()
    quick: tuple[str, ...] = ()
    doc_args: tuple[str, ...] = field(default=())  # extra args only for the full (documented) run
    page: str | None = None  # the benchmark's own docs page (method, discussion), relative to the repo


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark(
        "locomo",
        "LoCoMo: turn-level evidence recall",
        "Each LoCoMo conversation ingested turn by turn into its own scope; evidence recall@k and NDCG@10 "
        "per question category (1–4; 5 apart), the audit-corrected sensitivity line, and the online-learning "
        "variant (feedback on conversations 1–5, evaluated on 6–10).",
        quick=("--conversations", "1", "--variants", "default", "--systems", "memq,chroma"),
        page="docs/benchmarks-locomo.md",
    ),
    Benchmark(
        "longmemeval",
        "LongMemEval (S sample): session and turn recall",
        "60 questions, each with its own haystack of sessions: session-level recall_all@k and ndcg_any@k "
        "(abstention questions skipped), turn-level recall_any@k, ingestion throughput on the oracle split.",
        quick=("--limit", "3", "--oracle-limit", "10", "--systems", "memq,chroma"),
        page="docs/benchmarks-longmemeval.md",
    ),
    Benchmark(
        "conflict",
        "MemoryAgentBench FactConsolidation: conflicting facts",
        "Facts ingested in order, later ones overriding earlier ones; whether the gold answer is in the top-k "
        "retrieved records, with supersession off and on, per context length. The LLM reconcile variant runs "
        "on its own (`memq bench conflict --llm SPEC --max-facts N`): with MEMQ_LLM set, `bench all` would "
        "otherwise send every fact through the LLM.",
        args=("--variants", "off,on"),
        quick=("--lengths", "6k", "--systems", "memq,chroma", "--variants", "off,on"),
        page="docs/benchmarks-conflict.md",
    ),
    Benchmark(
        "embedders",
        "Embedders: recall and speed",
        "The offline embedding models memq can use, measured on the same retrieval task; memq's default is "
        "chosen by these numbers.",
        quick=(
            "--embedders",
            "minilm",
            "--conversations",
            "1",
            "--latency-queries",
            "10",
            "--throughput-docs",
            "64",
        ),
        page="docs/benchmarks-embedders.md",
    ),
    Benchmark(
        "ttl",
        "Test-time learning: BANKING77 poisoned-experience stream",
        "An LLM-free agent classifies a stream of banking queries with k retrieved experiences and learns "
        "from reward; a share p of the stored experiences carry a wrong label. Accuracy on the final 2,000 "
        "steps, overall and on the held-out test set (memory frozen); gap closed toward the oracle.",
        args=("--noise", "0,0.3,0.5", "--seeds", "3"),
        quick=(
            "--noise",
            "0.3",
            "--seeds",
            "1",
            "--max-steps",
            "1500",
            "--learners",
            "similarity,memrl,memq",
        ),
        doc_args=("--doc", "docs/results-ttl.md"),
        page="docs/results-ttl.md",
    ),
)

BY_NAME = {b.name: b for b in BENCHMARKS}

# Benchmarks run by their own scripts (not by `memq bench all`): benchmark name → title, page, command.
OTHER_PAGES: dict[str, tuple[str, str, str]] = {
    "ann": (
        "Vector index (usearch HNSW vs exact)",
        "docs/benchmarks-ann.md",
        "python benchmarks/ann_bench.py",
    ),
    "store": (
        "Store throughput and latency (SQLite, PostgreSQL)",
        "docs/benchmarks-store.md",
        "python benchmarks/store_bench.py",
    ),
    "load": ("Load test of memq serve", "docs/benchmarks-load.md", "python benchmarks/load_test.py"),
    "llm_cost": (
        "LLM cost per add: memq reconcile vs mem0",
        "docs/benchmarks-llm-cost.md",
        "python benchmarks/llm_cost.py",
    ),
    "rl": (
        "Write policies trained by RL (GRPO) on FactConsolidation, held-out 64k/262k",
        "docs/rl.md",
        "memq rl train --seeds 0,1,2 --out benchmarks/results/rl.json --policy-dir benchmarks/results",
    ),
    "evolve": (
        "memq evolve: design-space search on LoCoMo (search half 1-5, held-out half 6-10)",
        "docs/rl.md",
        "memq evolve --bench locomo --trials 40 --out benchmarks/results/evolve.json",
    ),
}
