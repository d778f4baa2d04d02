"""Terms of the lexical index: FTS5's tokenizer, run by SQLite itself, behind a word cache.

The index must see exactly the tokens FTS5's ``porter unicode61 remove_diacritics 2`` makes, so
LoCoMo recall does not move when the engine changes. SQLite's porter stemmer is not Snowball's
(``technology`` -> ``technolog`` here, ``technologi`` there), and unicode61's folding tables are its
own, so no Python stemmer reproduces it. Instead SQLite tokenizes each distinct piece of text once,
in batches, through an in-memory FTS5 table and its ``fts5vocab`` instance view (~5 µs a word);
the pieces are cached:

* ASCII text is split by ``[a-z0-9]+`` after lower-casing: unicode61's rule for ASCII (every
  other ASCII character separates tokens). Each such word is one token.
* Other text is split at whitespace (which unicode61 always treats as a separator) and each
  chunk goes to SQLite whole, so folding, diacritics and separators are SQLite's.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterable, Sequence

TOKENIZE = "porter unicode61 remove_diacritics 2"  # as the store's records_fts table
CACHE_MAX = 1_000_000  # cached words / chunks before a cache starts over
# a call with at least this many pieces leaves the in-memory database with free pages that make every
# later call ~6x slower (173 against 29 µs for one new word after a 10,000-text bulk add); VACUUM after it
VACUUM_FROM = 256

_ASCII_WORD = re.compile(r"[a-z0-9]+")


class Fts5Tokens:
    """FTS5's tokenizer as a function (SQLite's own code, in an in-memory database)."""

    def __init__(self) -> None:
        self._conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        self._conn.execute(f"CREATE VIRTUAL TABLE t USING fts5(x, content='', tokenize='{TOKENIZE}')")
        self._conn.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'instance')")
        self._lock = threading.Lock()

    def resolve(self, pieces: Sequence[str]) -> list[list[str]]:
        """The tokens of each piece, in order."""
        out: list[list[tuple[int, str]]] = [[] for _ in pieces]
        if not pieces:
            return []
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                self._conn.executemany("INSERT INTO t (rowid, x) VALUES (?, ?)", enumerate(pieces))
                for term, doc, offset in self._conn.execute("SELECT term, doc, offset FROM v"):
                    out[doc].append((offset, term))
                self._conn.execute("INSERT INTO t (t) VALUES ('delete-all')")
            finally:
                self._conn.execute("COMMIT")
            if len(pieces) >= VACUUM_FROM:
                self._conn.execute("VACUUM")
        return [[term for _, term in sorted(toks)] for toks in out]


def split_text(text: str) -> tuple[list[str], list[str]]:
    """A text as (lower-cased ASCII words, non-ASCII chunks)."""
    if text.isascii():
        return _ASCII_WORD.findall(text.lower()), []
    words: list[str] = []
    chunks: list[str] = []
    for chunk in text.split():
        if chunk.isascii():
            words += _ASCII_WORD.findall(chunk.lower())
        else:
            chunks.append(chunk)
    return words, chunks


class Vocabulary:
    """Stems and their term ids (ids are never reused), with the caches that map text to them."""

    def __init__(self, stems: Sequence[str] = ()) -> None:
        self.tokens = Fts5Tokens()
        self.stems: list[str] = list(stems)
        self._tid: dict[str, int] = {s: i for i, s in enumerate(self.stems)}
        self._word: dict[str, int] = {}  # ASCII word (lower case) -> term id
        self._chunk: dict[str, tuple[int, ...]] = {}  # non-ASCII chunk, or odd word -> term ids
        self._query: dict[str, list[str]] = {}  # query piece not seen in any document -> stems

    def __len__(self) -> int:
        return len(self.stems)

    def doc_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's tokens as term ids, in order (new stems get new ids)."""
        word, chunk = self._word, self._chunk
        split = [split_text(t) for t in texts]
        out: list[list[int]] = [[] for _ in split]
        pending = []
        for i, (ws, cs) in enumerate(split):
            if not cs:
                try:
                    out[i] = [word[w] for w in ws]
                    continue
                except KeyError:
                    pass
            pending.append(i)
        if not pending:
            return out
        missing_w = {w for i in pending for w in split[i][0] if w not in word and w not in chunk}
        missing_c = {c for i in pending for c in split[i][1] if c not in chunk}
        if len(word) + len(missing_w) > CACHE_MAX or len(chunk) + len(missing_c) > CACHE_MAX:
            word.clear()
            chunk.clear()
            missing_w = {w for i in pending for w in split[i][0]}
            missing_c = {c for i in pending for c in split[i][1]}
        pieces = sorted(missing_w) + sorted(missing_c)
        for piece, stems in zip(pieces, self.tokens.resolve(pieces), strict=True):
            ids = tuple(self._intern(s) for s in stems)
            if len(ids) == 1 and piece in missing_w:
                word[piece] = ids[0]
            else:
                chunk[piece] = ids
        for i in pending:
            ws, cs = split[i]
            out[i] = [t for w in ws + cs for t in ((word[w],) if w in word else chunk[w])]
        return out

    def _intern(self, stem: str) -> int:
        tid = self._tid.get(stem)
        if tid is None:
            tid = self._tid[stem] = len(self.stems)
            self.stems.append(stem)
        return tid

    def query_ids(self, terms: Iterable[str]) -> list[int]:
        """Term ids of query terms, with repeats; stems no document has are dropped.

        Each term is one FTS5 phrase; a term FTS5 splits into several tokens (``foo_bar``) gives
        them all, as separate terms.
        """
        pieces: list[str] = []
        for term in terms:
            words, chunks = split_text(term)
            pieces += words + chunks
        missing = sorted({p for p in pieces if p not in self._word and p not in self._query})
        if missing:
            if len(self._query) + len(missing) > CACHE_MAX // 10:
                self._query.clear()
            self._query.update(zip(missing, self.tokens.resolve(missing), strict=True))
        out: list[int] = []
        for p in pieces:
            tid = self._word.get(p)
            if tid is not None:
                out.append(tid)
            else:
                out += [self._tid[s] for s in self._query[p] if s in self._tid]
        return out
