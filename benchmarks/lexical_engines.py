"""The engines benchmarks/lexical_bench.py compares, behind one small interface (add, search, save, reopen)."""

from __future__ import annotations

import gc
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from memq.store.sqlite.lexical import LexicalIndex
from memq.store.sqlite.lexical_terms import Vocabulary

TENANT = "bench"
BATCH = 500  # rows per add in a bulk load


def dir_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class Engine:
    name = ""
    exact = False

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir

    def add(self, rows: list[int], texts: list[str], users: list[str]) -> None: ...
    def search(self, terms: list[str], n: int, user: str | None) -> list[int]: ...
    def save(self) -> None:
        pass

    def reopen(self) -> None: ...
    def disk_bytes(self) -> int:
        return dir_bytes(self.dir)

    def close(self) -> None: ...


class MemqEngine(Engine):
    name, exact = "memq", True

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.index = LexicalIndex()
        self.path = workdir / "index.lexical"

    def add(self, rows: list[int], texts: list[str], users: list[str]) -> None:
        self.index.add(rows, texts, [(TENANT, u, None, None) for u in users])

    def search(self, terms: list[str], n: int, user: str | None) -> list[int]:
        return self.index.search(terms, n, TENANT, user=user)[0].tolist()

    def scores(self, terms: list[str], n: int) -> list[float]:
        return self.index.search(terms, n, TENANT)[1].tolist()

    def save(self) -> None:
        self.index.save(self.path)

    def reopen(self) -> None:
        self.index = None  # type: ignore[assignment]
        gc.collect()
        loaded = LexicalIndex.load(self.path)
        assert loaded is not None
        self.index = loaded

    def array_bytes(self) -> int:
        i = self.index
        segs = sum(s.terms.nbytes + s.starts.nbytes + s.docs.nbytes + s.tfs.nbytes for s in i._segments)
        return segs + i._df.nbytes + i._dl.nbytes + i._scope.nbytes + i._acc.nbytes + i._ghost.nbytes


class Fts5Engine(Engine):
    """memq's own schema and ``lexical_candidates`` (rows inserted with SQL, as memq's insert does)."""

    name, exact = "fts5", True

    def __init__(self, workdir: Path) -> None:
        from memq.store.sqlite import SQLiteStore

        super().__init__(workdir)
        self.path = workdir / "store.db"
        self.store = SQLiteStore(self.path)
        self.conn = sqlite3.connect(self.path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = NORMAL")

    def add(self, rows: list[int], texts: list[str], users: list[str]) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany(
            "INSERT INTO records (rowid, id, version, tenant, user_id, kind, text, payload, metadata, "
            "source_message_ids, parent_ids, recorded_at) VALUES (?, ?, 1, ?, ?, 'episode', ?, '{}', '{}', "
            "'[]', '[]', 0)",
            [(r, f"r{r}", TENANT, u, t) for r, t, u in zip(rows, texts, users, strict=True)],
        )
        self.conn.execute("COMMIT")

    def search(self, terms: list[str], n: int, user: str | None) -> list[int]:
        from memq.store.base import CandidateQuery
        from memq.types import Scope

        q = CandidateQuery(scope=Scope(tenant=TENANT, user=user))
        return [int(c.id[1:]) for c in self.store.lexical_candidates(q, " ".join(terms), n)]

    def reopen(self) -> None:
        from memq.store.sqlite import SQLiteStore

        self.store.close()
        self.store = SQLiteStore(self.path)

    def fts_bytes(self) -> int:
        return int(
            self.conn.execute("SELECT sum(pgsize) FROM dbstat WHERE name LIKE 'records_fts%'").fetchone()[0]
            or 0
        )

    def close(self) -> None:
        self.store.close()
        self.conn.close()


def match_expr(terms: list[str]) -> str:
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


class Fts5RankEngine(Engine):
    """The FTS5 table alone, ``ORDER BY rank`` (scoped: rows of the user by an ``IN`` sub-query)."""

    name, exact = "fts5-rank", True

    def __init__(self, workdir: Path, shared: Fts5Engine) -> None:
        super().__init__(workdir)
        self.shared = shared
        self.conn = sqlite3.connect(shared.path, isolation_level=None)

    def add(self, rows: list[int], texts: list[str], users: list[str]) -> None:
        pass  # reads the fts5 engine's database

    def search(self, terms: list[str], n: int, user: str | None) -> list[int]:
        if user is None:
            sql = "SELECT rowid FROM records_fts WHERE records_fts MATCH ? ORDER BY rank LIMIT ?"
            return [r for (r,) in self.conn.execute(sql, (match_expr(terms), n))]
        sql = (
            "SELECT rowid FROM records_fts WHERE records_fts MATCH ? AND rowid IN "
            "(SELECT rowid FROM records WHERE tenant = ? AND user_id = ?) ORDER BY rank LIMIT ?"
        )
        return [r for (r,) in self.conn.execute(sql, (match_expr(terms), TENANT, user, n))]

    def reopen(self) -> None:
        self.conn.close()
        self.conn = sqlite3.connect(self.shared.path, isolation_level=None)

    def disk_bytes(self) -> int:
        return 0

    def close(self) -> None:
        self.conn.close()


class Fts5RareEngine(Fts5RankEngine):
    """The full OR query, scored by FTS5, over the rows that hold one of its two rarest terms."""

    name, exact = "fts5-rare", False

    def __init__(self, workdir: Path, shared: Fts5Engine) -> None:
        super().__init__(workdir, shared)
        self.vocab = Vocabulary()
        self._vocab_table()

    def reopen(self) -> None:
        super().reopen()
        self._vocab_table()

    def _vocab_table(self) -> None:
        self.conn.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS temp.fts_rows USING fts5vocab(main, records_fts, 'row')"
        )

    def search(self, terms: list[str], n: int, user: str | None) -> list[int]:
        stems = [self.vocab.tokens.resolve([t])[0] for t in terms]
        df = []
        for t, s in zip(terms, stems, strict=True):
            row = self.conn.execute(
                "SELECT doc FROM temp.fts_rows WHERE term = ?", (s[0] if s else "",)
            ).fetchone()
            df.append((row[0] if row else 0, t))
        rare = [t for d, t in sorted(df) if d > 0][:2]
        if not rare:
            return []
        scope = (
            ""
            if user is None
            else " AND rowid IN (SELECT rowid FROM records WHERE tenant = ? AND user_id = ?)"
        )
        sql = (
            "SELECT rowid FROM records_fts WHERE records_fts MATCH ? AND rowid IN "
            f"(SELECT rowid FROM records_fts WHERE records_fts MATCH ?){scope} ORDER BY rank LIMIT ?"
        )
        params: list[Any] = [match_expr(terms), match_expr(rare)] + ([] if user is None else [TENANT, user])
        return [r for (r,) in self.conn.execute(sql, (*params, n))]


