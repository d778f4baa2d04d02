#!/usr/bin/env python3
"""LLM cost per ``add``: memq's ``reconcile`` manager beside mem0's two published pipelines, on LoCoMo.

What is measured, per add (one add = 2 consecutive turns of a LoCoMo session, as mem0's own LoCoMo
evaluation adds them; speaker A's turns are role ``user``, speaker B's ``assistant``, each text
prefixed with the speaker's name):

* **memq reconcile** — the real manager runs through ``Memory.add(items, manager="reconcile")`` with
  the real :class:`memq.llm.client.OpenAICompatLLM`, against :class:`memq.llm.replay.ReplayServer`
  (a loopback OpenAI-compatible server). Its prompts are the ones memq really sent (recorded by the
  server), including the retrieved neighbour memories from the growing store and the JSON schema sent
  as ``response_format`` (counted as prompt tokens, as OpenAI bills it).
* **mem0 v1** (extract + update-memory decision, 2 calls; the second skipped without facts) and
  **mem0 v2** (one additive call with the ~34k-character system prompt) — prompts built with mem0's
  own templates and builders from the installed ``mem0ai`` (``mem0/configs/prompts.py``,
  ``mem0/memory/utils.py``) on the same messages, with neighbour memories retrieved from the same
  store (top 5 per fact for v1, top 10 for the messages for v2, ids remapped to integers as mem0
  does) and v2's last 10 messages of the conversation.

The answers are *recorded*, not generated: a deterministic stand-in extracts the facts (declarative
sentences of 6+ words, prefixed with the speaker, at most 4 per add) and decides ADD / UPDATE / NOOP
by word overlap with the quoted memories. All three pipelines get the same facts and decisions, written
in each pipeline's own output format, so completion tokens compare like for like; they are not what a
real model would write. Tokens are counted with one tokenizer for everything: Gemma 3's (the
embedded model's GGUF vocabulary, via llama.cpp ``tokenize``), plus the Gemma chat-template tokens
of each message.

Usage::

    .venv/bin/python benchmarks/llm_cost.py                  # 10 conversations x 40 adds, writes results + docs
    .venv/bin/python benchmarks/llm_cost.py --adds 0         # every add of every conversation
    .venv/bin/python benchmarks/llm_cost.py --quick          # 2 x 10 adds into benchmarks/.cache/
    .venv/bin/python benchmarks/llm_cost.py --doc-only       # regenerate the docs page from the JSON
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
DATA = Path("/work/shared/data/locomo/locomo10.json")
RESULTS = ROOT / "benchmarks" / "results" / "llm_cost.json"
DOC = ROOT / "docs" / "benchmarks-llm-cost.md"
CACHE = ROOT / "benchmarks" / ".cache"
FIXED_DATE = "2026-01-01"  # mem0 v2 prints today's date; a fixed one keeps runs comparable
MAX_FACTS = 4

console = Console()


# -- data ----------------------------------------------------------------------------------------------
@dataclass
class Turn:
    speaker: str
    text: str
    role: str  # "user" (speaker A) or "assistant" (speaker B)


@dataclass
class Conversation:
    sample_id: str
    adds: list[list[Turn]]


def load_locomo(path: Path) -> list[Conversation]:
    """LoCoMo conversations as lists of adds (2 turns each, never across a session boundary)."""
    out = []
    for sample in json.loads(path.read_text(encoding="utf-8")):
        conv = sample["conversation"]
        speaker_a = conv["speaker_a"]
        sessions = sorted(
            (int(m.group(1)), conv[key])
            for key in conv
            if (m := re.fullmatch(r"session_(\d+)", key)) and isinstance(conv[key], list)
        )
        adds: list[list[Turn]] = []
        for _, turns in sessions:
            batch = [
                Turn(t["speaker"], t["text"], "user" if t["speaker"] == speaker_a else "assistant")
                for t in turns
                if t.get("text")
            ]
            adds.extend(batch[i : i + 2] for i in range(0, len(batch), 2))
        out.append(Conversation(sample["sample_id"], adds))
    return out


# -- the recorded answers (a deterministic stand-in for the model) ------------------------------------
_SENT = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[a-z0-9']+")


def oracle_facts(turns: Sequence[Turn]) -> list[str]:
    """Declarative sentences of 6+ words, as ``Speaker: sentence``, at most MAX_FACTS per add."""
    facts = []
    for t in turns:
        for sent in _SENT.split(t.text.strip()):
            sent = sent.strip()
            if len(sent.split()) >= 6 and not sent.endswith("?"):
                facts.append(f"{t.speaker}: {sent}"[:240])  # memq's Facts allows 240 characters
    return facts[:MAX_FACTS]


def words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def jaccard(a: str, b: str) -> float:
    wa, wb = words(a), words(b)
    return len(wa & wb) / len(wa | wb) if wa and wb else 0.0


def oracle_decisions(facts: Sequence[str], memories: Sequence[str]) -> list[dict[str, Any]]:
    """NOOP at word-Jaccard >= 0.7, UPDATE at >= 0.4 (each memory touched once), else ADD."""
    out, touched = [], set()
    for i, fact in enumerate(facts):
        best, score = None, 0.0
        for j, mem in enumerate(memories):
            s = jaccard(fact, mem)
            if s > score:
                best, score = j, s
        if best is not None and score >= 0.7:
            out.append({"fact": i, "op": "NOOP", "id": best, "text": None, "reason": "already known"})
        elif best is not None and score >= 0.4 and best not in touched:
            touched.add(best)
            out.append({"fact": i, "op": "UPDATE", "id": best, "text": fact, "reason": "more detail"})
        else:
            out.append({"fact": i, "op": "ADD", "id": None, "text": None, "reason": "new"})
    return out


_LINE = re.compile(r"^\[(\d+)\] (\".*\")(?: \(flagged: [^)]*\))?$")


def quoted_block(text: str, label: str) -> list[str]:
    """The JSON-quoted entries of a ``<label>...</label>`` block in a memq prompt."""
    match = re.search(rf"<{label}>\n(.*?)\n</{label}>", text, re.DOTALL)
    if not match:
        return []
    out = []
    for line in match.group(1).splitlines():
        m = _LINE.match(line)
        if m:
            out.append(json.loads(m.group(2)))
    return out


@dataclass
class Responder:
    """Answers memq's requests from the oracle; remembers what it answered for token counting."""

    facts: list[str] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    memories_shown: list[str] = field(default_factory=list)

    def __call__(self, req: Any) -> str:
        fmt = req.response_format or {}
        name = (fmt.get("json_schema") or {}).get("name", "")
        user = req.messages[-1]["content"] if req.messages else ""
        if name == "Facts":
            body: dict[str, Any] = (
                {"status": "facts", "facts": self.facts} if self.facts else {"status": "none", "facts": []}
            )
        elif name == "Decisions":
            facts = quoted_block(user, "facts")
            memories = quoted_block(user, "memories")
            self.memories_shown = memories
            self.decisions = oracle_decisions(facts, memories)
            body = {"decisions": self.decisions}
        else:
            raise RuntimeError(f"unexpected request for schema {name!r}")
        content = json.dumps(body, ensure_ascii=False)
        self.answers.append(content)
        return content


