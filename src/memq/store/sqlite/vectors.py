"""The SQLite store's vector index: the vectors in memory beside the database file, plus an HNSW
graph (usearch) once there are enough of them.

The rows in SQLite are the truth; the index is a cache that can always be rebuilt. It is keyed by the
row's integer ``rowid`` and tracks two watermarks:

* ``rows``: every row with ``rowid <= rows`` that has a vector is in the index;
* ``removed``: every entry of the ``vec_removed`` log with ``seq <= removed`` is applied.

Catching up brings the index level with the database (rows other processes wrote, purges they made);
the writing process adds its own rows right after each commit (their graph insert runs on a worker
thread; every use of the graph waits for it first, :meth:`VectorIndex.settle`), so the index is always
current.

What it keeps:

* a dense float32 *mirror* of every vector, with each row's scope codes (tenant, user, agent,
  session): exact search over a scope is a mask, a gather and one matrix-vector product — no SQL —
  and exact re-scoring of HNSW candidates is a gather;
* an HNSW graph (usearch, int8, connectivity 16) once the index holds ``hnsw_from`` vectors: below
  that, exact search over the mirror is as fast as a graph and costs nothing on add; at the crossing,
  the graph is built in one batch. Its int8 distances only pick candidates; scores are exact float32.

Saved on close (graph, mirror and codes, then a sidecar with the watermarks, each written atomically);
opening maps the graph's file and the mirror's on POSIX (read lazily: a search reads the vectors it
scores; a write copies the graph into memory, and the mirror's pages it changes; without a graph the
mirror is read whole, as every search scans it) and adds only what is missing. A file that cannot be read, or whose counts disagree
with its watermarks, or that does not match the rows (the store checks its anchor, the last row it
holds: ``SQLiteBase._file_matches``), is ignored and the index is rebuilt from the rows. Why usearch: docs/benchmarks-ann.md.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from memq.store.sqlite.arrays import anchor_of, grown, load_pack, save_pack, sidecar, write_atomically

log = logging.getLogger(__name__)

HNSW_FROM = 20_000
HNSW_CONNECTIVITY = 16
HNSW_EXPANSION_ADD = 64
HNSW_EXPANSION_SEARCH = 64
# threads a graph insert runs on (0: every core). A graph built on several threads differs from run to
# run (which node links to which depends on timing); on one it is the same every time (tests pin 1)
GRAPH_THREADS = 0
SCOPE_FIELDS = ("tenant", "user", "agent", "session")
# an exact scan reads the mirror up to the used rows rounded up to this many: BLAS's matrix-vector
# kernels sum a row in another order when it falls in a short tail block, so a scan length that moved
# with every add would change similarities in the last bit between two stores holding the same rows
# (the mirror's capacity is a whole number of blocks too)
SCAN_BLOCK = 1024


def _new_graph(dim: int) -> Any:
    """An empty usearch HNSW graph with memq's settings (int8, inner product)."""
    from usearch.index import Index

    return Index(
        ndim=dim,
        metric="ip",
        dtype="i8",
        connectivity=HNSW_CONNECTIVITY,
        expansion_add=HNSW_EXPANSION_ADD,
        expansion_search=HNSW_EXPANSION_SEARCH,
    )


def _whole_blocks(n: int) -> int:
    """``n`` rounded up to a whole number of ``SCAN_BLOCK``s."""
    return -(-n // SCAN_BLOCK) * SCAN_BLOCK


_workers: dict[str, tuple[int, ThreadPoolExecutor]] = {}  # name -> (pid, executor)
_workers_lock = threading.Lock()


def worker(name: str) -> ThreadPoolExecutor:
    """The process's one thread for ``name``'s work (``graph``: HNSW inserts; ``search``: a hybrid
    search's graph search, ``SQLiteCandidates._both_hits``), made on first use, once even when several
    stores ask at once; a forked child makes its own: the parent's thread does not exist there."""
    with _workers_lock:
        found = _workers.get(name)
        if found is None or found[0] != os.getpid():
            found = _workers[name] = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix=f"memq-{name}"))
        return found[1]


SCOPE_CACHE = 256  # at most this many scopes' slots kept between searches, and no more slots in all
# than the index holds rows (8 bytes a row at most, beside the mirror's 4 x dim)
SCOPE_UPDATE_MAX = 64  # an add or removal of at most this many rows updates the kept scopes' slots in
# place (an agent adds a record, then searches its user's records); a larger one forgets them
ANY = -2  # a scope's code for a field it leaves open (None), in ``_scope_codes``


