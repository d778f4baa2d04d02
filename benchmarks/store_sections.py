"""The sections of docs/benchmarks-store.md that store_bench.py does not generate.

The page is store_bench.py's generated part, then (kept as they are when it regenerates its part):

* store_peers.py's section, between ``<!-- BEGIN store_peers.py`` and ``<!-- END store_peers.py -->``,
  rendered here from benchmarks/results/store-peers.json (plus the load test's figure from
  benchmarks/results/load.json and PostgreSQL's from benchmarks/results/store.json);
* hand-written sections: a ``## `` heading followed by a ``<!-- hand-written`` comment.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from memq_bench.results import cpu_words

ROOT = Path(__file__).resolve().parent.parent
BEGIN = "<!-- BEGIN store_peers.py"
END = "<!-- END store_peers.py -->"
HAND = "<!-- hand-written"
LOAD_JSON = ROOT / "benchmarks" / "results" / "load.json"
STORE_JSON = ROOT / "benchmarks" / "results" / "store.json"
LOAD_BASELINE_RPS = 62.6  # issue 12: the load test's 8-client SQLite figure before the work
LOAD_COMMAND = ".venv/bin/python benchmarks/load_test.py"
# issue 12's own figures (its "Why", 100,000 records, busy 2-core machine), one per line of target_rows
BEFORE = (
    "56.8 ms (chroma 4.7 ms)",
    "12.7 ms (usearch 1.3 ms)",
    "325 ms (chroma 87 ms)",
    "269 ms",
    "172 s (57 s idle)",
    "5,195 records/s (index built later)",
    "1,281 records/s",
    f"{LOAD_BASELINE_RPS} req/s",
    "161 ms",
    "327 records/s",
    "-",
    "-",
)


# -- splicing ---------------------------------------------------------------------------------------


def _hand_written_start(lines: Sequence[str]) -> int | None:
    """Index of the heading of the first hand-written section."""
    for i, line in enumerate(lines):
        if line.startswith(HAND):
            j = i
            while j > 0 and not lines[j].startswith("## "):
                j -= 1
            return j
    return None


def kept_tail(old: str) -> str:
    """What store_bench.py keeps when it regenerates its part: from the first section it does not
    write (store_peers.py's or a hand-written one) to the end of the page."""
    lines = old.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.startswith(BEGIN)]
    hand = _hand_written_start(lines)
    if hand is not None:
        starts.append(hand)
    return "".join(lines[min(starts) :]) if starts else ""


def write_section(doc: Path, section: str) -> None:
    """Put ``section`` into ``doc``: in place of the previous one, else before the first hand-written
    section, else at the end."""
    old = doc.read_text() if doc.exists() else ""
    lines = old.splitlines(keepends=True)
    begin = next((i for i, line in enumerate(lines) if line.startswith(BEGIN)), None)
    if begin is not None:
        end = next((i for i in range(begin, len(lines)) if lines[i].startswith(END)), None)
        if end is None:
            raise SystemExit(f"{doc}: {BEGIN!r} without {END!r}; fix the page by hand")
        new = [*lines[:begin], section, *lines[end + 1 :]]
    else:
        at = _hand_written_start(lines)
        at = len(lines) if at is None else at
        head = lines[:at]
        if head and head[-1].strip():
            head.append("\n")
        new = [*head, section, "\n", *lines[at:]]
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text("".join(new).rstrip("\n") + "\n")


# -- rendering --------------------------------------------------------------------------------------


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:,.1f} ms" if v >= 10 else f"{v:.2f} ms"


def _rate(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f} records/s"


def _verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else ("**pass**" if ok else "**fail**")


def _rounds(m: dict[str, float]) -> str:
    """ ", median of 3 rounds (125.1–137.3)" for a load test of several rounds; "" for one."""
    if m.get("runs", 1) <= 1:
        return ""
    return f", median of {m['runs']:.0f} rounds ({m['throughput_rps_lowest']:.1f}–{m['throughput_rps_highest']:.1f})"


def load_test_row() -> tuple[dict[str, Any] | None, str]:
    """The 8-client SQLite figure of the committed load test, and when it was made."""
    if not LOAD_JSON.exists():
        return None, ""
    data = json.loads(LOAD_JSON.read_text())
    for r in data.get("results", []):
        if r.get("system") == "memq serve (sqlite)" and r.get("config", {}).get("clients") == 8:
            return r, str(data.get("created_at", ""))[:16].replace("T", " ")
    return None, ""


def postgres_row(size: int) -> tuple[dict[str, Any] | None, str]:
    """PostgreSQL at ``size`` from store_bench.py's committed run, and when it was made."""
    if not STORE_JSON.exists():
        return None, ""
    data = json.loads(STORE_JSON.read_text())
    for r in data.get("results", []):
        if r.get("backend") == "postgres" and r.get("size") == size:
            return r, str(data.get("created", ""))
    return None, ""


