"""What search reads from the SQLite store: dense candidates (an in-memory vector index kept beside
the file: exact below ``exact_threshold`` vectors and in small scopes, an int8 usearch HNSW graph
rescored exactly above), lexical candidates (BM25 from the in-memory lexical
index kept beside the file, :mod:`memq.store.sqlite.lexical`), the light rows ranking needs (from the
in-memory mirror, :mod:`memq.store.sqlite.mirror`, or by rowid), and the shown records.

Candidates are looked up by id (their rowids), never by walking a tenant-wide index, so the cost of a
search does not grow with the store; over-fetching keeps a filter from starving the ANN result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from memq.store.base import Candidate, CandidatePool, CandidateQuery, CandidateRow
from memq.store.sqlcommon import dedupe, query_terms, visibility
from memq.store.sqlite import mirror
from memq.store.sqlite.arrays import sidecar
from memq.store.sqlite.base import RECORDS_BY_ROWID, SQLiteBase, chunks, columns, hydrate, marks, to_us
from memq.store.sqlite.lexical import LexicalIndex
from memq.store.sqlite.mirror import Entry, RowMirror
from memq.store.sqlite.vectors import VectorIndex, top_k_desc, worker
from memq.types import MemoryRecord

ANN_MAX_FETCH = 8192  # past this over-fetch, a selective filter falls back to exact search
SCOPE_EXACT = 0.05  # a scope holding at most this share of the vectors is searched exactly
SAVE_EVERY = 20_000  # rows added since the index was last saved that make a write save it
RESCORE = 2  # of the graph's candidates, the first RESCORE x take (its int8 order) are rescored
# the rows a loaded vector index must hold, counted from the partial index records_embedded (schema 8):
# the check on open of a file an older memq saved (without an anchor, SQLiteBase._file_matches)
VECTOR_ROWS = "SELECT count(*) FROM records WHERE embedding IS NOT NULL"


def graph_fetch(n: int) -> int:
    """How many candidates the HNSW graph is asked for, for ``n`` visible ones (docs/algorithms.md:
    why 4 x n and not fewer; ``benchmarks/dense_fetch.py`` measures it)."""
    return max(4 * n, 64)


def take_for(n: int) -> int:
    """Each signal's first hits a search reads rows of, for ``n`` candidates: ``n`` plus a margin for
    versions the visibility clause drops."""
    return n + max(8, n // 8)


def _scope_of(query: CandidateQuery) -> tuple[str | None, str | None, str | None, str | None]:
    """The query's scope as the indexes key it: (tenant, user, agent, session)."""
    sc = query.scope
    return sc.tenant, sc.user, sc.agent, sc.session


def _walks_graph(index: VectorIndex, bound: int, n: int) -> bool:
    """Whether a search for ``n`` candidates in a scope that holds at most ``bound`` rows
    (``VectorIndex.scope_bound``: no pass over the rows) walks the HNSW graph rather than scanning the
    scope's rows exactly: one that may hold more than ``SCOPE_EXACT`` of the vectors."""
    return index.has_graph and bound > max(SCOPE_EXACT * len(index), graph_fetch(n))