# -- tokens ------------------------------------------------------------------------------------------
class Tokenizer:
    """Gemma 3's tokenizer (vocabulary only, from the embedded model's GGUF) via llama.cpp."""

    name = "Gemma 3 tokenizer (gemma3-270m GGUF vocabulary, llama.cpp tokenize) + Gemma chat-template tokens"

    def __init__(self) -> None:
        from llama_cpp import Llama

        from memq.llm.local import gemma_path

        self._llama = Llama(model_path=gemma_path(), vocab_only=True, verbose=False)
        self.per_message = len(self._tok("<start_of_turn>user\n<end_of_turn>\n", special=True))
        self.reply_primer = len(self._tok("<start_of_turn>model\n", special=True))

    def _tok(self, text: str, special: bool = False) -> list[int]:
        return self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=special)

    def text(self, text: str) -> int:
        return len(self._tok(text))

    def messages(self, messages: Sequence[dict[str, Any]]) -> int:
        """Prompt tokens of a chat: contents + per-message template tokens + BOS + the reply primer."""
        return (
            1
            + sum(self.text(str(m.get("content") or "")) + self.per_message for m in messages)
            + self.reply_primer
        )


# -- mem0's prompts, built with mem0's own code -----------------------------------------------------
class Mem0Prompts:
    def __init__(self) -> None:
        from mem0.configs import prompts
        from mem0.memory import utils

        self.p = prompts
        self.u = utils
        self.version = importlib.metadata.version("mem0ai")
        # v1's extraction prompt: get_fact_retrieval_messages gives USER_MEMORY_EXTRACTION_PROMPT for a
        # user's memory; FACT_RETRIEVAL_PROMPT is the legacy one. The shorter is used (the cheaper mem0).
        self.v1_extract_system = min(
            (prompts.USER_MEMORY_EXTRACTION_PROMPT, prompts.FACT_RETRIEVAL_PROMPT), key=len
        )

    @staticmethod
    def messages_of(turns: Sequence[Turn]) -> list[dict[str, str]]:
        return [{"role": t.role, "content": f"{t.speaker}: {t.text}"} for t in turns]

    def v1_extract(self, turns: Sequence[Turn]) -> list[dict[str, str]]:
        parsed = self.u.parse_messages(self.messages_of(turns))
        return [
            {"role": "system", "content": self.v1_extract_system},
            {"role": "user", "content": f"Input:\n{parsed}"},
        ]

    def v1_update(self, old: list[dict[str, str]], facts: list[str]) -> list[dict[str, str]]:
        return [{"role": "user", "content": self.p.get_update_memory_messages(old, facts)}]

    def v2(
        self, turns: Sequence[Turn], existing: list[dict[str, str]], last: list[dict[str, str]]
    ) -> list[dict[str, str]]:
        user = self.p.generate_additive_extraction_prompt(
            existing_memories=existing,
            new_messages=self.u.parse_messages(self.messages_of(turns)),
            last_k_messages=last,
            current_date=FIXED_DATE,
            timestamp=FIXED_DATE,
        )
        return [
            {"role": "system", "content": self.p.ADDITIVE_EXTRACTION_PROMPT},
            {"role": "user", "content": user},
        ]