def target_rows(data: dict[str, Any]) -> list[list[str]]:
    res, p = data["results"], data["parameters"]
    m, c, u = res["memq"], res["chroma"], res["usearch"]
    n = f"{p['size']:,}"
    rows = [
        [
            f"hybrid search p50, {n} records, embedding excluded",
            f"≤ 2 × chroma dense p50 = {_ms(2 * c['dense_p50_ms'])}",
            f"{_ms(m['hybrid_p50_ms'])} (chroma dense {_ms(c['dense_p50_ms'])})",
            _verdict(m["hybrid_p50_ms"] <= 2 * c["dense_p50_ms"]),
        ],
        [
            f"dense search p50, {n} records",
            f"≤ raw usearch p50 + 1 ms = {_ms(u['k10_p50_ms'] + 1)}",
            f"{_ms(m['dense_p50_ms'])} (usearch k = 10: {_ms(u['k10_p50_ms'])})",
            _verdict(m["dense_p50_ms"] <= u["k10_p50_ms"] + 1),
        ],
    ]
    for mode in ("hybrid", "dense"):
        rows.append(
            [
                f"{mode} search p50 within one user (1% of the records)",
                "≤ 2 ms",
                f"{_ms(m[f'scoped_{mode}_p50_ms'])} (chroma, same `where`: {_ms(c['scoped_dense_p50_ms'])})",
                _verdict(m[f"scoped_{mode}_p50_ms"] <= 2.0),
            ]
        )
    rows += [
        [
            f"first search after the {n}-record bulk load",
            "≤ 1 s",
            f"{_ms(m['first_search_ms'])} (after reopening the store: {_ms(m['reopen_first_search_ms'])}"
            + (
                f"; its files out of the page cache: {_ms(m['reopen_cold_first_search_ms'])})"
                if m.get("reopen_cold_first_search_ms") is not None
                else ")"
            ),
            _verdict(m["first_search_ms"] <= 1000),
        ],
        [
            f"adds, bulk load of {n} records (the index kept current as they come)",
            "≥ 5,000 records/s",
            _rate(m["add_rps"]),
            _verdict(m["add_rps"] >= 5000),
        ],
        [
            f"adds with the index live: {m['live_adds']:,} more into the loaded store",
            "≥ 5,000 records/s",
            _rate(m["live_add_rps_excl_lookup"])
            + (
                f" ({_rate(m['live_add_rps'])} with {m['live_add_embed_s']:.1f} s in the embedder)"
                if m.get("live_add_embed_s", 0) > 0.5
                else ""
            ),
            _verdict(m["live_add_rps_excl_lookup"] >= 5000),
        ],
    ]
    load, when = load_test_row()
    target = 2.5 * LOAD_BASELINE_RPS
    rps = None if load is None else float(load["metrics"]["throughput_rps"])
    rows.append(
        [
            "load test, 8 clients, `memq serve` (SQLite), req/s",
            f"≥ 2.5 × {LOAD_BASELINE_RPS} = {target:.1f}",
            "-" if rps is None else f"{rps:.1f} req/s{_rounds(load['metrics'])} (load.json, {when} UTC)",
            _verdict(None if rps is None else rps >= target),
        ]
    )
    pg, pg_when = postgres_row(p["size"])
    rows += [
        [
            f"PostgreSQL hybrid p50, {n} records",
            "≤ 25 ms",
            "-" if pg is None else f"{_ms(pg['hybrid_p50_ms'])} (store.json, {pg_when})",
            _verdict(None if pg is None else pg["hybrid_p50_ms"] <= 25),
        ],
        [
            f"PostgreSQL adds, {n} records",
            "≥ 2,000 records/s",
            "-" if pg is None else f"{_rate(pg['add_rps'])} (store.json, {pg_when})",
            _verdict(None if pg is None else pg["add_rps"] >= 2000),
        ],
    ]
    s = res.get("memq_scale")
    rows += [
        [
            f"hybrid p50 at {s['size']:,} records (hashing vectors), embedding excluded"
            if s
            else "hybrid p50 at 1M",
            "≤ 10 ms",
            _ms(s["hybrid_p50_ms"]) if s else "-",
            _verdict(None if s is None else s["hybrid_p50_ms"] <= 10),
        ],
        [
            f"peak RSS at {s['size']:,} records" if s else "peak RSS at 1M",
            "reported",
            f"{s['peak_rss_mib']:,.0f} MiB" if s else "-",
            "reported" if s else "not measured",
        ],
    ]
    return rows


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|",
    ]
    return out + ["| " + " | ".join(r) + " |" for r in rows]