class SQLiteCandidates(SQLiteBase):
    """What search reads (:class:`memq.store.contract.Candidates`)."""

    _mirror: RowMirror | None = None  # the light rows searches have read (mirror.py), made on first use
    _mirror_seen: tuple[int, int] = (-1, -1)  # (data_version, total_changes) it was last caught up at

    def dense_candidates(self, query: CandidateQuery, vector: np.ndarray, n: int) -> list[Candidate]:
        """Exact over the rows of the query's scope when the scope is small (or there is no graph yet),
        else the HNSW graph's candidates; either way checked against the full visibility clause by
        rowid, over-fetching until ``n`` are visible, and exact over the rows SQL selects as a last
        resort (a very selective filter)."""
        with self._lock:  # the index only: SQL reads below run on reader connections
            index = self._sync_index()
            if index is None or len(index) == 0 or n <= 0:
                return []
            slots = index.scope_slots(_scope_of(query))
            in_scope = 0 if slots is None else len(slots)
            total = len(index)
            graph = index.has_graph
        if in_scope == 0:
            return []
        where, params = visibility(query, "sqlite", to_us)
        fetch = graph_fetch(n)
        exact = not graph or in_scope <= max(SCOPE_EXACT * total, fetch)
        for _ in range(4):
            with self._lock:
                keys, sims = index.exact(vector, fetch, slots) if exact else index.search(vector, fetch)
            hits = self._visible_ids(query, keys, where, params)
            result = dedupe(
                [Candidate(hits[int(k)], float(v)) for k, v in zip(keys, sims, strict=True) if int(k) in hits]
            )
            if len(result) >= n or fetch >= (in_scope if exact else total):
                return result[:n]
            fetch = min(fetch * 4, ANN_MAX_FETCH)
        # the filter keeps few of the scope's rows: exact over the rows SQL selects
        rowids = np.array(
            [r[0] for r in self._read(f"SELECT r.rowid FROM records r WHERE {where}", params)], dtype=np.int64
        )
        with self._lock:
            keys, mat = index.vectors(rowids)
        if len(keys) == 0:
            return []
        sims = mat @ np.asarray(vector, dtype=np.float32)
        top = top_k_desc(sims, n)
        hits = self._visible_ids(query, keys[top], where, params)
        return dedupe([Candidate(hits[int(keys[i])], float(sims[i])) for i in top if int(keys[i]) in hits])[
            :n
        ]

    def _visible_ids(
        self, query: CandidateQuery, keys: np.ndarray, where: str, params: list[Any]
    ) -> dict[int, str]:
        """rowid → id of the ``keys`` the query sees (``where``/``params``: its visibility clause)."""
        if query.filter is None and self.mirror_rows > 0:
            return {k: row.id for k, row in self._light_rows(query, [int(k) for k in keys]).items()}
        out: dict[int, str] = {}
        for chunk in chunks([int(k) for k in keys], 900):
            for rowid, rid in self._read(
                f"SELECT r.rowid, r.id FROM records r NOT INDEXED WHERE r.rowid IN ({marks(len(chunk))}) AND {where}",
                (*chunk, *params),
            ):
                out[rowid] = rid
        return out

    def lexical_candidates(self, query: CandidateQuery, text: str, n: int) -> list[Candidate]:
        """FTS5's BM25 ranking from the lexical index, which filters the scope itself; the rest of the
        visibility clause (expired versions, world time, filters) is checked by rowid, over-fetching
        until ``n`` are visible or no other row matches."""
        terms = query_terms(text)
        if not terms or n <= 0:
            return []
        scope = _scope_of(query)
        where, params = visibility(query, "sqlite", to_us)
        fetch = n + max(16, n // 4)
        while True:
            with self._lock:  # the index only: the visibility reads below run on reader connections
                lex = self._sync_lexical()
                keys, scores = lex.search(terms, fetch, *scope)
            hits = self._visible_ids(query, keys, where, params)
            result = dedupe(
                [
                    Candidate(hits[k], float(s))
                    for k, s in zip(keys.tolist(), scores.tolist(), strict=True)
                    if k in hits
                ]
            )
            if len(result) >= n or len(keys) < fetch:
                return result[:n]
            fetch *= 4

    def search_candidates(
        self, query: CandidateQuery, n: int, *, vector: np.ndarray | None = None, text: str | None = None
    ) -> CandidatePool:
        """Each signal's index hits (the first ``n`` plus a margin), then the light rows of both signals'
        hits at once, checked against the query's visibility (``_light_rows``). A signal whose
        hits leave fewer than ``n`` visible while more may exist (a filter, old versions, a scope the
        graph does not know) runs its own over-fetching search. When both signals search and the
        dense one walks the HNSW graph, the two index searches run at once (``_both_hits``)."""
        if n <= 0 or (vector is None and text is None):
            return CandidatePool({}, {})
        take = take_for(n)
        hits: dict[str, tuple[list[int], list[float], bool]] = {}
        if vector is not None and text is not None:
            hits = self._both_hits(query, vector, text, n, take)
        elif vector is not None:
            hits["dense"] = self._dense_hits(query, vector, n, take)
        elif text is not None:
            hits["lexical"] = self._lexical_hits(query, text, take)
        by_key = self._light_rows(query, list(dict.fromkeys(k for keys, _, _ in hits.values() for k in keys)))
        signals: dict[str, list[Candidate]] = {}
        for name, (keys, scores, complete) in hits.items():
            found = dedupe(
                [Candidate(by_key[k].id, s) for k, s in zip(keys, scores, strict=True) if k in by_key]
            )
            if len(found) < n and not complete:
                found = (
                    self.dense_candidates(query, vector, n)  # type: ignore[arg-type]
                    if name == "dense"
                    else self.lexical_candidates(query, text, n)  # type: ignore[arg-type]
                )
            signals[name] = found[:n]
        rows = {row.id: row for row in by_key.values()}
        wanted = list(dict.fromkeys(c.id for found in signals.values() for c in found))
        missing = [rid for rid in wanted if rid not in rows]
        if missing:  # found by a signal's own search
            rows.update(self._candidate_rows(query, missing))
        return CandidatePool(signals, {rid: rows[rid] for rid in wanted if rid in rows})

    def _both_hits(
        self, query: CandidateQuery, vector: np.ndarray, text: str, n: int, take: int
    ) -> dict[str, tuple[list[int], list[float], bool]]:
        """Both signals' hits (``_dense_hits``, ``_lexical_hits``). With the lock held for both, the
        graph search (usearch releases the GIL) and its rescoring run on the search worker thread
        while this thread runs the BM25 search: each reads only its own index, and no writer can
        touch either until both are done. A small scope (an exact scan) or a store without a graph
        searches one after the other: there handing the work over and back would cost more than it
        saves."""
        with self._lock:
            index = self._sync_index()
            scope = _scope_of(query)
            if index is None or not _walks_graph(index, index.scope_bound(scope), n):
                dense = self._dense_in(index, scope, vector, n, take)
                return {"dense": dense, "lexical": self._lexical_in(self._sync_lexical(), query, text, take)}
            lex = self._sync_lexical()
            pending = worker("search").submit(self._dense_in, index, scope, vector, n, take)
            try:
                lexical = self._lexical_in(lex, query, text, take)
            finally:
                dense = pending.result()  # wait even when the BM25 search failed: the lock covers both
        return {"dense": dense, "lexical": lexical}

    def _dense_hits(
        self, query: CandidateQuery, vector: np.ndarray, n: int, take: int
    ) -> tuple[list[int], list[float], bool]:
        """The vector index's first ``take`` rowids for ``vector`` in the query's scope, their
        similarities, and whether no other row of the scope could follow (``_dense_in``)."""
        with self._lock:
            return self._dense_in(self._sync_index(), _scope_of(query), vector, n, take)

    @staticmethod
    def _dense_in(
        index: VectorIndex | None, scope: tuple[str | None, ...], vector: np.ndarray, n: int, take: int
    ) -> tuple[list[int], list[float], bool]:
        """``_dense_hits`` on ``index`` (the lock held by the caller). Exact in a small scope; else the
        graph is asked for ``graph_fetch(n)`` candidates (as ``dense_candidates`` asks it) and the
        first ``RESCORE × take`` of them in its int8 order are rescored: they hold the exact first
        ``take`` as often as all of them do (docs/algorithms.md)."""
        if index is None or len(index) == 0:
            return [], [], True
        bound = index.scope_bound(scope)
        if bound == 0:
            return [], [], True
        fetch = graph_fetch(n)
        if not _walks_graph(index, bound, n):
            slots = index.scope_slots(scope)
            in_scope = 0 if slots is None else len(slots)
            if in_scope == 0:
                return [], [], True
            keys, sims = index.exact(vector, take, slots)
            return keys.tolist(), sims.tolist(), take >= in_scope
        keys, sims = index.search(vector, fetch, rescore=RESCORE * take)
        return keys[:take].tolist(), sims[:take].tolist(), fetch >= len(index) and len(keys) <= take

    def _lexical_hits(
        self, query: CandidateQuery, text: str, take: int
    ) -> tuple[list[int], list[float], bool]:
        """The lexical index's first ``take`` rowids for ``text`` in the query's scope, their BM25
        scores, and whether no other row matches."""
        with self._lock:
            return self._lexical_in(self._sync_lexical(), query, text, take)

    @staticmethod
    def _lexical_in(
        lex: LexicalIndex, query: CandidateQuery, text: str, take: int
    ) -> tuple[list[int], list[float], bool]:
        """``_lexical_hits`` on ``lex`` (the lock held by the caller)."""
        terms = query_terms(text)
        if not terms:
            return [], [], True
        keys, scores = lex.search(terms, take, *_scope_of(query))
        return keys.tolist(), scores.tolist(), len(keys) < take

    def _light_rows(self, query: CandidateQuery, keys: Sequence[int]) -> dict[int, CandidateRow]:
        """rowid → light row of the ``keys`` the query sees. Without a metadata filter, from the mirror
        (the rows it lacks are read by rowid, then kept); with one, by rowid under the full clause."""
        if query.filter is not None or self.mirror_rows <= 0:
            where, params = visibility(query, "sqlite", to_us)
            return self._rows_by_rowid(keys, where, params)
        with self._lock:
            rows = self._sync_mirror()
            found, missing = rows.lookup(keys)
            epoch = rows.epoch
        for chunk in chunks(missing, 500):
            found.update(self._read_into_mirror(rows, epoch, f"r.rowid IN ({marks(len(chunk))})", chunk))
        sees = mirror.seer(query, mirror.now_us())
        return {k: e.row for k, e in found.items() if sees(e)}

    def _sync_mirror(self) -> RowMirror:
        """The light-row mirror, caught up with the ``row_changes`` log (lock held). Another
        connection's commit moves ``PRAGMA data_version``, this connection's own moves
        ``total_changes``: while neither moves, nothing can have changed."""
        seen = (
            self._retry(lambda: self._conn.execute("PRAGMA data_version").fetchone()[0]),
            self._conn.total_changes,
        )
        if self._mirror is None:
            top = self._retry(
                lambda: self._conn.execute("SELECT coalesce(max(seq), 0) FROM row_changes").fetchone()[0]
            )
            self._mirror = RowMirror(top)
        elif seen != self._mirror_seen:
            mark = self._mirror.mark
            self._mirror.apply(
                self._retry(
                    lambda: self._conn.execute(
                        "SELECT seq, id FROM row_changes WHERE seq > ? ORDER BY seq", (mark,)
                    ).fetchall()
                )
            )
        self._mirror_seen = seen
        return self._mirror

    def _read_into_mirror(
        self, rows: RowMirror, epoch: int, where: str, params: Sequence[Any]
    ) -> list[tuple[int, Entry]]:
        """The rows ``where`` selects (no visibility clause: the mirror applies it), read from SQLite
        and kept in the mirror unless a change was applied since ``epoch``."""
        read = [
            mirror.entry_of(r)
            for r in self._read(f"SELECT {mirror.COLUMNS} {mirror.FROM} WHERE {where}", params)
        ]
        with self._lock:
            rows.put(read, epoch, self.mirror_rows)
        return read

    def _rows_by_rowid(self, keys: Sequence[int], where: str, params: list[Any]) -> dict[int, CandidateRow]:
        """rowid → light row of the ``keys`` the clause keeps, read by rowid (a query with a filter)."""
        out: dict[int, CandidateRow] = {}
        for chunk in chunks(list(keys), 500):
            for row in self._read(
                f"SELECT r.rowid, {mirror.LIGHT_COLUMNS} {mirror.FROM} WHERE r.rowid IN ({marks(len(chunk))}) "
                f"AND {where}",
                (*chunk, *params),
            ):
                out[row[0]] = mirror.light_row(row[1:])
        return out

    def _candidate_rows(self, query: CandidateQuery, ids: Sequence[str]) -> dict[str, CandidateRow]:
        """The light rows of ``ids`` that the query sees, looked up by id."""
        ids = list(dict.fromkeys(ids))
        where, params = visibility(query, "sqlite", to_us)
        out: dict[str, CandidateRow] = {}
        for chunk in chunks(ids, 500):
            for row in self._read(
                f"SELECT {mirror.LIGHT_COLUMNS} {mirror.FROM} WHERE r.rowid IN "
                f"(SELECT rowid FROM records WHERE id IN ({marks(len(chunk))})) AND {where}",
                (*chunk, *params),
            ):
                out[row[0]] = mirror.light_row(row)
        return out

    def visible(
        self, query: CandidateQuery, ids: Sequence[str], *, with_embedding: bool = False
    ) -> dict[str, MemoryRecord]:
        ids = list(dict.fromkeys(ids))
        where, params = visibility(query, "sqlite", to_us)
        out: dict[str, MemoryRecord] = {}
        for chunk in chunks(ids, 500):
            rows = self._read(
                # look the candidates up by id (their rowids), never by walking the tenant's visibility index
                f"SELECT {columns(with_embedding)} FROM {RECORDS_BY_ROWID} WHERE r.rowid IN (SELECT rowid FROM records WHERE id IN ({marks(len(chunk))})) AND {where}",
                (*chunk, *params),
            )
            out.update((r.id, r) for r in hydrate(rows, with_embedding))
        return out

    def vectors(self, tenant: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for chunk in chunks(list(dict.fromkeys(ids)), 500):
            for rid, blob in self._read(
                f"SELECT id, embedding FROM records WHERE tenant = ? AND id IN ({marks(len(chunk))}) "
                "AND expired_at IS NULL AND embedding IS NOT NULL",
                (tenant, *chunk),
            ):
                out[rid] = np.frombuffer(blob, dtype=np.float32).copy()
        return out

    def _space_tag(self) -> tuple[str, int] | None:
        rows = dict(
            self._conn.execute(
                "SELECT key, value FROM meta WHERE key IN ('embedding_model', 'embedding_dim', 'vec_epoch')"
            ).fetchall()
        )
        if "embedding_model" not in rows:
            return None
        return f"{rows['embedding_model']}|{rows['embedding_dim']}|{rows.get('vec_epoch', '0')}", int(
            rows["embedding_dim"]
        )

    def _sync_index(self) -> VectorIndex | None:
        """Load, build or catch up the in-memory index so it matches the committed rows (lock held).

        ``PRAGMA data_version`` changes only when another connection commits: while it stands still,
        the index (which this connection's own writes keep current) needs no catching up. A saved file
        that does not match the rows (:meth:`_file_matches`) is rebuilt from them."""
        version = self._retry(lambda: self._conn.execute("PRAGMA data_version").fetchone()[0])
        if self._index is not None and version == self._data_version:
            return self._index
        tag = self._retry(self._space_tag)
        if tag is None:
            self._index = None
            return None
        space, dim = tag
        if self._index is None or self._index.mark.space != space:
            self._index, rebuilt = self._adopt(
                VectorIndex.load(self.index_path, dim, space, self.exact_threshold),
                "vec_removed",
                lambda: fresh_index(dim, space, self.exact_threshold),
                self._catch_up,
                lambda: int(self._retry(lambda: self._conn.execute(VECTOR_ROWS).fetchone()[0])),
            )
            if rebuilt:
                self._save_index()
        else:
            self._catch_up(self._index)
        self._data_version = version
        return self._index

    def _catch_up(self, index: VectorIndex) -> None:
        def read() -> tuple[list[tuple[int, int]], int]:
            removed = self._conn.execute(
                "SELECT seq, row FROM vec_removed WHERE seq > ? ORDER BY seq", (index.mark.removed,)
            ).fetchall()
            top = self._conn.execute("SELECT coalesce(max(rowid), 0) FROM records").fetchone()[0]
            return removed, top

        removed, top = self._retry(read)
        if removed:
            index.remove(np.array([r for _, r in removed], dtype=np.int64))
            index.mark.removed = removed[-1][0]
            self._unsaved += len(removed)
        while index.mark.rows < top:
            rows = self._retry(
                lambda: self._conn.execute(
                    "SELECT rowid, tenant, user_id, agent_id, session_id, embedding FROM records "
                    "WHERE rowid > ? AND rowid <= ? AND embedding IS NOT NULL ORDER BY rowid LIMIT 20000",
                    (index.mark.rows, top),
                ).fetchall()
            )
            if not rows:
                index.mark.rows = top
                break
            keys = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vecs = np.frombuffer(b"".join(r[5] for r in rows), dtype=np.float32).reshape(len(rows), -1)
            index.add(keys, vecs, [r[1:5] for r in rows])
            self._unsaved += len(rows)
            index.mark.rows = int(keys[-1]) if len(rows) == 20000 else top

    def _index_added(self, wrote_vectors: bool) -> None:
        """After a commit that added or removed rows: the indexes read them back at once (kept current
        on add), and are saved beside the file once enough of them is unsaved (a crash then re-reads
        little). The lexical index takes every row; the vector index the rows with vectors."""
        with self._lock:
            before = None if self._lex is None else self._lex.mark.rows
            self._lex_version = None
            lex = self._sync_lexical()
            if self._lex_unsaved >= max(SAVE_EVERY, len(lex) // 2):
                self._save_lexical()
        if before is not None and lex.mark.rows > before:
            self._mirror_added(before, lex.mark.rows)
        if not wrote_vectors:
            return
        with self._lock:
            self._data_version = None
            index = self._sync_index()
            if index is not None and self._unsaved >= max(SAVE_EVERY, len(index) // 2):
                self._save_index()

    def _mirror_added(self, after: int, upto: int) -> None:
        """Rows just added (rowids after ``after`` up to ``upto``) go into the mirror: what was just
        written is what a search soon reads (one range read)."""
        if self.mirror_rows <= 0:
            return
        with self._lock:
            rows = self._sync_mirror()
            epoch = rows.epoch
        self._read_into_mirror(rows, epoch, "r.rowid > ? AND r.rowid <= ?", (after, upto))

    def _sync_lexical(self) -> LexicalIndex:
        """Load, build or catch up the lexical index so it matches the committed rows (lock held).

        Opening loads the saved file and catches up from its watermarks (rows past ``rows``, removals
        logged in ``lex_removed`` past ``removed``); a file that is missing, unreadable or does not
        match the rows (:meth:`_file_matches`) is rebuilt from them (the truth)."""
        version = self._retry(lambda: self._conn.execute("PRAGMA data_version").fetchone()[0])
        if self._lex is not None and version == self._lex_version:
            return self._lex

        def read(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
            return self._retry(lambda: self._conn.execute(sql, params).fetchall())

        def count() -> int:
            return int(read("SELECT count(*) FROM records", ())[0][0])

        def take_in(lex: LexicalIndex) -> None:
            before = lex.mark.rows + lex.mark.removed
            lex.catch_up(read, "lex_removed")
            self._lex_unsaved += lex.mark.rows + lex.mark.removed - before

        if self._lex is None:
            self._lex_unsaved = 0
            self._lex, rebuilt = self._adopt(
                LexicalIndex.load(self.lexical_path), "lex_removed", LexicalIndex, take_in, count
            )
            if rebuilt:
                self._save_lexical()
        else:
            take_in(self._lex)
        self._lex_version = version
        return self._lex

    def check_indexes(self) -> dict[str, dict[str, Any]]:
        """Each index kept beside the file against the rows (what ``memq check`` prints): how many rows
        it should hold, how many it holds, and whether they are the same rows. The indexes are caught
        up first, as a search would; a row changed by plain SQL under the same rowid is not seen."""
        return {"vector": self._check_vectors(), "lexical": self._check_lexical()}

    def rebuild_indexes(self) -> dict[str, dict[str, Any]]:
        """Rebuild both indexes from the rows and save them over their files; then check them. Each
        sidecar goes first, so a crash part-way leaves files the next open rebuilds."""
        with self._lock:
            if self._index is not None:
                self._index.settle()
            for path in (self.index_path, self.lexical_path):
                sidecar(path).unlink(missing_ok=True)
            self._index, self._data_version, self._unsaved = None, None, 0
            self._lex, self._lex_version, self._lex_unsaved = None, None, 0
            self._sync_index()
            self._sync_lexical()
            self._save_index()
            self._save_lexical()
        return self.check_indexes()

    def _check_vectors(self) -> dict[str, Any]:
        with self._lock:
            index = self._sync_index()
            rows = {r[0] for r in self._read("SELECT rowid FROM records WHERE embedding IS NOT NULL")}
            keys = set() if index is None else {int(k) for k in index.all_keys()}
        return {"rows": len(rows), "indexed": len(keys), "ok": rows == keys}

    def _check_lexical(self) -> dict[str, Any]:
        with self._lock:
            held = self._sync_lexical().rowids().tolist()
            rows = [r[0] for r in self._read("SELECT rowid FROM records ORDER BY rowid")]
        return {"rows": len(rows), "indexed": len(held), "ok": held == rows}

    def verify_lexical(self) -> bool:
        """True when the lexical index holds exactly the rows."""
        return bool(self._check_lexical()["ok"])

    def verify_mirror(self, query: CandidateQuery) -> bool:
        """True when the light-row mirror answers ``query`` for every row as SQL does (used by tests)."""
        keys = [r[0] for r in self._read("SELECT rowid FROM records ORDER BY rowid")]
        where, params = visibility(query, "sqlite", to_us)
        return self._light_rows(query, keys) == self._rows_by_rowid(keys, where, params)

    def verify_index(self) -> bool:
        """True when the vector index holds exactly the rows that have vectors."""
        return bool(self._check_vectors()["ok"])


def fresh_index(dim: int, space: str, hnsw_from: int) -> VectorIndex:
    index = VectorIndex(dim, hnsw_from)
    index.mark.space = space
    return index