def v1_answer(facts: list[str], old: list[dict[str, str]], decisions: list[dict[str, Any]]) -> str:
    """mem0 v1's update-memory answer for the same decisions: every old memory, plus the new facts."""
    events = {str(i): {"id": m["id"], "text": m["text"], "event": "NONE"} for i, m in enumerate(old)}
    n = len(old)
    for d in decisions:
        fact = facts[d["fact"]]
        if d["op"] == "UPDATE" and str(d["id"]) in events:
            e = events[str(d["id"])]
            events[str(d["id"])] = {"id": e["id"], "text": fact, "event": "UPDATE", "old_memory": e["text"]}
        elif d["op"] == "ADD":
            events[f"new{n}"] = {"id": str(n), "text": fact, "event": "ADD"}
            n += 1
    return json.dumps({"memory": list(events.values())}, ensure_ascii=False)


def v2_answer(facts: list[str]) -> str:
    return json.dumps(
        {
            "memory": [
                {"id": str(i), "text": f, "attributed_to": "user", "linked_memory_ids": []}
                for i, f in enumerate(facts)
            ]
        },
        ensure_ascii=False,
    )


# -- the run -----------------------------------------------------------------------------------------
@dataclass
class AddCost:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    schema_tokens: int = 0  # memq only: the response_format JSON schema, included in prompt_tokens


def summarise(costs: Sequence[AddCost]) -> dict[str, Any]:
    def col(name: str) -> list[int]:
        return [getattr(c, name) for c in costs]

    prompt = col("prompt_tokens")
    qs = statistics.quantiles(prompt, n=20) if len(prompt) > 1 else [prompt[0]] * 19
    return {
        "adds": len(costs),
        "calls_per_add": statistics.fmean(col("calls")),
        "prompt_tokens_per_add": statistics.fmean(prompt),
        "prompt_tokens_p50": statistics.median(prompt),
        "prompt_tokens_p95": qs[18],
        "completion_tokens_per_add": statistics.fmean(col("completion_tokens")),
        "schema_tokens_per_add": statistics.fmean(col("schema_tokens")),
        "total_prompt_tokens": sum(prompt),
        "total_completion_tokens": sum(col("completion_tokens")),
        "total_calls": sum(col("calls")),
    }


