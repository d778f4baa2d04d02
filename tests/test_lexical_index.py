"""The SQLite store's lexical index (memq.store.sqlite.lexical): BM25 equal to FTS5's, on FTS5's tokens."""

from __future__ import annotations

import json
import math
import random
import re
import sqlite3
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from memq.store.sqlcommon import query_terms
from memq.store.sqlite import lexical
from memq.store.sqlite.lexical import LexicalIndex
from memq.store.sqlite.lexical_terms import TOKENIZE, Vocabulary
from memq_bench.data import data_root

T = ("t", None, None, None)
RTOL = 2e-6  # scores are accumulated in float32

UNICODE_TEXTS = [
    "Café naïve résumé façade Ångström Øresund straße İstanbul ŁÓDŹ",
    "e\u0301clair cafe\u0301s  CAFÉS",  # combining accents (NFD)
    "foo_bar snake_case x_1 user_id",
    "北京 大学 東京タワー 지금 번역하기",
    "Привет мир бегущий ΣΊΣΥΦΟΣ σοφία",
    "ﬁnance ½ ² Ⅻ ① ǅemal ﬀ Ⓐⓑ x\u200by abc\u00addef",
    "don't it's rock'n'roll 3rd 1990s 10,000 12:30pm 🎉 emoji🙂test",
    "caresses ponies ties caress cats feed agreed disabled matting mating meeting milling messing",
    "technology technologies incredibly trekking psychology generalizations oscillators",
    "a" * 70 + "ing " + "b" * 40_000,
    "",
    "   ...   ",
]


def fts5_tokens(texts: list[str]) -> list[list[str]]:
    """The tokens FTS5 itself makes of each text, in order."""
    db = sqlite3.connect(":memory:")
    db.execute(f"CREATE VIRTUAL TABLE f USING fts5(x, tokenize='{TOKENIZE}')")
    db.execute("CREATE VIRTUAL TABLE v USING fts5vocab(f, 'instance')")
    db.executemany("INSERT INTO f (rowid, x) VALUES (?, ?)", enumerate(texts))
    out: list[list[tuple[int, str]]] = [[] for _ in texts]
    for term, doc, offset in db.execute("SELECT term, doc, offset FROM v"):
        out[doc].append((offset, term))
    return [[t for _, t in sorted(x)] for x in out]


def reference_bm25(docs: dict[int, list[str]], query: list[list[str]]) -> dict[int, float]:
    """BM25 as FTS5 defines it, written out plainly: one phrase per query term, idf floored at 1e-6."""
    n = len(docs)
    avgdl = sum(len(d) for d in docs.values()) / n
    counts = {r: Counter(d) for r, d in docs.items()}
    scores: dict[int, float] = {}
    for phrase in query:
        for tok in phrase:
            df = sum(1 for c in counts.values() if tok in c)
            if df == 0:
                continue
            idf = max(math.log((n - df + 0.5) / (df + 0.5)), 1e-6)
            for r, c in counts.items():
                if tok in c:
                    tf = c[tok]
                    scores[r] = scores.get(r, 0.0) + idf * tf * 2.2 / (
                        tf + 1.2 * (0.25 + 0.75 * len(docs[r]) / avgdl)
                    )
    return scores


def fts5_top(texts: dict[int, str], terms: list[str], n: int) -> list[tuple[int, float]]:
    db = sqlite3.connect(":memory:")
    db.execute(f"CREATE VIRTUAL TABLE f USING fts5(x, tokenize='{TOKENIZE}')")
    db.executemany("INSERT INTO f (rowid, x) VALUES (?, ?)", texts.items())
    match = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
    return [
        (r, -s)
        for r, s in db.execute(
            "SELECT rowid, bm25(f) FROM f WHERE f MATCH ? ORDER BY rank LIMIT ?", (match, n)
        )
    ]