def render_section(data: dict[str, Any]) -> str:
    res, p, mach = data["results"], data["parameters"], data["machine"]
    m, c, u = res["memq"], res["chroma"], res["usearch"]
    n = f"{p['size']:,}"
    vectors = (
        f"memq's model-free `HashingEmbedder` ({p['embedding_dim']}-d, the size of all-MiniLM-L6-v2)"
        if p["vectors"] == "hashing"
        else f"{p['embedding_model']} ({p['embedding_dim']}-d, from the embedding cache)"
    )
    lines = [
        f"{BEGIN}: generated from benchmarks/results/store-peers.json (with load.json and store.json); "
        "do not edit by hand -->",
        f"## Issue 12 targets: memq beside chroma and raw usearch, {n} records, one run",
        "",
        f"Generated {data['created']} by `{data['command']}` ({data['seconds'] / 60:.0f} min), the load test "
        f"by `{LOAD_COMMAND}`; `--doc-only` re-renders this section. *before* quotes the figures in issue 12 "
        "(100,000 records, the same kind of busy 2-core machine, before the store work).",
        "",
    ]
    rows = target_rows(data)
    before = BEFORE if p["size"] == 100_000 else ("-",) * len(rows)
    rows = [[r[0], r[1], b, *r[2:]] for r, b in zip(rows, before, strict=True)]
    lines += _table(
        ["line (issue 12, *Done when*)", "target", "before (issue 12)", "measured", "result"], rows
    )
    rounds = p.get("rounds")
    asked = f"{rounds} rounds of {p['queries']} queries each" if rounds else f"{p['queries']} queries"
    lines += ["", f"### Side by side: the same {n} vectors and {asked}, k = {p['k']}", ""]
    lanes = [  # (system, scope, its results, the measurement's key there: <key>_p50_ms, ...)
        ("memq, hybrid (`Memory.search`)", "whole tenant", m, "hybrid"),
        ("memq, dense", "whole tenant", m, "dense"),
        ("chroma, dense (`collection.query`)", "whole collection", c, "dense"),
        ("raw usearch, k = 10", "whole index", u, "k10"),
        ("raw usearch, k = 200 (what memq's dense step fetches)", "whole index", u, "k200"),
        ("memq, hybrid", "one user (1%)", m, "scoped_hybrid"),
        ("memq, dense", "one user (1%)", m, "scoped_dense"),
        ('chroma, dense, `where={"user": ...}`', "one user (1%)", c, "scoped_dense"),
        # the light-row mirror switched off: what a reopened store pays for rows it has not read yet
        ("memq, hybrid, candidate rows read from SQLite", "whole tenant", m, "hybrid_sql_rows"),
        ("memq, hybrid, candidate rows read from SQLite", "one user (1%)", m, "scoped_hybrid_sql_rows"),
    ]
    # runs from before the mirror lack the last two lanes
    lanes = [lane for lane in lanes if f"{lane[3]}_p50_ms" in lane[2]]
    rows = [
        [label, scope, _ms(r[f"{key}_p50_ms"]), _ms(r[f"{key}_p95_ms"])]
        # each round's p50: how steady the machine was, and whether a system warms up
        + ([" / ".join(_ms(x) for x in r.get(f"{key}_round_p50_ms", [])) or "-"] if rounds else [])
        for label, scope, r, key in lanes
    ]
    head = ["system, search", "scope", "p50", "p95"] + (["p50 of each round"] if rounds else [])
    lines += _table(head, rows)
    lines += [
        "",
        "Where memq's own time goes inside a search (candidates, candidate rows, hydration, retrieval log, "
        "`Memory`'s work): the table *Where the time goes* above, from store_bench.py.",
    ]
    if any(key == "hybrid_sql_rows" for *_, key in lanes):
        lines += [
            "",
            "*Candidate rows read from SQLite*: the light-row mirror switched off for the call, as a reopened "
            "store reads the rows it has not seen yet (docs/algorithms.md). Lanes run one after another, so "
            "a busy spell can favour either; `benchmarks/mirror_ab.py` (`benchmarks/results/mirror.json`) "
            "compares the two on each question in turn.",
        ]
    lines += [
        "",
        f"Loading: memq {m['add_rps']:,.0f} records/s ({m['add_total_s']:.0f} s, of which "
        f"{m['add_embed_lookup_s']:.1f} s cache lookups of the vectors; {m['add_rps_excl_lookup']:,.0f} "
        f"records/s without them), chroma {c['add_rps']:,.0f} records/s, raw usearch {u['add_s']:.1f} s for "
        f"the graph alone (all cores). memq's store: {m['store_bytes'] / 2**20:,.0f} MiB on disk with "
        "its saved indexes.",
    ]
    s = res.get("memq_scale")
    if s:
        lines += ["", f"### memq alone at {s['size']:,} records", ""]
        lines += _table(
            ["measure", "value"],
            [
                ["add (hashing embedder included)", _rate(s["add_rps"])],
                ["add excluding the embedder", _rate(s["add_rps_excl_embed"])],
                ["first search after the load", _ms(s["first_search_ms"])],
                *(
                    [["reopen the store + its first search", _ms(s["reopen_first_search_ms"])]]
                    if "reopen_first_search_ms" in s
                    else []
                ),
                *(
                    [
                        [
                            "the same, the store's files dropped from the page cache first",
                            _ms(s["reopen_cold_first_search_ms"]),
                        ]
                    ]
                    if s.get("reopen_cold_first_search_ms") is not None
                    else []
                ),
                ["hybrid p50 / p95", f"{_ms(s['hybrid_p50_ms'])} / {_ms(s['hybrid_p95_ms'])}"],
                ["dense p50 / p95", f"{_ms(s['dense_p50_ms'])} / {_ms(s['dense_p95_ms'])}"],
                ["hybrid p50, one user (1%)", _ms(s["scoped_hybrid_p50_ms"])],
                ["dense p50, one user (1%)", _ms(s["scoped_dense_p50_ms"])],
                [
                    "RSS: texts built / after the load / peak",
                    f"{s['rss_texts_mib']:,.0f} / "
                    f"{s['rss_after_load_mib']:,.0f} / {s['peak_rss_mib']:,.0f} MiB",
                ],
                ["store on disk", f"{s['store_bytes'] / 2**20:,.0f} MiB"],
            ],
        )
        lines += [
            "",
            f"Peak RSS is the child process's (`benchmarks/store_scale.py`): memq's store and indexes plus "
            f"the benchmark's own {s['size']:,} texts ({s['rss_texts_mib']:,.0f} MiB once built, interpreter "
            f"and libraries included). Texts: the {s['size'] - s['synthetic_texts']:,} corpus texts, then "
            f"{s['synthetic_texts']:,} made by joining the first half of one to the second half of another "
            f"(mean {s['mean_chars']:.0f} characters).",
        ]
    lines += [
        "",
        "### How it was measured",
        "",
        f"* Vectors: {vectors}; every system gets the same vectors. Dense *quality* means nothing with "
        "hashing vectors; the work per vector is the same."
        if p["vectors"] == "hashing"
        else f"* Vectors: {vectors}.",
        "* Records: the store benchmark's corpus (real LongMemEval and LoCoMo turns and paragraphs"
        + (f", plus {p['synthetic_texts']:,} joined halves" if p["synthetic_texts"] else "")
        + f"), spread round-robin over {p['users']} users of one tenant; query *i* searches user *i* mod "
        f"{p['users']} in the scoped rows. memq adds in batches of {p['add_batch']} through `Memory.add`, "
        "with a warm embedding cache (embedding excluded); searches take query vectors from that cache.",
        "* memq: `Memory.search` end to end with the default configuration (retrieval log on), on a "
        "fresh SQLite file. chroma: `PersistentClient` (on disk, telemetry off), collection with "
        f"HNSW {json.dumps(c.get('hnsw'))}, the default `include` (documents, metadatas, distances). raw "
        "usearch: memq's graph settings (int8, connectivity 16, expansion 64), `threads=1` per query.",
        f"* One process for the {n}-record part; "
        + (
            f"all three systems loaded at once and their searches timed in {p['rounds']} interleaved "
            "rounds (each round runs every line of the side-by-side table, in turn, "
            + (
                f"over its own {p['queries']} questions: none repeats, so no cache sees one twice; "
                if p.get("distinct_queries")
                else f"over the same {p['queries']} questions; "
            )
            + "p50/p95 over all rounds), "
            if p.get("rounds")
            else "each system's searches timed after its own load, "
        )
        + f"{p['warmup_queries']} warm-up queries first; the 1M part runs in a child process after it.",
        f"* Machine: {mach['cpu_count']} cores{cpu_words(mach)}, shared. Load average (1/5/15 min) "
        f"{', '.join(map(str, mach['loadavg_start']))} at the start, "
        f"{', '.join(map(str, mach['loadavg_before_scale']))} before the 1M part, "
        f"{', '.join(map(str, mach['loadavg_end']))} at the end (the benchmark accounts for about 1).",
        f"* Versions: memq at `{(data.get('git') or {}).get('commit')}`, chromadb {data['versions'].get('chromadb')}, "
        f"usearch {data['versions'].get('usearch')}, SQLite {data['versions'].get('sqlite')}, "
        f"numpy {data['versions'].get('numpy')}.",
        END,
    ]
    return "\n".join(lines) + "\n"