def run(conversations: list[Conversation], adds_per_conv: int) -> dict[str, Any]:
    from memq import Memory, Scope
    from memq.embed import default_embedder
    from memq.llm.replay import ReplayServer

    tok = Tokenizer()
    mem0 = Mem0Prompts()
    embedder = default_embedder()
    costs: dict[str, list[AddCost]] = {"memq_reconcile": [], "mem0_v1": [], "mem0_v2": []}
    per_conv = []
    ops: dict[str, int] = {}
    usage_calls = 0
    total = sum(len(c.adds[:adds_per_conv] if adds_per_conv else c.adds) for c in conversations)
    tmp = Path(tempfile.mkdtemp(prefix="memq-llm-cost-"))
    with (
        ReplayServer() as server,
        Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress,
    ):
        task = progress.add_task("adds", total=total)
        for conv in conversations:
            responder = Responder()
            server.respond_with(responder)
            llm = server.llm(timeout=30.0)
            scope = Scope(tenant="locomo", user=conv.sample_id)
            mem = Memory(str(tmp / f"{conv.sample_id}.db"), embedder=embedder, scope=scope, llm=llm)
            history: list[dict[str, str]] = []  # mem0 v2's message store (last 10)
            adds = conv.adds[:adds_per_conv] if adds_per_conv else conv.adds
            first = len(costs["memq_reconcile"])
            try:
                for turns in adds:
                    facts = oracle_facts(turns)
                    # mem0's neighbours come from the same store, before this add writes
                    v1_old: list[dict[str, str]] = []
                    seen: set[str] = set()
                    for fact in facts:
                        for hit in mem.search(fact, k=5).hits:
                            if hit.record.id not in seen:
                                seen.add(hit.record.id)
                                v1_old.append({"id": str(len(v1_old)), "text": hit.record.text})
                    parsed = mem0.u.parse_messages(mem0.messages_of(turns))
                    v2_existing = [
                        {"id": str(i), "text": h.record.text}
                        for i, h in enumerate(mem.search(parsed, k=10).hits)
                    ]
                    # memq: the real manager, real client, real HTTP
                    responder.facts, responder.answers, responder.decisions = facts, [], []
                    before = len(server.requests)
                    mem.add(
                        [{"text": t.text, "metadata": {"speaker": t.speaker}} for t in turns],
                        manager="reconcile",
                    )
                    sent = server.requests[before:]
                    c = AddCost(calls=len(sent))
                    for req in sent:
                        c.prompt_tokens += tok.messages(req.messages)
                        schema = (req.response_format or {}).get("json_schema", {}).get("schema")
                        if schema is not None:
                            n = tok.text(json.dumps(schema, separators=(",", ":")))
                            c.schema_tokens += n
                            c.prompt_tokens += n
                        name = (req.response_format or {}).get("json_schema", {}).get("name", "?")
                        ops[name] = ops.get(name, 0) + 1
                    c.completion_tokens = sum(tok.text(a) for a in responder.answers)
                    costs["memq_reconcile"].append(c)
                    # mem0 v1: extract, then (if any facts) the update-memory decision
                    v1 = AddCost(calls=1)
                    v1.prompt_tokens = tok.messages(mem0.v1_extract(turns))
                    v1.completion_tokens = tok.text(json.dumps({"facts": facts}, ensure_ascii=False))
                    if facts:
                        decisions = oracle_decisions(facts, [m["text"] for m in v1_old])
                        v1.calls += 1
                        v1.prompt_tokens += tok.messages(mem0.v1_update(v1_old, facts))
                        v1.completion_tokens += tok.text(v1_answer(facts, v1_old, decisions))
                    costs["mem0_v1"].append(v1)
                    # mem0 v2: one additive call
                    v2 = AddCost(calls=1)
                    v2.prompt_tokens = tok.messages(mem0.v2(turns, v2_existing, history[-10:]))
                    v2.completion_tokens = tok.text(v2_answer(facts))
                    costs["mem0_v2"].append(v2)
                    history.extend(mem0.messages_of(turns))
                    progress.advance(task)
                usage_calls += mem.usage().total.calls
                stored = mem.stats().records
            finally:
                mem.close()
            per_conv.append(
                {
                    "sample_id": conv.sample_id,
                    "adds": len(adds),
                    "memq_records_at_end": stored,
                    **{
                        name: round(statistics.fmean(c.prompt_tokens for c in cs[first:]), 1)
                        for name, cs in costs.items()
                    },
                }
            )
    if usage_calls != len(server.requests):
        raise RuntimeError(
            f"Memory.usage() counted {usage_calls} calls, the server saw {len(server.requests)}"
        )
    return {
        "meta": meta(conversations, adds_per_conv, tok, mem0),
        "systems": {name: summarise(cs) for name, cs in costs.items()},
        "memq_requests_by_schema": ops,
        "prompt_sizes_chars": {
            "mem0_v1_extract_system": len(mem0.v1_extract_system),
            "mem0_v1_USER_MEMORY_EXTRACTION_PROMPT": len(mem0.p.USER_MEMORY_EXTRACTION_PROMPT),
            "mem0_v1_FACT_RETRIEVAL_PROMPT": len(mem0.p.FACT_RETRIEVAL_PROMPT),
            "mem0_v1_update_template": len(mem0.p.get_update_memory_messages([], [])),
            "mem0_v2_ADDITIVE_EXTRACTION_PROMPT": len(mem0.p.ADDITIVE_EXTRACTION_PROMPT),
            **memq_prompt_sizes(),
        },
        "fixed_prompt_tokens": {
            "mem0_v1_extract_system": tok.text(mem0.v1_extract_system),
            "mem0_v1_update_template": tok.text(mem0.p.get_update_memory_messages([], [])),
            "mem0_v2_system": tok.text(mem0.p.ADDITIVE_EXTRACTION_PROMPT),
            **{k: tok.text(v) for k, v in memq_prompts().items()},
        },
        "per_conversation": per_conv,
    }