def build(texts: dict[int, str], scopes: dict[int, tuple] | None = None, batch: int = 1000) -> LexicalIndex:
    index = LexicalIndex()
    rows = sorted(texts)
    for i in range(0, len(rows), batch):
        part = rows[i : i + batch]
        index.add(part, [texts[r] for r in part], [(scopes or {}).get(r, T) for r in part])
    return index


def assert_same_ranking(got: tuple[np.ndarray, np.ndarray], want: list[tuple[int, float]]) -> None:
    """Same scores; same rows, except that rows tied at the cut-off may differ."""
    rows, scores = got
    assert len(rows) == len(want)
    np.testing.assert_allclose(scores, [s for _, s in want], rtol=RTOL)
    if want:
        last = want[-1][1]
        strict = lambda pairs: {r for r, s in pairs if s > last * (1 + 4 * RTOL)}  # noqa: E731
        assert strict(zip(rows.tolist(), scores.tolist(), strict=True)) == strict(want)


# -- tokens ---------------------------------------------------------------------------------------


def test_tokens_are_fts5s_on_unicode_and_stemming_edge_cases() -> None:
    vocab = Vocabulary()
    ids = vocab.doc_ids(UNICODE_TEXTS)
    mine = [[vocab.stems[i] for i in doc] for doc in ids]
    assert mine == fts5_tokens(UNICODE_TEXTS)
    # SQLite's porter stemmer, not Snowball's
    assert mine[8][:4] == ["technolog", "technolog", "incred", "trek"]


def test_a_large_tokenizer_call_leaves_no_free_pages_behind() -> None:
    """After a bulk add's many new words, the tokenizer's in-memory database is compacted: its free
    pages made every later one-text add's call several times slower."""
    from memq.store.sqlite.lexical_terms import VACUUM_FROM, Fts5Tokens

    tokens = Fts5Tokens()
    words = [f"word{i}x" for i in range(4 * VACUUM_FROM)]
    assert tokens.resolve(words)[:2] == [["word0x"], ["word1x"]]
    assert tokens._conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
    assert tokens.resolve(["running"]) == [["run"]]


def test_query_terms_resolve_to_the_same_stems() -> None:
    vocab = Vocabulary()
    vocab.doc_ids(["The runners were running to the Café", "naïve technology"])
    ids = vocab.query_ids(["running", "runner", "cafés", "cafe", "naive", "technologies", "unseen"])
    assert [vocab.stems[i] for i in ids] == ["run", "runner", "cafe", "cafe", "naiv", "technolog"]


# -- scores ---------------------------------------------------------------------------------------

SMALL = {
    1: "The cat sat on the mat with another cat",
    2: "A dog chased the cat around the garden",
    3: "Dogs and cats are common pets; the dog barks",
    4: "My garden has roses, tulips and a small pond",
    5: "The pond froze in winter and the ducks left",
    6: "Cats sleep most of the day, dogs less so",
    7: "I bought a new mat for the yoga class",
    8: "The yoga class meets in the garden on Sundays",
    9: "Sundays are for long walks with the dog",
    10: "Nothing here matches anything at all",
}


@pytest.mark.parametrize(
    "query",
    ["cat", "dog garden", "cats dogs pets", "yoga mat sunday", "pond ducks winter roses", "zebra", "the cat"],
)
def test_scores_equal_a_reference_bm25_and_fts5(query: str) -> None:
    index = build(SMALL)
    terms = query_terms(query)
    rows, scores = index.search(terms, 20, "t")
    tokens = fts5_tokens([SMALL[r] for r in sorted(SMALL)])
    docs = dict(zip(sorted(SMALL), tokens, strict=True))
    ref = reference_bm25(docs, fts5_tokens(terms))
    assert dict(zip(rows.tolist(), scores.tolist(), strict=True)) == pytest.approx(ref, rel=RTOL)
    assert_same_ranking((rows, scores), fts5_top(SMALL, terms, 20))


def test_a_repeated_stem_counts_once_per_query_term_as_in_fts5() -> None:
    index = build(SMALL)
    terms = ["cat", "cats"]  # two phrases with one stem: FTS5 adds both
    assert_same_ranking(index.search(terms, 10, "t"), fts5_top(SMALL, terms, 10))


