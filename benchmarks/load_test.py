#!/usr/bin/env python3
"""Load test of ``memq serve``: N concurrent HTTP clients mixing add / search / feedback.

For each backend (SQLite file, PostgreSQL from ``pgserver``) it:

1. creates an API key (tenant ``load``, read + write) in a fresh store;
2. starts ``memq serve`` as a subprocess on 127.0.0.1 (one worker, rate limit off: the load test
   measures the service, not the limiter), waits for ``/readyz``;
3. seeds it with LoCoMo turns (``/v1/memories/batch``) and warms the embedder up;
4. runs ``--clients`` asyncio + httpx clients that draw operations from the mix until
   ``--requests`` have been sent or ``--max-seconds`` have passed (bounded in count and time):
   ``add`` = ``POST /v1/memories`` (a LoCoMo turn), ``search`` = ``POST /v1/search`` (a LoCoMo
   question, k=5), ``feedback`` = ``POST /v1/retrievals/{id}/feedback`` on an earlier search of
   this run (each retrieval gets one feedback; with none pending the client searches instead);
5. records each request's latency (client side: send to full response) and every error
   (status ≥ 400 or a transport error), then stops the server.

The whole sequence runs ``--repeats`` times (default 3), each round on a fresh server and store
seeded alike, and each client count reports the round of median throughput, with the lowest and
highest beside it: a run lasts seconds, and one busy spell of a shared machine moves a single run's
throughput by several per cent.

Results: p50 / p95 / p99 / mean / max per operation, throughput and error counts in
``benchmarks/results/load.json`` (the ``memq bench`` results schema) and a table in
``docs/benchmarks-load.md``. Loopback only; nothing leaves the machine.

Usage::

    .venv/bin/python benchmarks/load_test.py              # the committed run
    .venv/bin/python benchmarks/load_test.py --quick      # smoke run (results in benchmarks/.cache/)
    .venv/bin/python benchmarks/load_test.py --doc-only   # re-render the docs page from the JSON
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from memq_bench.locomo import load_locomo
from memq_bench.results import (
    BenchResult,
    ResultsFile,
    cpu_words,
    package_versions,
    percentiles,
    write_results,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "load.json"
QUICK_RESULTS = ROOT / "benchmarks" / ".cache" / "load-quick.json"
DOC = ROOT / "docs" / "benchmarks-load.md"
DATA = Path(os.environ.get("MEMQ_DATA", ROOT.parent / "shared" / "data"))
OPS = ("add", "search", "feedback")
TENANT = "load"
console = Console()


# -- workload ----------------------------------------------------------------------------------------
def corpus() -> tuple[list[str], list[str]]:
    """LoCoMo turns (texts to add) and questions (queries)."""
    path = DATA / "locomo" / "locomo10.json"
    if not path.exists():
        sys.exit(f"LoCoMo not found at {path}; set MEMQ_DATA to the shared data directory")
    convs = load_locomo(path)
    texts = [t.indexed_text() for c in convs for t in c.turns if t.text.strip()]
    queries = [q.question for c in convs for q in c.questions if q.question.strip()]
    return texts, queries


def parse_mix(spec: str) -> dict[str, float]:
    mix: dict[str, float] = {}
    for part in spec.split(","):
        name, _, weight = part.partition("=")
        if name not in OPS or not weight:
            raise SystemExit(f"--mix takes add=W,search=W,feedback=W; got {spec!r}")
        mix[name] = float(weight)
    total = sum(mix.values())
    return {op: mix.get(op, 0.0) / total for op in OPS}


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {op: [] for op in OPS})
    errors: Counter = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    sent: int = 0


# -- the server under test ---------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """``memq serve`` in a subprocess on a loopback port."""

    def __init__(self, location: str, embedder: str, log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        where = ["--dsn", location] if location.startswith("postgresql") else ["--db", location]
        cmd = [sys.executable, "-m", "memq", "--embedder", embedder, "serve", *where]
        cmd += ["--port", str(self.port), "--rate", "0", "--log-level", "warning"]
        self.log = log
        self.proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=ROOT)

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"memq serve exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}"
                )
            try:
                if httpx.get(self.base + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"memq serve not ready after {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def make_key(location: str) -> str:
    from memq.server.keys import open_key_store

    ks = open_key_store(location)
    try:
        _, secret = ks.create(TENANT, ["read", "write"], name="load-test")
    finally:
        ks.close()
    return secret


def postgres_server(root: Path) -> tuple[Any, str]:
    """A local PostgreSQL (pgserver) with pgvector, and its base URL."""
    import pgserver

    server = pgserver.get_server(root, cleanup_mode="stop")
    server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
    return server, server.get_uri()


def fresh_database(base: str, name: str) -> str:
    """A new, empty database on the server at ``base``; its URL."""
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(urlsplit(base)._replace(path=f"/{name}"))


# -- the clients -------------------------------------------------------------------------------------
async def seed(client: httpx.AsyncClient, texts: list[str], n: int) -> None:
    for start in range(0, n, 100):
        items = [{"text": t} for t in texts[start : min(n, start + 100)]]
        r = await client.post("/v1/memories/batch", json={"items": items})
        r.raise_for_status()
    for q in ("warm up", "who moved?"):  # first embeds load the model; keep them out of the sample
        (await client.post("/v1/search", json={"query": q, "k": 5})).raise_for_status()


async def one_client(
    i: int,
    client: httpx.AsyncClient,
    args: argparse.Namespace,
    mix: dict[str, float],
    texts: list[str],
    queries: list[str],
    pending: deque[tuple[str, list[str]]],
    tally: Tally,
    deadline: float,
    advance: Any,
) -> None:
    rng = random.Random(args.seed * 1000 + i)
    ops, weights = list(mix), list(mix.values())
    while tally.sent < args.requests and time.monotonic() < deadline:
        tally.sent += 1
        op = rng.choices(ops, weights)[0]
        if op == "feedback" and not pending:
            op = "search"
        if op == "add":
            method, url, body = "POST", "/v1/memories", {"text": rng.choice(texts)}
        elif op == "search":
            method, url, body = "POST", "/v1/search", {"query": rng.choice(queries), "k": 5}
        else:
            rid, shown = pending.popleft()
            used = shown[:1]
            body = {"reward": float(rng.random() < 0.5), "used": used} if used else {"reward": 0.0}
            method, url = "POST", f"/v1/retrievals/{rid}/feedback"
        t0 = time.perf_counter()
        try:
            r = await client.request(method, url, json=body)
            ms = (time.perf_counter() - t0) * 1000
            if r.status_code >= 400:
                tally.errors[op] += 1
                if len(tally.error_samples) < 10:
                    tally.error_samples.append(f"{op} {r.status_code}: {r.text[:200]}")
            else:
                tally.latencies[op].append(ms)
                if op == "search":
                    got = r.json()
                    pending.append((got["id"], [h["record"]["id"] for h in got["hits"]]))
        except httpx.HTTPError as exc:
            tally.errors[op] += 1
            if len(tally.error_samples) < 10:
                tally.error_samples.append(f"{op} {type(exc).__name__}: {exc}")
        advance()


async def drive(
    base: str,
    key: str,
    args: argparse.Namespace,
    clients: int,
    texts: list[str],
    queries: list[str],
    *,
    seed_first: bool,
) -> tuple[Tally, float]:
    mix = parse_mix(args.mix)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120, limits=limits) as client:
        if seed_first:
            await seed(client, texts, args.seed_records)
        tally = Tally()
        pending: deque[tuple[str, list[str]]] = deque()
        with Progress(
            TextColumn("  load"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
        ) as progress:
            task = progress.add_task("load", total=args.requests)
            t0 = time.monotonic()
            deadline = t0 + args.max_seconds
            await asyncio.gather(
                *(
                    one_client(
                        i,
                        client,
                        args,
                        mix,
                        texts,
                        queries,
                        pending,
                        tally,
                        deadline,
                        lambda: progress.advance(task),
                    )
                    for i in range(clients)
                )
            )
            seconds = time.monotonic() - t0
    return tally, seconds


# -- one backend -------------------------------------------------------------------------------------
def run_backend(
    backend: str, args: argparse.Namespace, texts: list[str], queries: list[str]
) -> list[BenchResult]:
    """``args.repeats`` rounds, each on a fresh server and store seeded alike: in each, one load run
    per client count, in the order given (a later run starts with what the earlier one left: its
    records, its logged searches and feedback, the learner they trained). Each round starts from the
    same state, so the rounds' figures for a client count are repeats of one measurement."""
    runs: dict[int, list[Run]] = {clients: [] for clients in args.client_counts}
    server_log = ""
    with tempfile.TemporaryDirectory(prefix=f"memq-load-{backend}-") as tmp:
        root = Path(tmp)
        pg, base = postgres_server(root / "pg") if backend == "postgres" else (None, "")
        try:
            for rnd in range(1, args.repeats + 1):
                location = (
                    str(root / f"load-{rnd}.db") if pg is None else fresh_database(base, f"memq_load_{rnd}")
                )
                log = root / f"serve-{rnd}.log"
                key = make_key(location)
                served = Served(location, args.embedder, log)
                try:
                    served.wait_ready()
                    for i, clients in enumerate(args.client_counts):
                        console.print(
                            f"  round {rnd} of {args.repeats}, {clients} clients: up to {args.requests} "
                            f"requests / {args.max_seconds:.0f} s"
                        )
                        before = os.getloadavg()[0]
                        tally, seconds = asyncio.run(
                            drive(served.base, key, args, clients, texts, queries, seed_first=i == 0)
                        )
                        m = _metrics(tally, seconds)
                        runs[clients].append(Run(tally, m, seconds, before, os.getloadavg()[0]))
                        console.print(
                            f"  {m['requests']:.0f} requests, {m['errors']:.0f} errors, "
                            f"{m['throughput_rps']:.1f} req/s; "
                            + ", ".join(
                                f"{op} p50 {m.get(f'{op}_ms_p50', 0):.0f} / p99 {m.get(f'{op}_ms_p99', 0):.0f} ms"
                                for op in OPS
                            )
                        )
                finally:
                    served.stop()
                    server_log += log.read_text(errors="replace")
        finally:
            if pg is not None:
                pg.cleanup()
    crash = []
    if "Traceback" in server_log:
        crash = ["server log has a traceback: " + server_log[server_log.index("Traceback") :][:500]]
    return [_result(backend, args, clients, done, crash) for clients, done in runs.items()]