def memq_prompts() -> dict[str, str]:
    from memq.manage.prompts import EXTRACT_SYSTEM, RECONCILE_SYSTEM

    return {"memq_extract_system": EXTRACT_SYSTEM, "memq_reconcile_system": RECONCILE_SYSTEM}


def memq_prompt_sizes() -> dict[str, int]:
    return {k: len(v) for k, v in memq_prompts().items()}


def meta(
    conversations: list[Conversation], adds_per_conv: int, tok: Tokenizer, mem0: Mem0Prompts
) -> dict[str, Any]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    from memq.manage.reconcile import ReconcileManager

    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "python": platform.python_version(),
        "data": str(DATA),
        "conversations": [c.sample_id for c in conversations],
        "adds_per_conversation": adds_per_conv or "all",
        "turns_per_add": 2,
        "tokenizer": tok.name,
        "mem0ai": mem0.version,
        "memq_reconcile_params": ReconcileManager.Params().model_dump(),
        "memq_response_format": "json_schema (schema counted as prompt tokens)",
        "answers": "recorded stand-in (oracle facts <= 4 per add, Jaccard decisions), same for all systems",
    }


# -- the embedded model's speed, n_threads 1 vs 2 ----------------------------------------------------------
def gemma_speed(reps: int = 3) -> dict[str, Any]:
    """Greedy grammar-constrained generations of the embedded Gemma at n_threads 1 and 2."""
    from pydantic import BaseModel, Field

    from memq.llm.local import LocalLLM

    class Facts(BaseModel):
        facts: list[str] = Field(min_length=1, max_length=3)

    messages = [
        {"role": "system", "content": "Extract facts about the people. Answer in JSON."},
        {
            "role": "user",
            "content": "Caroline: I went to a LGBTQ support group yesterday and it was so powerful.",
        },
    ]
    out: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_avg_before": os.getloadavg()[0],
        "max_tokens": 48,
        "reps": reps,
    }
    for n_threads in (1, 2):
        llm = LocalLLM(n_threads=n_threads, retries=0)
        llm.llama  # load outside the timing  # noqa: B018
        llm.structured(messages, Facts, operation="warmup", max_tokens=48)
        llm.usage.reset()
        runs = []
        for _ in range(reps):
            start = time.perf_counter()
            llm.structured(messages, Facts, operation="gen", max_tokens=48)
            runs.append(time.perf_counter() - start)
        st = llm.usage.snapshot().by_operation["gen"]
        out[f"n_threads_{n_threads}"] = {
            "seconds_per_call_median": statistics.median(runs),
            "prompt_tokens_per_call": st.prompt_tokens / reps,
            "completion_tokens_per_call": st.completion_tokens / reps,
            "completion_tokens_per_s": st.completion_tokens / sum(runs),
        }
    out["load_avg_after"] = os.getloadavg()[0]
    return out