def stems_of(vocab: Vocabulary, texts: list[str]) -> list[list[str]]:
    return [[vocab.stems[i] for i in ids] for ids in vocab.doc_ids(texts)]


class TantivyEngine(Engine):
    name = "tantivy"

    def __init__(self, workdir: Path) -> None:
        import tantivy

        super().__init__(workdir)
        self.t = tantivy
        sb_ = tantivy.SchemaBuilder()
        sb_.add_text_field("text", tokenizer_name="whitespace", index_option="freq")
        sb_.add_text_field("user", tokenizer_name="raw", index_option="basic")
        sb_.add_integer_field("rowid", stored=True, fast=True)
        self.schema = sb_.build()
        (workdir / "tantivy").mkdir()
        self.index = tantivy.Index(self.schema, path=str(workdir / "tantivy"))
        self.writer = self.index.writer(heap_size=64_000_000, num_threads=1)
        self.vocab = Vocabulary()

    def add(self, rows: list[int], texts: list[str], users: list[str]) -> None:
        for r, stems, u in zip(rows, stems_of(self.vocab, texts), users, strict=True):
            self.writer.add_document(self.t.Document(text=" ".join(stems), user=u, rowid=r))
        self.writer.commit()
        self.index.reload()  # a search right after the add sees it

    def search(self, terms: list[str], n: int, user: str | None) -> list[int]:
        t = self.t
        stems = [s for term in terms for s in self.vocab.tokens.resolve([term])[0]]
        if not stems:
            return []
        q = t.Query.boolean_query(
            [(t.Occur.Should, t.Query.term_query(self.schema, "text", s)) for s in stems]
        )
        if user is not None:
            only = t.Query.const_score_query(t.Query.term_query(self.schema, "user", user), 0.0)
            q = t.Query.boolean_query([(t.Occur.Must, q), (t.Occur.Must, only)])
        searcher = self.index.searcher()
        return [searcher.doc(addr)["rowid"][0] for _, addr in searcher.search(q, n).hits]

    def save(self) -> None:
        self.writer.wait_merging_threads()  # consumes the writer (and its lock)
        self.writer = None

    def reopen(self) -> None:
        self.index = self.t.Index.open(str(self.dir / "tantivy"))


class Bm25sEngine(Engine):
    """bm25s with FTS5's idf (``robertson``); it has no incremental add, so every add rebuilds it."""

    name = "bm25s"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.vocab = Vocabulary()
        self.rows: list[int] = []
        self.ids: list[list[int]] = []
        self.users: list[str] = []
        self.model: Any = None

    def add(self, rows: list[int], texts: list[str], users: list[str]) -> None:
        self.rows += rows
        self.ids += self.vocab.doc_ids(texts)
        self.users += users
        self._rebuild()

    def bulk(self, rows: list[int], texts: list[str], users: list[str]) -> None:
        """Tokenize in batches, build once (how bm25s is meant to be used)."""
        for i in range(0, len(rows), BATCH):
            self.rows += rows[i : i + BATCH]
            self.ids += self.vocab.doc_ids(texts[i : i + BATCH])
            self.users += users[i : i + BATCH]
        self._rebuild()

    def _rebuild(self) -> None:
        import bm25s
        from bm25s.tokenization import Tokenized

        vocab = {s: i for i, s in enumerate(self.vocab.stems)}
        self.model = bm25s.BM25(method="robertson", k1=1.2, b=0.75)
        self.model.index(Tokenized(ids=self.ids, vocab=vocab), show_progress=False)
        self.user_arr = np.array(self.users)
        self.row_arr = np.array(self.rows)

    def search(self, terms: list[str], n: int, user: str | None) -> list[int]:
        stems = [self.vocab.stems[i] for i in self.vocab.query_ids(terms)]
        if not stems:
            return []
        scores = self.model.get_scores(stems)
        if user is not None:
            scores = np.where(self.user_arr == user, scores, 0.0)
        n = min(n, int((scores > 0).sum()))
        if n == 0:
            return []
        top = np.argpartition(-scores, n - 1)[:n]
        top = top[np.argsort(-scores[top], kind="stable")]
        return self.row_arr[top].tolist()

    def save(self) -> None:
        self.model.save(str(self.dir / "bm25s"), show_progress=False)

    def reopen(self) -> None:
        import bm25s

        self.model = None
        gc.collect()
        self.model = bm25s.BM25.load(str(self.dir / "bm25s"), show_progress=False)
