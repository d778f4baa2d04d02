"""The SQLite store's lexical index: BM25 over an in-memory inverted index kept beside the database file.

FTS5's ``bm25()`` scores every row an OR query matches, so its cost grows with the store (50 ms at
100,000 records). This index gives the same ranking — FTS5's BM25 (k1 = 1.2, b = 0.75, its idf
``log((N - n + 0.5) / (n + 0.5))`` floored at 1e-6) over the same tokens — from numpy postings, and
filters a scope (tenant, user, agent, session) while it reads them. Why this design: see
docs/benchmarks-lexical.md.

* **Tokens** are exactly FTS5's ``porter unicode61 remove_diacritics 2``: SQLite's own tokenizer
  stems every distinct word once (an in-memory FTS5 table), and words are cached. ASCII text is
  split by a regex equal to unicode61's ASCII rule; other text is handed to SQLite whole, by
  whitespace-separated chunk (whitespace always separates tokens in unicode61).
* **Postings** live in immutable segments (term -> rowids, term frequencies) plus a small mutable
  buffer for one-at-a-time adds; segments of equal size class are merged, Lucene-style, so a search
  reads a few slices per term. Statistics (N, total length, document frequencies) count live rows
  only, as FTS5's do.
* **Truth** is the rows in SQLite. Like :class:`memq.store.sqlite.vectors.VectorIndex` the index is a
  cache with two watermarks (``rows``: every row with ``rowid <= rows`` is in; ``removed``: the
  removed-rows log is applied up to ``removed``), saved beside the file (an array pack whose
  postings a reopened index maps, reading a term's slice when a search needs it) and caught up on
  open; a file that is stale, unreadable or disagrees with the rows is rebuilt from them.

One deviation from FTS5: a query term that FTS5 would split into several tokens (``foo_bar``) is a
phrase there; here its tokens count as separate terms.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import zipfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from memq.store.sqlite.arrays import anchor_of, grown, load_pack, save_pack, sidecar, write_atomically
from memq.store.sqlite.lexical_terms import Vocabulary

K1 = 1.2
B = 0.75
IDF_FLOOR = 1e-6  # FTS5's floor for a term in more than half the rows
BUFFER_DOCS = 1024  # one-at-a-time adds collect here before becoming a segment
DIRECT_BATCH = 128  # an add of at least this many rows builds its own segment
MERGE_FACTOR = 4  # this many segments of one size class are merged into one
FORMAT = 2  # 1: an npz, read whole (still loads); 2: an array pack, its postings mapped
SCOPE_FIELDS = ("tenant", "user", "agent", "session")

Scope = tuple[str, str | None, str | None, str | None]  # tenant, user, agent, session


@dataclass
class LexWatermark:
    rows: int = 0
    removed: int = 0
    anchor: tuple[int, str] | None = None  # a saved file's last row, as in vectors.Watermark


class _Segment:
    """Immutable postings sorted by (term, rowid): term ``terms[i]`` has ``docs[starts[i]:starts[i+1]]``
    with frequencies ``tfs`` at the same positions."""

    __slots__ = ("dead", "docs", "level", "n_docs", "starts", "terms", "tfs")

    def __init__(self, terms: np.ndarray, starts: np.ndarray, docs: np.ndarray, tfs: np.ndarray, n_docs: int):
        self.terms, self.starts, self.docs, self.tfs = terms, starts, docs, tfs
        self.n_docs = n_docs
        self.dead = 0  # removed rows whose postings are still here
        self.level = int(math.log(max(n_docs, 1), MERGE_FACTOR))

    @classmethod
    def from_keys(cls, key: np.ndarray, tfs: np.ndarray, n_docs: int) -> _Segment:
        """From postings keyed ``term << 32 | rowid``, sorted by key."""
        t = (key >> 32).astype(np.int32)
        terms, first = np.unique(t, return_index=True)
        starts = np.append(first, len(t)).astype(np.int64)
        return cls(terms, starts, (key & 0xFFFFFFFF).astype(np.int32), _tf_array(tfs), n_docs)

    def keys(self) -> np.ndarray:
        return (np.repeat(self.terms, np.diff(self.starts)).astype(np.int64) << 32) | self.docs

    def lookup(self, tids: np.ndarray) -> list[tuple[int, int]]:
        """(start, end) of each term's postings ((0, 0) when absent)."""
        if len(self.terms) == 0:
            return [(0, 0)] * len(tids)
        at = np.minimum(np.searchsorted(self.terms, tids), len(self.terms) - 1)
        hit = self.terms[at] == tids
        s = self.starts
        return [
            (int(s[i]), int(s[i + 1])) if h else (0, 0)
            for i, h in zip(at.tolist(), hit.tolist(), strict=True)
        ]