@dataclass
class Run:
    """One load run: its tally and metrics (``_metrics``), how long it took, and the 1-minute load
    average before and after."""

    tally: Tally
    metrics: dict[str, float]
    seconds: float
    load_before: float
    load_after: float

    @property
    def throughput(self) -> float:
        return self.metrics["throughput_rps"]


def median_run(runs: list[Run]) -> Run:
    """The run of median throughput (the lower of the middle two for an even count): its latencies
    and counts are reported whole, so they describe one run, and a busy spell of the shared machine
    during one run neither sets nor hides the figure."""
    ranked = sorted(runs, key=lambda r: r.throughput)
    return ranked[(len(ranked) - 1) // 2]


def _result(
    backend: str, args: argparse.Namespace, clients: int, runs: list[Run], crash: list[str]
) -> BenchResult:
    """One (backend, clients) row: the median run's metrics, with every run's throughput beside them."""
    mid = median_run(runs)
    rates = [r.throughput for r in runs]
    metrics = {
        **mid.metrics,
        "runs": float(len(runs)),
        "throughput_rps_lowest": min(rates),
        "throughput_rps_highest": max(rates),
        "errors_all_runs": sum(r.metrics["errors"] for r in runs),
    }
    return BenchResult(
        system=f"memq serve ({backend})",
        dataset="locomo10",
        variant=f"{clients} clients",
        config={
            "backend": backend,
            "clients": clients,
            "requests": args.requests,
            "max_seconds": args.max_seconds,
            "mix": parse_mix(args.mix),
            "seed_records": args.seed_records,
            "embedder": args.embedder,
            "k": 5,
            "workers": 1,
            "rate_limit": "off",
            "repeats": len(runs),
        },
        seed=args.seed,
        metrics=metrics,
        timings={
            "load_seconds": mid.seconds,
            "loadavg_before_1m": mid.load_before,
            "loadavg_after_1m": mid.load_after,
            **{f"run{j}_throughput_rps": rate for j, rate in enumerate(rates, start=1)},
            **{f"run{j}_loadavg_before_1m": r.load_before for j, r in enumerate(runs, start=1)},
        },
        seconds=sum(r.seconds for r in runs),
        versions=package_versions(),
        notes=[sample for r in runs for sample in r.tally.error_samples] + crash,
    )


def _metrics(tally: Tally, seconds: float) -> dict[str, float]:
    metrics: dict[str, float] = {}
    done = 0
    for op in OPS:
        lat = tally.latencies[op]
        done += len(lat)
        metrics[f"{op}_n"] = float(len(lat))
        metrics[f"{op}_errors"] = float(tally.errors[op])
        metrics.update(percentiles(lat, f"{op}_ms"))
        if lat:
            metrics[f"{op}_ms_max"] = max(lat)
    metrics["requests"] = float(done + sum(tally.errors.values()))
    metrics["errors"] = float(sum(tally.errors.values()))
    metrics["throughput_rps"] = done / seconds if seconds else 0.0
    return metrics


# -- the docs page -----------------------------------------------------------------------------------
EMBEDDER_NAMES = {
    "minilm": "all-MiniLM-L6-v2 on ONNX Runtime, one thread",
    "minilm-int8": "all-MiniLM-L6-v2 int8 on ONNX Runtime, one thread",
    "minilm-torch": "all-MiniLM-L6-v2 on one torch thread",
}


def embedder_name(spec: str) -> str:
    """How the docs page names the server's embedder (``--embedder``)."""
    if spec.startswith("hashing"):
        return "memq's model-free hashing embedder"
    return EMBEDDER_NAMES.get(spec, spec)


def render_doc(results: ResultsFile) -> str:
    args = results.args
    embedder = embedder_name(str(args.get("embedder", "minilm")))
    lines = [
        "# Load test: `memq serve` under concurrent clients",
        "",
        "`benchmarks/load_test.py` starts `memq serve` (one uvicorn worker, rate limit off) on a fresh",
        "store, seeds it with LoCoMo turns, and runs concurrent asyncio + httpx clients on loopback that",
        "mix `POST /v1/memories` (add one LoCoMo turn), `POST /v1/search` (a LoCoMo question, k = 5,",
        "hybrid dense + BM25) and `POST /v1/retrievals/{id}/feedback` (reward on an earlier search of the",
        "run). Latency is client-side, from sending the request to reading the whole response, and",
        f"includes the embedding of every added text and query ({embedder}).",
        "Each run is bounded by a request count and a time limit.",
        "",
        f"Run: `{args.get('command', '')}` on {results.created_at:%Y-%m-%d %H:%M} UTC, "
        f"{results.machine.get('cpus')} CPU cores{cpu_words(results.machine)}, "
        f"Python {results.machine.get('python')}.",
        "",
        "| backend | clients | requests | errors | throughput (req/s) | op | n | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in results.results:
        m = r.metrics
        first = True
        for op in OPS:
            if not m.get(f"{op}_n"):
                continue
            head = (
                f"| {r.config['backend']} | {r.config['clients']} | {m['requests']:.0f} | {m['errors']:.0f} "
                f"| {_throughput_cell(m)} "
                if first
                else "| | | | | "
            )
            lines.append(
                head + f"| {op} | {m[f'{op}_n']:.0f} | {m[f'{op}_ms_p50']:.0f} | {m[f'{op}_ms_p95']:.0f} "
                f"| {m[f'{op}_ms_p99']:.0f} | {m[f'{op}_ms_max']:.0f} |"
            )
            first = False
    mix = results.results[0].config["mix"] if results.results else {}
    lines += [
        "",
        "Mix: "
        + ", ".join(f"{op} {w:.0%}" for op, w in mix.items())
        + f"; {args.get('seed_records')} seeded records; a feedback with no search pending becomes a search."
        " Within a round, the runs of a backend share one server and store, in the order listed (a later"
        " run starts with what the earlier one left: its records, logged searches and feedback, and the"
        " learner they trained).",
        "",
    ]
    if any(r.metrics.get("runs", 1) > 1 for r in results.results):
        lines += [
            "The sequence ran in several rounds, each on a fresh server and store seeded alike; a row",
            "reports its round of median throughput (that run's requests, errors and latencies), with the",
            "lowest and highest throughput of its rounds in parentheses. Errors of the other rounds are",
            "listed below.",
            "",
        ]
    for r in results.results:
        t = r.timings
        runs = int(r.metrics.get("runs", 1))
        every = (
            " Rounds in order: "
            + ", ".join(f"{t[f'run{j}_throughput_rps']:.1f}" for j in range(1, runs + 1))
            + f" req/s; {r.metrics.get('errors_all_runs', 0):.0f} errors in all."
            if runs > 1
            else ""
        )
        lines.append(
            f"* {r.system}, {r.variant}: {r.metrics['requests']:.0f} requests in {t['load_seconds']:.1f} s; "
            "1-minute load average "
            f"{t['loadavg_before_1m']:.1f} before, {t['loadavg_after_1m']:.1f} after.{every}"
        )
        lines += [f"  * error: `{n}`" for n in r.notes]
    lines += ["", *NOTES]
    return "\n".join(lines) + "\n"


def _throughput_cell(m: dict[str, float]) -> str:
    """The throughput of a row: the median run's, and the range of its runs when there are several."""
    if m.get("runs", 1) <= 1:
        return f"{m['throughput_rps']:.1f}"
    return (
        f"{m['throughput_rps']:.1f} ({m['throughput_rps_lowest']:.1f}–{m['throughput_rps_highest']:.1f}, "
        f"{m['runs']:.0f} rounds)"
    )


NOTES = [
    "## Reading the numbers",
    "",
    "* **The machine is small and shared.** The committed run is on a 2-core VM that other engineers'",
    "  jobs share (see the load averages above for how busy it was), and the load generator itself",
    "  runs on the same two cores as the server. The numbers are a floor for this",
    "  hardware, not a capacity figure; re-run the script on your own machine.",
    "* **Each add and search embeds one text** (one thread) before the store works; with N clients a",
    "  request waits behind the others' work on two cores, so p95/p99 grow with N (the store's own",
    "  share: [benchmarks-store.md](benchmarks-store.md)).",
    "  Feedback embeds nothing and is the cheapest.",
    "* **Throughput moves with the machine.** The rounds of one run differ by several per cent, and",
    "  runs hours apart by more: the VM's host is shared with other VMs, and it is not always the same",
    "  kind of CPU (the run line above names this one). Compare figures within a run.",
    "* **More clients queue.** From 2 to 8 clients throughput stays in the same range while the p50 of",
    "  add and search grows several times: the two cores are already saturated (by the server, the load",
    "  generator and other jobs), so extra concurrent requests wait rather than run.",
    "* **The committed load has zero errors** (no 4xx/5xx, no transport error). Loads above it were",
    "  not measured here; the server queues requests in uvicorn (one worker) rather than refusing them,",
    "  and the per-key rate limit (`memq serve --rate`, default 50 req/s) is off in this test.",
    "* PostgreSQL runs from `pgserver` (a local PostgreSQL 16 + pgvector over a Unix socket), on the",
    "  same cores; a networked PostgreSQL adds a round trip per query but moves the database's CPU",
    "  elsewhere. `memq serve --workers N --dsn …` scales the API tier; this test uses one worker.",
    "",
    "Re-run: `.venv/bin/python benchmarks/load_test.py` (a few minutes here; `--quick` for a smoke run,",
    "`--doc-only` to re-render this page from `benchmarks/results/load.json`).",
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", default="sqlite,postgres", help="Comma list: sqlite, postgres.")
    parser.add_argument(
        "--clients",
        default="2,8",
        help="Concurrent clients: a number or a comma list (one run each, same server).",
    )
    parser.add_argument("--requests", type=int, default=1000, help="Requests per run (upper bound).")
    parser.add_argument("--max-seconds", type=float, default=150.0, help="Time limit per run.")
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="Rounds, each on a fresh server and store (default 3; 1 with --quick); each client count "
        "reports its round of median throughput, every round's throughput beside it.",
    )
    parser.add_argument("--mix", default="add=0.3,search=0.5,feedback=0.2", help="Operation weights.")
    parser.add_argument("--seed-records", type=int, default=500, help="Records added before the load.")
    parser.add_argument("--embedder", default="minilm", help="Embedder spec of the server (minilm, hashing).")
    parser.add_argument("--seed", type=int, default=7, help="Random seed of the clients.")
    parser.add_argument(
        "--quick", action="store_true", help="Smoke run: 4 clients, 60 requests, results in .cache."
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="Results JSON (default: benchmarks/results/load.json)."
    )
    parser.add_argument(
        "--doc", type=Path, default=None, help="Docs page (default: docs/benchmarks-load.md)."
    )
    parser.add_argument(
        "--doc-only", action="store_true", help="Re-render the docs page from the results JSON."
    )
    args = parser.parse_args()
    out = args.out or (QUICK_RESULTS if args.quick else RESULTS)
    doc = args.doc or (None if args.quick else DOC)
    if args.doc_only:
        results = ResultsFile.model_validate_json(out.read_text())
        (doc or DOC).write_text(render_doc(results))
        console.print(f"wrote {doc or DOC}")
        return
    if args.quick:
        args.clients, args.requests, args.seed_records, args.max_seconds = "4", 60, 100, 60.0
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.repeats < 1:
        raise SystemExit(f"--repeats must be at least 1; got {args.repeats}")
    try:
        args.client_counts = [int(c) for c in str(args.clients).split(",") if c.strip()]
    except ValueError:
        raise SystemExit(
            f"--clients takes a number or a comma list, e.g. 2,8; got {args.clients!r}"
        ) from None
    texts, queries = corpus()
    command = "python benchmarks/load_test.py " + " ".join(sys.argv[1:])
    results = ResultsFile(
        benchmark="load", args={**vars(args), "out": str(out), "doc": str(doc), "command": command.strip()}
    )
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        if backend not in ("sqlite", "postgres"):
            raise SystemExit(f"unknown backend {backend!r}; use sqlite or postgres")
        console.print(f"[bold]{backend}[/]")
        results.results.extend(run_backend(backend, args, texts, queries))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_results(out, results)
    console.print(f"wrote {out}")
    if doc is not None:
        doc.write_text(render_doc(results))
        console.print(f"wrote {doc}")
    if any(r.metrics["errors_all_runs"] for r in results.results):
        sys.exit(1)


if __name__ == "__main__":
    main()