# -- the docs page -------------------------------------------------------------------------------------
def write_doc(result: dict[str, Any], path: Path) -> None:
    s = result["systems"]
    m = result["meta"]
    names = {
        "memq_reconcile": "memq `reconcile`",
        "mem0_v1": f"mem0 v1 (extract + update, mem0ai {m['mem0ai']} prompts)",
        "mem0_v2": f"mem0 v2 (single additive call, mem0ai {m['mem0ai']} prompts)",
    }
    lines = [
        "# LLM cost per add: memq `reconcile` vs mem0",
        "",
        "LLM calls and tokens per `add` on LoCoMo (`benchmarks/llm_cost.py`, results in",
        "`benchmarks/results/llm_cost.json`). Run at commit "
        f"`{m['commit']}` on {m['date'][:10]}: {len(m['conversations'])} conversations, "
        f"{s['memq_reconcile']['adds']} adds ({m['adds_per_conversation']} per conversation, "
        f"{m['turns_per_add']} turns per add).",
        "",
        "| Pipeline | LLM calls / add | prompt tokens / add | p50 | p95 | completion tokens / add |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, label in names.items():
        r = s[key]
        lines.append(
            f"| {label} | {r['calls_per_add']:.2f} | {r['prompt_tokens_per_add']:,.0f} | "
            f"{r['prompt_tokens_p50']:,.0f} | {r['prompt_tokens_p95']:,.0f} | {r['completion_tokens_per_add']:,.0f} |"
        )
    q = s["memq_reconcile"]
    f = result["fixed_prompt_tokens"]
    lines += [
        "",
        f"memq's prompt tokens include the JSON schema it sends as `response_format` "
        f"({q['schema_tokens_per_add']:.0f} tokens per add on average); without it memq would send "
        f"{q['prompt_tokens_per_add'] - q['schema_tokens_per_add']:,.0f}. "
        f"memq uses {q['prompt_tokens_per_add'] / s['mem0_v1']['prompt_tokens_per_add']:.0%} of mem0 v1's "
        f"prompt tokens and {q['prompt_tokens_per_add'] / s['mem0_v2']['prompt_tokens_per_add']:.0%} of mem0 v2's.",
        "",
        "Fixed instruction text per call (tokens): "
        f"memq extract {f['memq_extract_system']}, memq reconcile {f['memq_reconcile_system']}; "
        f"mem0 v1 extract {f['mem0_v1_extract_system']}, mem0 v1 update template {f['mem0_v1_update_template']}; "
        f"mem0 v2 system {f['mem0_v2_system']} "
        f"({result['prompt_sizes_chars']['mem0_v2_ADDITIVE_EXTRACTION_PROMPT']:,} characters).",
        "",
        "## How it is measured",
        "",
        '- **memq**: the real `reconcile` manager through `Memory.add(..., manager="reconcile")`, the real',
        "  `OpenAICompatLLM` and the real `openai` SDK against a loopback OpenAI-compatible server",
        "  (`memq.llm.replay`) that records the requests. The prompts counted are exactly those memq sent,",
        "  with neighbour memories from the growing SQLite store (MiniLM embeddings). `Memory.usage()`",
        "  counted the same number of calls as the server received (checked by the script).",
        "- **mem0**: prompts built by mem0's own code from the installed package on the same messages —",
        "  v1: the shorter of `USER_MEMORY_EXTRACTION_PROMPT` / `FACT_RETRIEVAL_PROMPT` with",
        '  `"Input:\\n" + parse_messages(...)`, then `get_update_memory_messages(old, facts)` with the top 5',
        "  memories per fact (deduplicated, ids remapped to integers); the second call is skipped when",
        "  there are no facts, as in mem0. v2: `ADDITIVE_EXTRACTION_PROMPT` +",
        "  `generate_additive_extraction_prompt(...)` with the top 10 memories for the messages and the",
        "  last 10 messages. Their neighbours are searched in memq's store (the same store state).",
        "- **Answers** are recorded, not generated: a deterministic stand-in extracts up to 4 facts per add",
        "  (declarative sentences of 6+ words) and decides ADD / UPDATE / NOOP by word overlap. Every",
        "  pipeline gets the same facts and decisions in its own output format, so completion tokens",
        "  compare like for like but are not what a real model writes; the number of LLM calls follows",
        "  from the facts (memq and mem0 v1 skip their second call when there is nothing to reconcile —",
        "  memq also when no stored memory is similar).",
        f"- **Tokens**: {m['tokenizer']}, one tokenizer for all three.",
        "- One perspective per conversation (speaker A = `user`); mem0's evaluation adds each batch twice,",
        "  once per speaker, which doubles its cost and is not counted here.",
        "",
        *gemma_lines(result),
        "Reproduce: `.venv/bin/python benchmarks/llm_cost.py` (about "
        f"{result.get('wall_s', 0) / 60:.0f} min on 2 shared cores).",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def gemma_lines(result: dict[str, Any]) -> list[str]:
    g = result.get("gemma_speed")
    if not g:
        return []
    rows = [
        "## The embedded model: n_threads",
        "",
        "`--gemma-speed`: the same short greedy, grammar-constrained extraction, "
        f"{g['reps']} times per setting (load average {g['load_avg_before']:.1f} before, "
        f"{g['load_avg_after']:.1f} after, on 2 cores shared with other work — absolute figures are "
        "pessimistic, the comparison is what counts). The repeated prompt is served from llama.cpp's "
        "prefix cache after the warm-up call, so the time is generation: one grammar-checked token at a time.",
        "",
        "| n_threads | s / call (median) | prompt tokens | completion tokens | completion tokens / s |",
        "|---:|---:|---:|---:|---:|",
    ]
    for n in (1, 2):
        r = g[f"n_threads_{n}"]
        rows.append(
            f"| {n} | {r['seconds_per_call_median']:.2f} | {r['prompt_tokens_per_call']:.0f} | "
            f"{r['completion_tokens_per_call']:.0f} | {r['completion_tokens_per_s']:.1f} |"
        )
    return [*rows, ""]


def print_table(result: dict[str, Any]) -> None:
    table = Table(title="LLM cost per add")
    for col in ("pipeline", "calls", "prompt tok", "p95", "completion tok"):
        table.add_column(col, justify="right" if col != "pipeline" else "left")
    for name, r in result["systems"].items():
        table.add_row(
            name,
            f"{r['calls_per_add']:.2f}",
            f"{r['prompt_tokens_per_add']:,.0f}",
            f"{r['prompt_tokens_p95']:,.0f}",
            f"{r['completion_tokens_per_add']:,.0f}",
        )
    console.print(table)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", type=Path, default=DATA, help="LoCoMo JSON (default: %(default)s)")
    ap.add_argument("--conversations", type=int, default=10, help="how many conversations (default: 10)")
    ap.add_argument("--adds", type=int, default=40, help="adds per conversation, 0 = all (default: 40)")
    ap.add_argument(
        "--quick", action="store_true", help="2 conversations x 10 adds, written to benchmarks/.cache/"
    )
    ap.add_argument(
        "--out", type=Path, default=None, help=f"results JSON (default: {RESULTS.relative_to(ROOT)})"
    )
    ap.add_argument("--doc-only", action="store_true", help="rewrite the docs page from the results JSON")
    ap.add_argument(
        "--gemma-speed",
        action="store_true",
        help="only time the embedded Gemma at n_threads 1 and 2 and add it to the results JSON",
    )
    args = ap.parse_args(argv)
    out = args.out or (CACHE / "llm_cost.quick.json" if args.quick else RESULTS)
    doc = CACHE / "benchmarks-llm-cost.quick.md" if args.quick else DOC
    if args.gemma_speed:
        result = json.loads(out.read_text(encoding="utf-8"))
        result["gemma_speed"] = gemma_speed()
        out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        write_doc(result, doc)
        console.print_json(data=result["gemma_speed"])
        return 0
    if args.doc_only:
        write_doc(json.loads(out.read_text(encoding="utf-8")), doc)
        console.print(f"wrote {doc}")
        return 0
    n_conv, n_adds = (2, 10) if args.quick else (args.conversations, args.adds)
    conversations = load_locomo(args.data)[:n_conv]
    start = time.perf_counter()
    result = run(conversations, n_adds)
    result["wall_s"] = round(time.perf_counter() - start, 1)
    if out.exists():  # keep an earlier --gemma-speed measurement (it is run separately)
        previous = json.loads(out.read_text(encoding="utf-8"))
        if "gemma_speed" in previous:
            result["gemma_speed"] = previous["gemma_speed"]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    write_doc(result, doc)
    print_table(result)
    console.print(f"wrote {out} and {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