def test_ties_are_broken_by_rowid() -> None:
    texts = {r: "same words in every row" for r in (9, 3, 7, 1, 5)} | {2: "other text"}
    index = build(texts)
    rows, scores = index.search(["words"], 3, "t")
    assert rows.tolist() == [1, 3, 5]
    assert len(set(scores.tolist())) == 1


def test_one_at_a_time_and_batched_adds_give_the_same_index() -> None:
    texts = {r: f"row {r} talks about topic{r % 7} and topic{r % 3} and more" for r in range(1, 400)}
    batched = build(texts, batch=400)
    single = build(texts, batch=1)  # through the buffer, flushed into segments and merged
    for q in (["topic1"], ["topic2", "more"], ["row", "topic0", "topic6"]):
        a, b = batched.search(q, 30, "t"), single.search(q, 30, "t")
        assert a[0].tolist() == b[0].tolist()
        np.testing.assert_allclose(a[1], b[1], rtol=RTOL)


def brute_force(
    index: LexicalIndex, texts: dict[int, str], terms: list[str], n: int
) -> list[tuple[int, float]]:
    docs = dict(zip(texts, fts5_tokens(list(texts.values())), strict=True))
    ref = reference_bm25(docs, fts5_tokens(terms))
    return sorted(ref.items(), key=lambda x: (-x[1], x[0]))[:n]


def test_pruned_search_is_exact() -> None:
    """Many rows and skewed terms, so MaxScore stops early: the top n is still the exact one."""
    rng = random.Random(3)
    common = ["alpha", "beta", "gamma", "delta"]
    rare = [f"rare{i}" for i in range(40)]
    texts = {}
    for r in range(1, 3001):
        words = rng.choices(common, k=rng.randint(3, 12)) + rng.choices(rare, k=rng.randint(0, 2))
        texts[r] = " ".join(words + ["filler"] * rng.randint(0, 8))
    scopes = {r: ("t", f"u{r % 3}", None, None) for r in texts}
    index = build(texts, scopes, batch=500)
    for q in (["rare1", "alpha", "beta"], ["rare5", "rare6", "gamma", "delta", "alpha"], ["rare7", "filler"]):
        for n in (1, 5, 20):
            assert_same_ranking(index.search(q, n, "t"), brute_force(index, texts, q, n))
            # within a user: the same global statistics, only that user's rows
            want = [(r, s) for r, s in brute_force(index, texts, q, len(texts)) if r % 3 == 1][:n]
            assert_same_ranking(index.search(q, n, "t", user="u1"), want)


def test_locomo_turns_rank_as_fts5_ranks_them() -> None:
    root = data_root()
    path = None if root is None else root / "locomo" / "locomo10.json"
    if path is None or not path.exists():
        pytest.skip("LoCoMo is not in ../shared/data (set MEMQ_DATA)")
    data = json.loads(path.read_text())
    turns = [
        t["text"]
        for conv in data[:2]
        for key, session in conv["conversation"].items()
        if re.fullmatch(r"session_\d+", key)
        for t in session
    ][:600]
    texts = dict(enumerate(turns, start=1))
    index = build(texts, batch=250)
    questions = [qa["question"] for conv in data[:2] for qa in conv["qa"]][:80]
    for q in questions:
        terms = query_terms(q)
        if any("_" in t for t in terms):
            continue  # FTS5 reads foo_bar as a phrase; the index as two terms (documented)
        assert_same_ranking(index.search(terms, 10, "t"), fts5_top(texts, terms, 10))


# -- writes, scope, persistence ---------------------------------------------------------------------