class _Scorer:
    """Accumulates BM25 term scores of rows in a dense, zeroed buffer indexed by rowid."""

    def __init__(self, acc: np.ndarray, dl: np.ndarray, c0: float, c1: float) -> None:
        self.acc, self.dl, self.c0, self.c1 = acc, dl, c0, c1
        self._touched: list[np.ndarray] = []
        self.count = 0

    def _weights(self, docs: np.ndarray, tf: np.ndarray, weight: float) -> np.ndarray:
        f = tf.astype(np.float32)
        den = self.dl[docs]
        den *= np.float32(self.c1)
        den += np.float32(self.c0)
        den += f
        f *= np.float32(weight)
        f /= den
        return f

    def add(self, docs: np.ndarray, tf: np.ndarray, weight: float) -> None:
        if len(docs) == 0:
            return
        new = docs[self.acc[docs] == 0]  # every score is > 0, so 0 means not seen yet
        np.add.at(self.acc, docs, self._weights(docs, tf, weight))
        if len(new):
            self._touched.append(new)
            self.count += len(new)

    def add_for(self, cands: np.ndarray, docs: np.ndarray, tf: np.ndarray, weight: float) -> None:
        """Add a term's scores for the rows of ``cands`` (sorted) that are in ``docs`` (sorted)."""
        if len(docs) <= 4 * len(cands):
            keep = self.acc[docs] > 0  # rows already seen; others cannot reach the top any more
            docs, tf = docs[keep], tf[keep]
        else:
            at = np.minimum(np.searchsorted(docs, cands), len(docs) - 1)
            hit = docs[at] == cands
            docs, tf = cands[hit], tf[at[hit]]
        if len(docs):
            np.add.at(self.acc, docs, self._weights(docs, tf, weight))

    def touched(self) -> np.ndarray:
        return np.concatenate(self._touched) if self._touched else np.empty(0, dtype=np.int32)

    def kth(self, k: int) -> float:
        vals = self.acc[self.touched()]
        return float(np.partition(vals, len(vals) - k)[len(vals) - k])

    def candidates(self, floor: float) -> np.ndarray:
        rows = self.touched()
        return np.sort(rows[self.acc[rows] >= floor])

    def top(self, rows: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The best ``n`` of ``rows`` (distinct) by score, then rowid; clears the buffer."""
        scores = self.acc[rows]
        if len(rows) > n:
            kth = np.partition(scores, len(rows) - n)[len(rows) - n]
            keep = scores >= kth  # and every row tied with the last one
            rows, scores = rows[keep], scores[keep]
        order = np.lexsort((rows, -scores))[:n]
        for t in self._touched:
            self.acc[t] = 0.0
        return rows[order].astype(np.int64), scores[order]


def _scope_key(scope: Sequence[str | None], f: int) -> str | None:
    """The key of field ``f`` of a scope: user, agent and session are keyed within their tenant."""
    value = scope[f]
    if value is None or f == 0:
        return value
    return f"{scope[0]}\x1f{value}"


def _joined(parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """One (docs, tfs) pair from a term's postings in several segments (not sorted across them)."""
    return np.concatenate([d for d, _ in parts]), np.concatenate([f for _, f in parts])


def _tf_array(tfs: np.ndarray) -> np.ndarray:
    return tfs.astype(np.uint16 if (len(tfs) == 0 or tfs.max() < 65536) else np.uint32)


class LexicalIndex:
    """BM25 top-k over the rows of one SQLite store (all tenants), keyed by rowid."""

    def __init__(self) -> None:
        self.mark = LexWatermark()
        self.vocab = Vocabulary()
        self._lock = threading.RLock()
        self._df = np.zeros(0, dtype=np.int64)
        self._dl = np.zeros(0, dtype=np.float32)  # tokens per rowid (0: absent)
        self._codes: dict[str, dict[str, int]] = {f: {} for f in SCOPE_FIELDS}
        self._scope = np.full((len(SCOPE_FIELDS), 0), -1, dtype=np.int32)  # code per field and rowid
        self._n = 0
        self._total = 0.0
        self._segments: list[_Segment] = []
        self._buf: dict[int, tuple[list[int], list[int]]] = {}
        self._buf_docs = 0
        self._acc = np.zeros(0, dtype=np.float32)
        self._ghost = np.zeros(0, dtype=bool)  # removed rowids whose postings may remain in segments

    def __len__(self) -> int:
        return self._n

    # -- writes -------------------------------------------------------------------------------------
    def add(self, rowids: Sequence[int], texts: Sequence[str], scopes: Sequence[Scope]) -> None:
        """Index rows (rows already present are skipped). Rowids and lengths stay Python ints, and a
        small add goes to the buffer: most adds are an agent's one record, where numpy's per-call
        cost on one-element arrays would be most of the work."""
        with self._lock:
            keys = [int(k) for k in rowids]
            if not keys:
                return
            if min(keys) < 0 or max(keys) >= 2**31:
                raise ValueError("rowids must lie in [0, 2**31)")
            self._grow(max(keys) + 1)
            present = self._scope[0]
            fresh = [i for i, k in enumerate(keys) if present[k] < 0]
            keys = [keys[i] for i in fresh]
            if len(set(keys)) != len(keys):
                raise ValueError("duplicate rowids in one add")
            if not keys:
                return
            ids = self.vocab.doc_ids([texts[i] for i in fresh])
            if self._ghost[keys].any():  # re-added rowids: drop their old postings first
                self._segments = [self._merge([s]) if s.dead else s for s in self._segments]
                self._ghost[:] = False
            for f, field in enumerate(SCOPE_FIELDS):
                codes = self._codes[field]
                vals = [_scope_key(scopes[i], f) for i in fresh]
                self._scope[f, keys] = [-1 if v is None else codes.setdefault(v, len(codes)) for v in vals]
            lens = [len(x) for x in ids]
            self._dl[keys] = lens
            self._n += len(keys)
            self._total += float(sum(lens))
            if len(self._df) < len(self.vocab):  # grown by doubling: new words come with most adds
                self._df = grown(self._df, max(len(self.vocab), 2 * len(self._df)))
            if len(keys) < DIRECT_BATCH:
                self._buffer(keys, ids)
                return
            flat = np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=sum(lens))
            key, tfs = np.unique((flat << 32) | np.repeat(np.array(keys, np.int64), lens), return_counts=True)
            seg = _Segment.from_keys(key, tfs, len(keys))
            self._df[seg.terms] += np.diff(seg.starts)
            self._push(seg)

    def _buffer(self, keys: list[int], ids: Sequence[Sequence[int]]) -> None:
        """Put rows' postings (term ids per row) in the buffer; a full buffer becomes a segment."""
        seen: list[int] = []
        for key, tids in zip(keys, ids, strict=True):
            counts = Counter(tids)
            for tid, tf in counts.items():
                slot = self._buf.get(tid)
                if slot is None:
                    slot = self._buf[tid] = ([], [])
                slot[0].append(key)
                slot[1].append(tf)
            seen += counts
        np.add.at(self._df, np.array(seen, dtype=np.int64), 1)
        self._buf_docs += len(keys)
        if self._buf_docs >= BUFFER_DOCS:
            self._flush()

    def remove(self, rowids: Sequence[int]) -> None:
        """Drop rows (unknown rowids are ignored)."""
        with self._lock:
            keys = np.unique(np.asarray(rowids, dtype=np.int64))
            keys = keys[(keys >= 0) & (keys < self._scope.shape[1])]
            keys = keys[self._scope[0, keys] >= 0]
            if len(keys) == 0:
                return
            gone = np.zeros(self._scope.shape[1], dtype=bool)
            gone[keys] = True
            for seg in self._segments:
                hit = np.flatnonzero(gone[seg.docs])
                if len(hit):
                    term_at = np.searchsorted(seg.starts, hit, side="right") - 1
                    np.subtract.at(self._df, seg.terms[term_at], 1)
                    seg.dead += len(np.unique(seg.docs[hit]))
            in_buf: set[int] = set()
            for tid, (docs, tfs) in list(self._buf.items()):
                keep = [i for i, d in enumerate(docs) if not gone[d]]
                if len(keep) != len(docs):
                    in_buf.update(d for d in docs if gone[d])
                    self._df[tid] -= len(docs) - len(keep)
                    self._buf[tid] = ([docs[i] for i in keep], [tfs[i] for i in keep])
            self._buf_docs -= len(in_buf)
            self._ghost[keys] = True
            self._n -= len(keys)
            self._total -= float(self._dl[keys].sum(dtype=np.float64))
            self._dl[keys] = 0
            self._scope[:, keys] = -1
            # a segment that is mostly dead is rewritten without its removed rows
            self._segments = [self._merge([s]) if s.dead * 2 > s.n_docs else s for s in self._segments]
            self._segments = [s for s in self._segments if s.n_docs > 0]

    def _grow(self, size: int) -> None:
        if size <= self._scope.shape[1]:
            return
        cap = max(size, 2 * self._scope.shape[1], 1024)
        self._scope = grown(self._scope, cap, -1, axis=1)
        self._dl, self._ghost = grown(self._dl, cap), grown(self._ghost, cap, False)
        self._acc = np.zeros(cap, dtype=np.float32)

    def _flush(self) -> None:
        """Turn the buffer into a segment."""
        buf = {t: v for t, v in self._buf.items() if v[0]}
        self._buf, n_docs, self._buf_docs = {}, self._buf_docs, 0
        if not buf:
            return
        lens = np.fromiter((len(d) for d, _ in buf.values()), dtype=np.int64, count=len(buf))
        n = int(lens.sum())
        docs = np.fromiter(chain.from_iterable(d for d, _ in buf.values()), dtype=np.int64, count=n)
        tfs = np.fromiter(chain.from_iterable(f for _, f in buf.values()), dtype=np.int64, count=n)
        key = (np.repeat(np.fromiter(buf, dtype=np.int64, count=len(buf)), lens) << 32) | docs
        order = np.argsort(key, kind="stable")
        self._push(_Segment.from_keys(key[order], tfs[order], n_docs))

    def _push(self, seg: _Segment) -> None:
        """Append a segment, then merge while MERGE_FACTOR segments share the newest size class."""
        self._segments.append(seg)
        while len(self._segments) >= MERGE_FACTOR:
            tail = self._segments[-MERGE_FACTOR:]
            if any(s.level != tail[-1].level for s in tail):
                break
            merged = self._merge(tail)
            self._segments[-MERGE_FACTOR:] = [merged] if merged.n_docs else []
            if len(self._segments) >= 2 and self._segments[-2].level < merged.level:
                break  # keep older, larger segments first

    def _merge(self, segs: Sequence[_Segment]) -> _Segment:
        """One segment holding the live postings of ``segs``."""
        alive = self._scope[0] >= 0
        keys, tfs, n_docs = [], [], 0
        for s in segs:
            k, f = s.keys(), s.tfs
            if s.dead:
                keep = alive[s.docs]
                k, f = k[keep], f[keep]
            keys.append(k)
            tfs.append(f)
            n_docs += s.n_docs - s.dead
        key = np.concatenate(keys)
        order = np.argsort(key, kind="stable")  # each input is one sorted run
        return _Segment.from_keys(key[order], np.concatenate(tfs)[order], n_docs)

    # -- search -------------------------------------------------------------------------------------
    def search(
        self,
        terms: Sequence[str],
        n: int,
        tenant: str,
        user: str | None = None,
        agent: str | None = None,
        session: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` best rows of the scope for the query terms: (rowids, BM25 scores), best first.

        Scores are FTS5's ``-bm25()`` over the whole index (every tenant, every row, as FTS5 counts);
        ties are broken by rowid, lower first. Fewer than ``n`` rows means no other row of the scope
        matches a term.

        Exact top-k with MaxScore pruning: terms are scored rarest first; once the ``n``-th best
        partial score exceeds what the remaining terms could add at most (idf x (k1 + 1) each), no
        row outside the current candidates can reach the top ``n``, and the remaining (common) terms
        are only looked up for the candidates that still can, by binary search in their postings.
        """
        empty = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        with self._lock:
            if n <= 0 or self._n == 0:
                return empty
            conds = self._scope_conditions((tenant, user, agent, session))
            if conds is None:
                return empty
            plan = self._plan(Counter(self.vocab.query_ids(terms)))
            if not plan:
                return empty
            c1 = K1 * B * self._n / self._total if self._total else 0.0
            scorer = _Scorer(self._acc, self._dl, K1 * (1 - B), c1)
            bound = [ub for *_, ub in plan]
            rest = [sum(bound[i + 1 :]) for i in range(len(plan))]
            volume = [sum(len(d) for d, _ in parts) for _, parts, _ in plan]
            done, read, check_at = 0.0, 0, 0
            for i, (weight, parts, ub) in enumerate(plan):
                # the term's postings of every segment at once: a live row's postings are in one
                # segment only (a re-added row's old ones are dropped first, a removed row's are
                # filtered by its scope codes below), so each row's sum is unchanged
                docs, tf = parts[0] if len(parts) == 1 else _joined(parts)
                for codes, code in conds:
                    keep = codes[docs] == code
                    docs, tf = docs[keep], tf[keep]
                scorer.add(docs, tf, weight)
                done += ub
                read += volume[i]
                left = sum(volume[i + 1 :])
                # worth a check: enough rows, the bound can hold, much left to read, not checked lately
                if scorer.count >= n and done > rest[i] and left > read and read >= check_at:
                    check_at = 2 * read
                    theta = scorer.kth(n)
                    if theta > rest[i] * (1 + 1e-9):  # no untouched row can reach the top n
                        cands = scorer.candidates(theta - rest[i] * (1 + 1e-9))
                        for weight2, parts2, _ in plan[i + 1 :]:
                            for docs, tf in parts2:
                                scorer.add_for(cands, docs, tf, weight2)
                        return scorer.top(cands, n)
            return scorer.top(scorer.touched(), n)

    def _scope_conditions(self, scope: Scope) -> list[tuple[np.ndarray, int]] | None:
        """(code array, code) pairs a row must match, most selective first; None: nothing can match."""
        conds = []
        for f in (3, 2, 1, 0):
            key = _scope_key(scope, f)
            if key is not None:
                code = self._codes[SCOPE_FIELDS[f]].get(key)
                if code is None:
                    return None
                conds.append((self._scope[f], code))
        if len(conds) > 1 or (len(self._codes["tenant"]) == 1 and not any(s.dead for s in self._segments)):
            conds.pop()  # other fields are keyed within their tenant; a lone, clean tenant needs no check
        return conds

    def _plan(self, tids: Counter[int]) -> list[tuple[float, list[tuple[np.ndarray, np.ndarray]], float]]:
        """Per query term: (idf x (k1 + 1) x repeats, postings parts, upper bound), rarest first."""
        uniq = np.fromiter(tids, dtype=np.int32, count=len(tids))
        slices = [seg.lookup(uniq) for seg in self._segments]
        plan = []
        for j, tid in enumerate(uniq.tolist()):
            df = int(self._df[tid])
            if df <= 0:
                continue
            idf = max(math.log((self._n - df + 0.5) / (df + 0.5)), IDF_FLOOR)
            parts = [
                (seg.docs[a:b], seg.tfs[a:b])
                for seg, sl in zip(self._segments, slices, strict=True)
                for a, b in (sl[j],)
                if b > a
            ]
            if tid in self._buf and self._buf[tid][0]:
                d, f = self._buf[tid]
                order = np.argsort(d)
                parts.append((np.asarray(d, dtype=np.int32)[order], np.asarray(f, dtype=np.uint32)[order]))
            weight = idf * (K1 + 1) * tids[tid]
            plan.append((weight, parts, weight))  # tf / (tf + norm) < 1: a row gains less than weight
        plan.sort(key=lambda p: (-p[2], sum(len(d) for d, _ in p[1])))
        return plan

    # -- keeping level with the rows ----------------------------------------------------------------
    def catch_up(
        self, read: Callable[[str, Sequence[Any]], list[tuple[Any, ...]]], removed_table: str
    ) -> None:
        """Apply removals logged in ``removed_table`` (seq, row) and add rows past the watermark.

        ``read(sql, params)`` runs a query on the store's connection (with its retries).
        """
        with self._lock:
            removed = read(
                f"SELECT seq, row FROM {removed_table} WHERE seq > ? ORDER BY seq", (self.mark.removed,)
            )
            if removed:
                self.remove([r for _, r in removed])
                self.mark.removed = int(removed[-1][0])
            top = read("SELECT coalesce(max(rowid), 0) FROM records", ())[0][0]
            while self.mark.rows < top:
                rows = read(
                    "SELECT rowid, text, tenant, user_id, agent_id, session_id FROM records "
                    "WHERE rowid > ? AND rowid <= ? ORDER BY rowid LIMIT 20000",
                    (self.mark.rows, top),
                )
                if rows:
                    self.add([r[0] for r in rows], [r[1] for r in rows], [r[2:6] for r in rows])
                self.mark.rows = int(rows[-1][0]) if len(rows) == 20000 else top

    def rowids(self) -> np.ndarray:
        """Every indexed rowid (ascending)."""
        with self._lock:
            return np.flatnonzero(self._scope[0] >= 0).astype(np.int64)

    # -- persistence --------------------------------------------------------------------------------
    def last_row(self) -> int | None:
        """The highest rowid in the index (None when empty)."""
        with self._lock:
            alive = np.flatnonzero(self._scope[0] >= 0)
            return int(alive[-1]) if len(alive) else None

    def save(self, path: Path, tag: str = "", anchor: tuple[int, str] | None = None) -> None:
        """Write the index, then its watermark sidecar, each atomically (temp file + rename).
        ``anchor``: the (rowid, record id) of :meth:`last_row`, checked by the store on load."""
        with self._lock:
            self._flush()
            segs = self._segments
            cap = int(self._scope.shape[1])
            arrays = {
                "stems": np.frombuffer("\x00".join(self.vocab.stems).encode(), dtype=np.uint8),
                "df": self._df[: len(self.vocab)],
                "dl": self._dl,
                "scope": self._scope,
                "seg_meta": np.array(
                    [[len(s.terms), len(s.docs), s.n_docs, s.dead] for s in segs], np.int64
                ).reshape(-1, 4),
                "terms": np.concatenate([s.terms for s in segs]) if segs else np.zeros(0, np.int32),
                "starts": np.concatenate([s.starts for s in segs]) if segs else np.zeros(0, np.int64),
                "docs": np.concatenate([s.docs for s in segs]) if segs else np.zeros(0, np.int32),
                "tfs": _tf_array(np.concatenate([s.tfs for s in segs]) if segs else np.zeros(0, np.uint32)),
                "codes": np.frombuffer(
                    json.dumps([list(self._codes[f]) for f in SCOPE_FIELDS]).encode(), np.uint8
                ),
            }

            def write(tmp: Path) -> None:
                with open(tmp, "wb") as fh:
                    save_pack(fh, arrays)

            write_atomically(path, write)
            meta = {
                "format": FORMAT,
                "tag": tag,
                "sqlite": sqlite3.sqlite_version,
                "rows": self.mark.rows,
                "removed": self.mark.removed,
                "anchor": None if anchor is None else list(anchor),
                "count": self._n,
                "capacity": cap,
            }
            write_atomically(sidecar(path), lambda tmp: tmp.write_text(json.dumps(meta)))

    @classmethod
    def load(cls, path: Path, tag: str = "") -> LexicalIndex | None:
        """The saved index, or None when it is missing, unreadable, from another tokenizer or inconsistent."""
        try:
            meta = json.loads(sidecar(path).read_text())
            if (
                meta.get("format") not in (1, FORMAT)
                or meta.get("tag") != tag
                or meta.get("sqlite") != sqlite3.sqlite_version
            ):
                return None
            if meta["format"] == 1:  # an older memq's npz, read whole
                with np.load(path, allow_pickle=False) as z:
                    a = {k: z[k] for k in z.files}
                a["tfs"] = _tf_array(a["tfs"])
            else:  # the postings mapped (POSIX): a search reads its terms' slices
                a = load_pack(path, mapped=os.name == "posix")
            index = cls()
            stems = a["stems"].tobytes().decode()
            index.vocab = Vocabulary(stems.split("\x00") if stems else [])
            index._df = a["df"].astype(np.int64)
            index._dl = a["dl"].astype(np.float32)
            index._scope = a["scope"].astype(np.int32)
            codes = json.loads(a["codes"].tobytes().decode())
            index._codes = {f: {v: i for i, v in enumerate(codes[k])} for k, f in enumerate(SCOPE_FIELDS)}
            index._acc = np.zeros(len(index._dl), dtype=np.float32)
            t0 = s0 = d0 = 0
            for n_terms, n_post, n_docs, dead in a["seg_meta"].tolist():
                starts = a["starts"][s0 : s0 + n_terms + 1]
                if int(starts[-1]) != n_post:
                    return None
                seg = _Segment(
                    a["terms"][t0 : t0 + n_terms],
                    starts,
                    a["docs"][d0 : d0 + n_post],
                    a["tfs"][d0 : d0 + n_post],
                    n_docs,
                )
                seg.dead = dead
                index._segments.append(seg)
                t0, s0, d0 = t0 + n_terms, s0 + n_terms + 1, d0 + n_post
            alive = index._scope[0] >= 0
            index._ghost = (
                ~alive if any(s.dead for s in index._segments) else np.zeros(len(alive), dtype=bool)
            )
            index._n = int(alive.sum())
            index._total = float(index._dl[alive].sum(dtype=np.float64))
            if (
                index._n != int(meta["count"])
                or len(index._df) != len(index.vocab)
                or index._scope.shape != (len(SCOPE_FIELDS), len(index._dl))
                or d0 != len(a["docs"])
            ):
                return None
            index.mark = LexWatermark(
                rows=int(meta["rows"]), removed=int(meta["removed"]), anchor=anchor_of(meta.get("anchor"))
            )
            return index
        except (OSError, ValueError, KeyError, TypeError, IndexError, EOFError, zipfile.BadZipFile):
            return None