@dataclass
class Watermark:
    rows: int = 0
    removed: int = 0
    space: str = ""  # model id + dim; a change (re-embed) forces a rebuild
    # a saved file's (rowid, record id) of its last row, checked against the rows on open (None: an
    # empty index, or a file an older memq saved)
    anchor: tuple[int, str] | None = None


class VectorIndex:
    def __init__(self, dim: int, hnsw_from: int = HNSW_FROM) -> None:
        self.dim = dim
        self.hnsw_from = hnsw_from
        self.mark = Watermark()
        self._graph = None  # usearch Index, once there are hnsw_from vectors
        self._graph_mapped = False  # a loaded graph is a read-only view of its file until a write
        self._pending: Future[Any] | None = None  # the graph insert running in the background (settle)
        self._mat = np.zeros((0, dim), dtype=np.float32)  # slot -> vector (zeros in free slots)
        self._key = np.zeros(0, dtype=np.int64)  # slot -> rowid (-1: free)
        self._codes = np.zeros((0, len(SCOPE_FIELDS)), dtype=np.int32)  # slot -> scope codes (-1: none)
        self._slot = np.full(0, -1, dtype=np.int64)  # rowid -> slot (-1: absent); rowids are dense
        self._free: list[int] = []  # free slots, taken from the end: a removed row's first, else the lowest
        self._top = 0  # every slot in use lies below it: scans stop there, not at the capacity
        self._size = 0  # slots in use
        self._vocab: list[dict[str, int]] = [{} for _ in SCOPE_FIELDS]
        self._count = [np.zeros(0, dtype=np.int64) for _ in SCOPE_FIELDS]  # per field: code -> rows
        # scope -> its slots, ascending, for the scopes searched lately (kept current by small adds and
        # removals, forgotten by larger ones); and the same scopes by their codes (ANY for None)
        self._scopes: OrderedDict[tuple[str | None, ...], np.ndarray] = OrderedDict()
        self._scope_codes: dict[tuple[int, ...], tuple[str | None, ...]] = {}

    def __len__(self) -> int:
        return self._size

    @property
    def has_graph(self) -> bool:
        return self._graph is not None

    # -- writes ----------------------------------------------------------------------------------
    def code(self, field: int, value: str | None) -> int:
        """The code of a scope value (-1 for None); new values get a new code."""
        if value is None:
            return -1
        vocab = self._vocab[field]
        found = vocab.get(value)
        if found is None:
            found = vocab[value] = len(vocab)
        return found

    def add(
        self, keys: np.ndarray, vectors: np.ndarray, scopes: list[tuple[str | None, ...]] | None = None
    ) -> None:
        """Add rows (rows already present are skipped). ``scopes``: each row's (tenant, user, agent,
        session)."""
        keys = np.asarray(keys, dtype=np.int64)
        if len(keys) == 0:
            return
        fresh = np.array([k >= len(self._slot) or self._slot[k] < 0 for k in keys], dtype=bool)
        if not fresh.any():
            return
        keys = keys[fresh]
        vectors = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32)[fresh])
        codes = np.full((len(keys), len(SCOPE_FIELDS)), -1, dtype=np.int32)
        if scopes is not None:
            rows = [s for s, f in zip(scopes, fresh, strict=True) if f]
            for i, scope in enumerate(rows):
                codes[i] = [self.code(j, v) for j, v in enumerate(scope)]
        self._mirror(keys, vectors, codes)
        if self._graph is not None:
            graph = self._writable_graph()
            self._pending = worker("graph").submit(
                graph.add, keys.astype(np.uint64), vectors, threads=GRAPH_THREADS
            )
        elif self._size >= self.hnsw_from:
            self._build_graph()

    def settle(self) -> None:
        """Wait for the graph insert running in the background. ``add`` puts rows in the mirror at
        once and hands their graph insert to a worker thread, so the caller's next work — the next
        batch's SQL, a lexical index update — runs beside it; every read or write of the graph
        settles first, so a search sees every row added before it. An insert that failed leaves the
        graph behind the mirror: it is rebuilt from the mirror.

        The overlap is partial: usearch (2.26) releases the GIL for an insert but takes it back
        after each row its first thread inserts (a signal check), and its threads split the rows
        evenly. While the caller runs Python code that row waits up to the interpreter's switch
        interval (5 ms), so the insert moves on mostly while the caller is in SQLite, numpy or a
        wait (docs/algorithms.md, "Index consistency")."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        try:
            pending.result()
        except Exception:  # the mirror holds every row: a graph that missed some is rebuilt from it
            log.warning("inserting into the HNSW graph failed; rebuilding it from the vectors", exc_info=True)
            self._build_graph()

    def _writable_graph(self) -> Any:
        """The graph (after any insert in flight), copied into memory first if it is still the view
        of its file that ``load`` maps: a process that only searches never reads the whole graph; the
        first write pays for the copy (and never reloads the file, which another process may have
        saved anew)."""
        self.settle()
        if self._graph_mapped:
            self._graph = self._graph.copy()  # type: ignore[union-attr]
            self._graph.expansion_add, self._graph.expansion_search = (
                HNSW_EXPANSION_ADD,
                HNSW_EXPANSION_SEARCH,
            )
            self._graph_mapped = False
        return self._graph

    def _build_graph(self) -> None:
        graph = _new_graph(self.dim)
        used = np.flatnonzero(self._key >= 0)
        if len(used):
            graph.add(self._key[used].astype(np.uint64), self._mat[used], threads=GRAPH_THREADS)
        self._graph, self._graph_mapped = graph, False

    def _mirror(self, keys: np.ndarray, vectors: np.ndarray, codes: np.ndarray) -> None:
        need = self._size + len(keys)
        if need > len(self._mat):
            cap = _whole_blocks(max(need, 2 * len(self._mat)))
            self._free[:0] = range(cap - 1, len(self._mat) - 1, -1)  # after the free slots below
            self._mat, self._key = grown(self._mat, cap), grown(self._key, cap, -1)
            self._codes = grown(self._codes, cap, -1)
        top = int(keys.max()) + 1
        if top > len(self._slot):
            self._slot = grown(self._slot, max(top, 2 * len(self._slot)), -1)
        slots = np.array([self._free.pop() for _ in range(len(keys))], dtype=np.int64)
        self._slot[keys] = slots
        self._top = max(self._top, int(slots.max()) + 1)
        self._mat[slots] = vectors
        self._key[slots] = keys
        self._codes[slots] = codes
        self._size += len(keys)
        self._tally(codes, 1)
        self._rescope(slots, codes, added=True)

    def _restore(self, keys: np.ndarray, vectors: np.ndarray, codes: np.ndarray) -> None:
        """Take saved slot arrays (``save``: whole blocks, free slots keyed -1) as the mirror, as they
        are: the slots are those of the index that saved them."""
        if len(keys) % SCAN_BLOCK or (len(keys) and keys.max() >= 2**40):  # 2**40: a corrupt key, not a rowid
            raise ValueError("saved slot arrays are not whole blocks")
        used = np.flatnonzero(keys >= 0)
        self._mat, self._key, self._codes = vectors, keys, codes
        self._slot = np.full(int(keys[used].max()) + 1 if len(used) else 0, -1, dtype=np.int64)
        self._slot[keys[used]] = used
        if (self._slot[keys[used]] != used).any():  # a rowid in two slots: the later one won
            raise ValueError("a rowid in two slots")
        self._size = len(used)
        self._top = int(used[-1]) + 1 if len(used) else 0
        # taken from the end: the holes below the top first (lowest first), then the tail, lowest first
        holes = np.flatnonzero(keys[: self._top] < 0)[::-1]
        self._free = [*range(len(keys) - 1, self._top - 1, -1), *holes.tolist()]
        self._tally(codes[used], 1)
        self._forget_scopes()

    def _tally(self, codes: np.ndarray, sign: int) -> None:
        """Add (``sign`` 1) or take away (-1) rows with ``codes`` from the per-field code counts."""
        for j in range(len(SCOPE_FIELDS)):
            col = codes[:, j]
            col = col[col >= 0]
            if len(col) == 0:
                continue
            need = int(col.max()) + 1
            if need > len(self._count[j]):
                self._count[j] = grown(self._count[j], max(need, 2 * len(self._count[j])))
            np.add.at(self._count[j], col, sign)

    def remove(self, keys: np.ndarray) -> None:
        keys = np.asarray(keys, dtype=np.int64)
        keys = keys[(keys >= 0) & (keys < len(self._slot))]
        keys = keys[self._slot[keys] >= 0]
        if len(keys) == 0:
            return
        if self._graph is not None:
            self._writable_graph().remove(keys.astype(np.uint64))
        slots = self._slot[keys]
        codes = self._codes[slots]
        self._tally(codes, -1)
        self._rescope(slots, codes, added=False)
        self._mat[slots] = 0.0
        self._key[slots] = -1
        self._codes[slots] = -1
        self._slot[keys] = -1
        self._free.extend(int(x) for x in slots)
        self._size -= len(keys)

    # -- reads -----------------------------------------------------------------------------------
    def _scope_fields(self, scope: tuple[str | None, ...]) -> list[tuple[int, int]] | None:
        """(field, code) of each field ``scope`` sets; None if a value is unknown (no row has it)."""
        out = []
        for j, value in enumerate(scope):
            if value is None:
                continue
            code = self._vocab[j].get(value)
            if code is None:
                return None
            out.append((j, code))
        return out

    def scope_mask(self, scope: tuple[str | None, ...]) -> np.ndarray | None:
        """Slots whose row belongs to ``scope`` (None fields match anything); None if a value is
        unknown (no row has it)."""
        fields = self._scope_fields(scope)
        if fields is None:
            return None
        used = self._top
        mask = self._key[:used] >= 0
        for j, code in fields:
            mask &= self._codes[:used, j] == code
        return mask

    def scope_slots(self, scope: tuple[str | None, ...]) -> np.ndarray | None:
        """The slots of ``scope``'s rows, ascending (None if a value is unknown), kept for the scopes
        searched last (``SCOPE_CACHE``): a search within one user's records then skips the pass over
        every slot (120-170 µs at 100,000). Adds and removals of up to ``SCOPE_UPDATE_MAX`` rows keep
        the kept lists current (``_rescope``); larger ones forget them."""
        slots = self._scopes.get(scope)
        if slots is not None:
            self._scopes.move_to_end(scope)
            return slots
        found = self._find_slots(scope)
        if found is None:
            return None
        slots = self._scopes[scope] = found
        self._scope_codes[self._codes_of(scope)] = scope
        kept = sum(len(s) for s in self._scopes.values())
        while len(self._scopes) > 1 and (len(self._scopes) > SCOPE_CACHE or kept > self._size):
            old, dropped = self._scopes.popitem(last=False)
            del self._scope_codes[self._codes_of(old)]
            kept -= len(dropped)
        return slots

    def _find_slots(self, scope: tuple[str | None, ...]) -> np.ndarray | None:
        """``scope_mask``'s slots, ascending, by one pass over the code column of the scope's most
        selective field (the fewest rows, from the per-field counts) and a check of the other fields
        on the slots it finds, where the mask reads every row's key and its codes; a free slot's codes
        are -1, so it matches no value (its key is checked too)."""
        fields = self._scope_fields(scope)
        if fields is None:
            return None
        fields.sort(key=lambda f: self._rows_with(*f))
        if not fields:
            return np.flatnonzero(self._key[: self._top] >= 0)
        j, code = fields[0]
        slots = np.flatnonzero(self._codes[: self._top, j] == code)
        for j, code in fields[1:]:
            slots = slots[self._codes[slots, j] == code]
        return slots[self._key[slots] >= 0]

    def _codes_of(self, scope: tuple[str | None, ...]) -> tuple[int, ...]:
        """A kept scope's codes (every value of a kept scope has one), ``ANY`` for a field left open."""
        return tuple(ANY if v is None else self._vocab[j][v] for j, v in enumerate(scope))

    def _forget_scopes(self) -> None:
        self._scopes.clear()
        self._scope_codes.clear()

    def _rescope(self, slots: np.ndarray, codes: np.ndarray, *, added: bool) -> None:
        """Keep the kept scopes' slots current after ``slots`` (rows with ``codes``) were filled
        (``added``) or freed. A row belongs to the scopes whose every field is open or its value: at
        most 2^4 code patterns a row, each looked up among the kept scopes."""
        if not self._scopes:
            return
        if len(slots) > SCOPE_UPDATE_MAX:
            self._forget_scopes()
            return
        touched: dict[tuple[str | None, ...], list[int]] = {}
        kept = self._scope_codes
        for slot, row in zip(slots.tolist(), codes.tolist(), strict=True):
            patterns: list[tuple[int, ...]] = [()]
            for c in row:
                patterns = [(*p, ANY) for p in patterns] + ([(*p, c) for p in patterns] if c >= 0 else [])
            for pattern in patterns:
                scope = kept.get(pattern)
                if scope is not None:
                    touched.setdefault(scope, []).append(slot)
        for scope, changed in touched.items():
            have = self._scopes[scope]
            changed.sort()
            if added and (not len(have) or changed[0] > have[-1]):  # the usual case: slots past the last
                self._scopes[scope] = np.concatenate((have, np.array(changed, dtype=have.dtype)))
                continue
            moved = np.array(changed, dtype=have.dtype)
            at = np.searchsorted(have, moved)
            if added:
                self._scopes[scope] = np.insert(have, at, moved)
            elif (at < len(have)).all() and (have[np.minimum(at, len(have) - 1)] == moved).all():
                self._scopes[scope] = np.delete(have, at)
            else:  # not where it should be: never expected, but a wrong list would hide rows
                self._forget_scopes()
                return

    def scope_bound(self, scope: tuple[str | None, ...]) -> int:
        """At least as many rows as ``scope`` holds (the fewest rows of any one of its fields' values),
        without a pass over the rows: 0 when a value is unknown, exact for a scope of one field."""
        fields = self._scope_fields(scope)
        if fields is None:
            return 0
        return min([self._size, *(self._rows_with(j, code) for j, code in fields)])

    def _rows_with(self, field: int, code: int) -> int:
        """How many rows hold ``code`` in ``field`` (the per-field counts)."""
        counts = self._count[field]
        return int(counts[code]) if code < len(counts) else 0

    def exact(
        self, vector: np.ndarray, n: int, slots: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top ``n`` (keys, cosine similarities) over ``slots`` (ascending; every used slot
        when None), e.g. a scope's (:meth:`scope_slots`).

        A scope that holds a large share of the slots is scored with one matrix-vector product over
        the mirror's used part (contiguous, BLAS; the scan is memory-bound, so the spare capacity
        past ``_top`` is left out, in whole ``SCAN_BLOCK``s); a small one by gathering its rows first."""
        used = _whole_blocks(self._top)  # within the capacity, itself whole blocks
        if slots is None:
            slots = np.flatnonzero(self._key[: self._top] >= 0)
        if len(slots) == 0 or n <= 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        v = np.asarray(vector, dtype=np.float32)
        # np.take gathers a small scope's rows faster than fancy indexing (60 vs 85 µs for 1,000 rows)
        sims = (
            (self._mat[:used] @ v)[slots] if len(slots) * 4 >= used else np.take(self._mat, slots, axis=0) @ v
        )
        top = top_k_desc(sims, n)
        return self._key[slots[top]], sims[top]

    def search(self, vector: np.ndarray, n: int, rescore: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``n`` (keys, cosine similarities), best first: the graph's candidates rescored
        exactly, or exact search while there is no graph. With ``rescore``, the graph still searches
        for ``n`` but only its first ``rescore`` (in its own int8 order) are rescored and returned."""
        n = min(n, self._size)
        if n <= 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        if self._graph is None:
            return self.exact(vector, n if rescore is None else min(n, rescore))
        self.settle()
        matches = self._graph.search(np.asarray(vector, dtype=np.float32), n, threads=1)
        keys = np.asarray(matches.keys, dtype=np.int64)
        if rescore is not None:
            keys = keys[:rescore]
        keys = keys[(keys >= 0) & (keys < len(self._slot))]
        keys = keys[self._slot[keys] >= 0]
        sims = self._mat[self._slot[keys]] @ np.asarray(vector, dtype=np.float32)
        order = np.argsort(-sims, kind="stable")
        return keys[order], sims[order]

    def vectors(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The stored vectors of ``keys`` that are present, as (present keys, matrix)."""
        keys = np.asarray(keys, dtype=np.int64)
        keys = keys[(keys >= 0) & (keys < len(self._slot))]
        slots = self._slot[keys]
        have = slots >= 0
        return keys[have], self._mat[slots[have]]

    def all_keys(self) -> np.ndarray:
        return np.sort(self._key[self._key >= 0])

    # -- persistence ---------------------------------------------------------------------------
    def last_row(self) -> int | None:
        """The highest rowid in the index (None when empty)."""
        keys = self._key[: self._top]
        return int(keys.max()) if self._size else None

    def save(self, path: Path, anchor: tuple[int, str] | None = None) -> None:
        """Write the graph (if any), the mirror and the codes, then the sidecar; each atomically.
        The mirror is saved slot by slot up to the used rows in whole blocks (free slots keyed -1),
        its vectors, keys and codes in one array pack (:func:`memq.store.sqlite.arrays.save_pack`):
        ``load`` maps it as it is. ``anchor``: the (rowid, record id) of :meth:`last_row`, which the
        store checks against its rows when it loads the file."""
        self.settle()
        top = _whole_blocks(self._top)
        files = {
            "graph": self._graph is not None,
            "count": self._size,
            "rows": self.mark.rows,
            "removed": self.mark.removed,
            "anchor": None if anchor is None else list(anchor),
            "space": self.mark.space,
            "vocab": [list(v) for v in self._vocab],
            "layout": "pack",
        }
        if self._graph is not None:
            write_atomically(path, lambda tmp: self._graph.save(str(tmp)))  # type: ignore[union-attr]

        def mirror(tmp: Path) -> None:
            with open(tmp, "wb") as out:  # plain writes: no mapping whose pages would count as resident
                save_pack(
                    out, {"vectors": self._mat[:top], "keys": self._key[:top], "codes": self._codes[:top]}
                )

        write_atomically(_pack_file(path), mirror)
        write_atomically(sidecar(path), lambda tmp: tmp.write_text(json.dumps(files)))
        _mirror_file(path).unlink(missing_ok=True)  # an older memq's mirror, replaced by the pack

    @classmethod
    def load(cls, path: Path, dim: int, space: str, hnsw_from: int = HNSW_FROM) -> VectorIndex | None:
        """The saved index, or None when it is missing, unreadable or inconsistent."""
        try:
            meta = json.loads(sidecar(path).read_text())
            if meta.get("space") != space:
                return None
            index = cls(dim, hnsw_from)
            layout = meta.get("layout")
            if layout == "pack":
                # with a graph, mapped copy-on-write and read lazily: a search reads the rows it
                # rescores, a write changes this process's pages only. Without one every search scans
                # the whole mirror, so it is read whole now. Not on Windows: see the graph below
                lazy = os.name == "posix" and int(meta["count"]) > 0 and bool(meta.get("graph"))
                saved = load_pack(_pack_file(path), mapped=lazy, scattered=True)
                vectors = saved["vectors"]
                if vectors.dtype != np.float32:
                    return None
                keys, codes = saved["keys"].astype(np.int64), saved["codes"].astype(np.int32)  # copies
            else:  # an older memq's npz: slot by slot ("slots"), or before that the rows packed
                with np.load(_mirror_file(path)) as saved:
                    keys = saved["keys"].astype(np.int64, copy=False)
                    vectors = saved["vectors"].astype(np.float32, copy=False)
                    codes = saved["codes"].astype(np.int32, copy=False)
            slots = layout in ("pack", "slots")
            if int((keys >= 0).sum() if slots else len(keys)) != int(meta["count"]):
                return None
            if len(keys) and (
                vectors.shape != (len(keys), dim) or codes.shape != (len(keys), len(SCOPE_FIELDS))
            ):
                return None
            index._vocab = [{v: i for i, v in enumerate(values)} for values in meta["vocab"]]
            if slots:
                index._restore(keys, vectors, codes)
            elif len(keys):
                index._mirror(keys, vectors, codes)
            if meta.get("graph"):
                graph = _new_graph(dim)
                # mapped, read lazily: a search touches a small part of it. Not on Windows, where a
                # mapped file cannot be replaced, and another process's save replaces it
                mapped = os.name == "posix"
                if mapped:
                    graph.view(str(path))
                else:
                    graph.load(str(path))
                if len(graph) != index._size or graph.ndim != dim:
                    return None
                graph.expansion_search = HNSW_EXPANSION_SEARCH  # not kept in the file
                index._graph, index._graph_mapped = graph, mapped
            elif index._size >= hnsw_from:
                index._build_graph()
            index.mark = Watermark(
                rows=int(meta["rows"]),
                removed=int(meta["removed"]),
                space=space,
                anchor=anchor_of(meta.get("anchor")),
            )
            return index
        except (OSError, ValueError, KeyError, RuntimeError, TypeError):
            return None


def top_k_desc(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores, best first (stable among ties)."""
    if k >= len(scores):
        return np.argsort(-scores, kind="stable")
    part = np.argpartition(-scores, k - 1)[:k]
    part.sort()
    return part[np.argsort(-scores[part], kind="stable")]


def _mirror_file(path: Path) -> Path:
    """The mirror as memq saved it before the pack (an npz of keys, vectors and codes)."""
    return path.with_name(path.name + ".mirror.npz")


def _pack_file(path: Path) -> Path:
    return path.with_name(path.name + ".mirror.pack")