def test_removed_rows_leave_the_statistics_as_if_never_added() -> None:
    texts = {
        r: f"entry {r} about {'apples' if r % 3 else 'pears'} and {'cider' if r % 5 else 'juice'}"
        for r in range(1, 301)
    }
    index = build(texts, batch=50)
    gone = [r for r in texts if r % 4 == 0] + [9999]  # an unknown rowid is ignored
    index.remove(gone)
    kept = {r: t for r, t in texts.items() if r % 4}
    fresh = build(kept)
    assert len(index) == len(fresh) == len(kept)
    for q in (["apples"], ["pears", "juice"], ["cider", "entry"]):
        a, b = index.search(q, 500, "t"), fresh.search(q, 500, "t")
        assert a[0].tolist() == b[0].tolist()
        np.testing.assert_allclose(a[1], b[1], rtol=RTOL)
    index.remove(list(kept)[: len(kept) * 3 // 4])  # most of every segment: rewritten without them
    assert len(index) == len(kept) - len(kept) * 3 // 4
    assert set(index.search(["entry"], 1000, "t")[0].tolist()) == set(list(kept)[len(kept) * 3 // 4 :])


def test_a_removed_rowid_added_again_has_only_its_new_text() -> None:
    index = build({1: "old words here", 2: "other words", 3: "more words"})
    index.remove([1])
    index.add([1], ["brand new"], [T])
    assert index.search(["old"], 5, "t")[0].tolist() == []
    assert index.search(["brand"], 5, "t")[0].tolist() == [1]


def test_rowids_removed_from_old_segments_and_added_again_score_once() -> None:
    """A term's postings from every segment are scored together: a rowid whose old postings sit in
    an early segment and whose new ones in a later segment must count once, as in a fresh index."""
    texts = {r: f"note {r} about {'garden' if r % 2 else 'kitchen'} plans" for r in range(1, 751)}
    index = build(texts, batch=150)  # a segment per batch; four merge into one
    assert len(index._segments) == 2
    again = [r for r in texts if r % 5 == 0]  # 150 rows: a segment of their own
    index.remove(again)
    for r in again:  # same shared words, new text
        texts[r] = f"note {r} garden garden plans revised"
    index.add(again, [texts[r] for r in again], [T] * len(again))
    assert len(index._segments) == 3
    fresh = build(texts)
    for q in (["garden"], ["garden", "plans"], ["note", "kitchen", "revised"]):
        a, b = index.search(q, 50, "t"), fresh.search(q, 50, "t")
        assert a[0].tolist() == b[0].tolist()
        np.testing.assert_allclose(a[1], b[1], rtol=RTOL)
        assert len(set(a[0].tolist())) == len(a[0])


def test_scopes_are_isolated() -> None:
    texts, scopes = {}, {}
    for r in range(1, 201):
        tenant = "a" if r % 2 else "b"
        texts[r] = f"shared words row {r}"
        scopes[r] = (tenant, f"u{r % 4}", "bot" if r % 5 == 0 else None, f"s{r % 10}")
    index = build(texts, scopes, batch=64)
    rows, _ = index.search(["shared"], 1000, "a")
    assert set(rows.tolist()) == {r for r in texts if r % 2}
    rows, _ = index.search(["shared"], 1000, "b", user="u1")  # u1 exists only in tenant a
    assert rows.tolist() == []
    rows, _ = index.search(["shared"], 1000, "a", user="u1", session="s1")
    assert set(rows.tolist()) == {r for r in texts if r % 2 and r % 4 == 1 and r % 10 == 1}
    rows, _ = index.search(["shared"], 1000, "a", agent="bot")
    assert set(rows.tolist()) == {r for r in texts if r % 2 and r % 5 == 0}
    assert index.search(["shared"], 10, "nobody")[0].tolist() == []
    # statistics are global (as FTS5's): a tenant's scores do not depend on the filter
    full = dict(zip(*[x.tolist() for x in index.search(["row", "shared"], 1000, "a")], strict=True))
    part = dict(
        zip(*[x.tolist() for x in index.search(["row", "shared"], 1000, "a", user="u3")], strict=True)
    )
    assert part == {r: full[r] for r in part}


ROWS_SCHEMA = """
CREATE TABLE records (rowid INTEGER PRIMARY KEY AUTOINCREMENT, text TEXT NOT NULL, tenant TEXT NOT NULL,
                      user_id TEXT, agent_id TEXT, session_id TEXT);
CREATE TABLE lex_removed (seq INTEGER PRIMARY KEY AUTOINCREMENT, row INTEGER NOT NULL);
CREATE TRIGGER records_lex_del AFTER DELETE ON records BEGIN INSERT INTO lex_removed (row) VALUES (old.rowid); END;
"""


def rows_db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(ROWS_SCHEMA)
    return db


def reader(db: sqlite3.Connection):
    return lambda sql, params: db.execute(sql, params).fetchall()


def test_catch_up_save_load_round_trip(tmp_path: Path) -> None:
    db = rows_db(tmp_path / "rows.db")
    db.executemany(
        "INSERT INTO records (text, tenant, user_id) VALUES (?, 't', ?)",
        [(f"note {i} on {'tea' if i % 2 else 'coffee'}", f"u{i % 3}") for i in range(500)],
    )
    index = LexicalIndex()
    index.catch_up(reader(db), "lex_removed")
    assert len(index) == 500 and index.mark.rows == 500
    path = tmp_path / "rows.db.lexical"
    index.save(path, tag="v1")
    # the process goes on: more rows, a purge
    db.executemany(
        "INSERT INTO records (text, tenant) VALUES (?, 't')", [(f"late tea {i}",) for i in range(40)]
    )
    db.execute("DELETE FROM records WHERE rowid IN (1, 2, 3)")
    loaded = LexicalIndex.load(path, tag="v1")
    assert loaded is not None and len(loaded) == 500
    loaded.catch_up(reader(db), "lex_removed")
    rebuilt = LexicalIndex()
    rebuilt.catch_up(reader(db), "lex_removed")
    assert len(loaded) == len(rebuilt) == 537
    assert loaded.rowids().tolist() == rebuilt.rowids().tolist()
    for q, user in ((["tea"], None), (["coffee", "note"], "u1"), (["late"], None)):
        a, b = loaded.search(q, 100, "t", user=user), rebuilt.search(q, 100, "t", user=user)
        assert a[0].tolist() == b[0].tolist()
        np.testing.assert_allclose(a[1], b[1], rtol=RTOL)
    # saving again after catch-up keeps the watermarks
    loaded.save(path, tag="v1")
    again = LexicalIndex.load(path, tag="v1")
    assert again is not None and (again.mark.rows, again.mark.removed) == (540, 3)


def test_a_search_right_after_an_add_finds_the_row(tmp_path: Path) -> None:
    db = rows_db(tmp_path / "rows.db")
    index = LexicalIndex()
    for i in range(30):
        db.execute("INSERT INTO records (text, tenant) VALUES (?, 't')", (f"fresh fact number{i}",))
        index.catch_up(reader(db), "lex_removed")
        assert index.search([f"number{i}"], 5, "t")[0].tolist() == [i + 1]


def test_stale_or_corrupt_saved_files_are_refused(tmp_path: Path) -> None:
    index = build({1: "one text", 2: "two texts"})
    path = tmp_path / "x.lexical"
    index.save(path, tag="v1")
    assert LexicalIndex.load(path, tag="v1") is not None
    assert LexicalIndex.load(path, tag="v2") is None  # another store identity
    side = path.with_name(path.name + ".json")
    meta = json.loads(side.read_text())
    side.write_text(json.dumps(meta | {"count": 3}))  # disagrees with the file
    assert LexicalIndex.load(path, tag="v1") is None
    side.write_text(json.dumps(meta | {"sqlite": "0.0.0"}))  # another tokenizer build
    assert LexicalIndex.load(path, tag="v1") is None
    side.write_text(json.dumps(meta | {"format": lexical.FORMAT + 1}))
    assert LexicalIndex.load(path, tag="v1") is None
    side.write_text(json.dumps(meta))
    path.write_bytes(path.read_bytes()[:100])  # truncated
    assert LexicalIndex.load(path, tag="v1") is None
    side.write_text("{not json")
    assert LexicalIndex.load(path, tag="v1") is None
    assert LexicalIndex.load(tmp_path / "missing", tag="v1") is None


def test_a_saved_index_maps_its_postings_and_an_older_npz_still_loads(tmp_path: Path) -> None:
    """Format 2 is an array pack whose postings are mapped (POSIX): a loaded segment's docs are a
    view of the file, searches equal the saving index's, and a write after the load leaves the file
    alone. A format-1 file (the npz an older memq wrote) loads to the same index."""
    import hashlib
    import mmap
    import os

    from memq.store.sqlite.arrays import load_pack

    texts = {
        i: f"note {i} about {'tea' if i % 3 else 'coffee'} and {'cake' if i % 5 else 'bread'}"
        for i in range(1, 400)
    }
    index = build(texts)
    path = tmp_path / "p.lexical"
    index.save(path, tag="v1")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    loaded = LexicalIndex.load(path, tag="v1")
    assert loaded is not None and loaded._segments
    base = loaded._segments[0].docs
    while isinstance(base, np.ndarray):
        base = base.base
    assert isinstance(base, mmap.mmap) == (os.name == "posix")
    queries = (["tea", "cake"], ["coffee"], ["bread", "note", "tea"])
    for q in queries:
        a, b = index.search(q, 50, "t"), loaded.search(q, 50, "t")
        assert a[0].tolist() == b[0].tolist() and a[1].tobytes() == b[1].tobytes()
    loaded.add([500], ["tea tea tea"], [T])
    loaded.remove([1, 2, 3])
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert loaded.search(["tea"], 1, "t")[0].tolist() == [500]
    # the same index as an older memq saved it: an npz, format 1
    arrays = load_pack(path, mapped=False)
    with open(path, "wb") as fh:
        np.savez(fh, **{k: v.astype(np.uint32) if k == "tfs" else v for k, v in arrays.items()})
    side = path.with_name(path.name + ".json")
    side.write_text(json.dumps(json.loads(side.read_text()) | {"format": 1}))
    old = LexicalIndex.load(path, tag="v1")
    assert old is not None and len(old) == len(index)
    for q in queries:
        assert old.search(q, 50, "t")[0].tolist() == index.search(q, 50, "t")[0].tolist()


def test_an_array_pack_round_trips_and_refuses_a_cut_file(tmp_path: Path) -> None:
    from memq.store.sqlite.arrays import load_pack, save_pack

    arrays = {
        "a": np.arange(10, dtype=np.int32),
        "b": np.linspace(0, 1, 7, dtype=np.float32).reshape(7, 1),
        "empty": np.zeros(0, dtype=np.uint16),
    }
    path = tmp_path / "x.pack"
    with open(path, "wb") as fh:
        save_pack(fh, arrays)
    for mapped in (True, False):
        back = load_pack(path, mapped)
        assert back.keys() == arrays.keys()
        for k, v in arrays.items():
            assert back[k].dtype == v.dtype and back[k].shape == v.shape and (back[k] == v).all()
    data = path.read_bytes()
    table = b"[1, 2]"  # a magic and a length, but no table
    for spoilt in (data[:-70], b"garbage" + data, b"MEMQPACK1" + len(table).to_bytes(8, "little") + table):
        path.write_bytes(spoilt)
        with pytest.raises(ValueError):
            load_pack(path, mapped=True)
    with open(tmp_path / "o.pack", "wb") as fh, pytest.raises(ValueError):
        save_pack(fh, {"o": np.array([object()])})


def test_bad_rowids_are_rejected() -> None:
    index = LexicalIndex()
    with pytest.raises(ValueError, match="rowids"):
        index.add([-1], ["x"], [T])
    with pytest.raises(ValueError, match="duplicate"):
        index.add([4, 4], ["x", "y"], [T, T])
