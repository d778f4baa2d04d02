"""The light rows search ranks, kept in memory beside the SQLite file (as the vector and lexical
indexes are), so a search reads no row from SQLite for the candidates it has seen before.

A search checks about a hundred candidates; read by rowid from the file they cost about 5 µs each
(the B-tree seek, the utility join, the links, decoding), the largest part of a search at 100k
records. The mirror keeps, per rowid, what ranking needs (:class:`memq.store.base.CandidateRow`)
and what the visibility clause reads (scope, system and world time), and answers a query without a
metadata filter by itself (:func:`sees`, the same conditions as :func:`memq.store.sqlcommon.visibility`).

It is filled with the rows this process adds and the rows searches read (a miss is read from SQLite,
then kept), and kept current from the ``row_changes`` log: triggers on ``records``, ``utility`` and ``links`` write the id of every record
a write touches, so no writer — another process, an older memq, a plain SQL session — can forget to
say so. Before each use the store reads the entries logged since the mirror's watermark and drops
those ids (:meth:`RowMirror.apply`); entries pruned from the log before a mirror read them clear
the mirror. A row read from SQLite while a change was applied is not kept (``epoch``): it may be
older than the change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from types import MappingProxyType
from typing import Any

from memq.store.base import CandidateQuery, CandidateRow
from memq.store.sqlcommon import candidate_row_of
from memq.store.sqlite.base import DECODE, RECORDS_BY_ROWID, to_us
from memq.types import utcnow

SEP = "\x1f"  # separates link targets in one column
# a candidate's light row (sqlcommon.candidate_row_of), its link targets joined by SEP in the 11th column;
# what search reads of a candidate by rowid (FROM), under its visibility clause when it cannot use
# the mirror
LIGHT_COLUMNS = (
    "r.id, r.kind, r.text, r.valid_from, r.recorded_at, u.q, u.n_shown, u.n_used, u.reward_sum, u.stats, "
    "(SELECT group_concat(l.dst, char(31)) FROM links l WHERE l.src = r.id), r.metadata"
)
FROM = f"FROM {RECORDS_BY_ROWID}"
# what the mirror reads of a row: its rowid, its light row, then the columns visibility reads (the mirror
# applies the clause itself)
COLUMNS = f"r.rowid, {LIGHT_COLUMNS}, r.tenant, r.user_id, r.agent_id, r.session_id, r.expired_at, r.valid_to"
# the stats of every row that has none: one shared, read-only mapping rather than a dict a row (each
# container in the mirror is one more object for every full garbage collection to walk)
_NO_STATS: Mapping[str, float] = MappingProxyType({})


def light_row(r: Sequence[Any]) -> CandidateRow:
    """A CandidateRow from a row of :data:`LIGHT_COLUMNS`."""
    return candidate_row_of(r, DECODE, r[10].split(SEP) if r[10] else ())


@dataclass(slots=True)
class Entry:
    """One row as the mirror keeps it: its light row and the columns visibility reads (times in µs)."""

    row: CandidateRow  # shared by every search that reads it: read-only, as CandidateRow says
    tenant: str
    user: str | None
    agent: str | None
    session: str | None
    valid_from: int | None
    recorded_at: int
    expired_at: int | None
    valid_to: int | None


def entry_of(r: Sequence[Any]) -> tuple[int, Entry]:
    """(rowid, entry) from a row of :data:`COLUMNS`."""
    row = light_row(r[1:13])
    if not row.stats:
        row.stats = _NO_STATS
    valid_from, recorded_at = r[4], r[5]
    return r[0], Entry(row, r[13], r[14], r[15], r[16], valid_from, recorded_at, r[17], r[18])


def seer(query: CandidateQuery, now: int) -> Callable[[Entry], bool]:
    """Whether ``query`` sees a row, as a predicate on entries: :func:`memq.store.sqlcommon.visibility`
    without a filter, on the same integer columns (``now``: the current time in µs, as that clause
    binds it). Built once per search: the common query (no scope but the tenant, or one user; the
    present) is one expression, the rest is checked field by field."""
    sc = query.scope
    tenant, user, agent, session = sc.tenant, sc.user, sc.agent, sc.session
    present = query.as_of is None and not query.include_invalidated and query.valid_at is None
    if present and agent is None and session is None:
        return lambda e: (
            e.tenant == tenant
            and (user is None or e.user == user)
            and e.expired_at is None
            and (e.valid_to is None or e.valid_to > now)
        )
    as_of = None if query.as_of is None else to_us(query.as_of)
    valid_at = None if query.valid_at is None else to_us(query.valid_at)
    include_invalidated = query.include_invalidated

    def sees(e: Entry) -> bool:
        if e.tenant != tenant:
            return False
        if (
            (user is not None and e.user != user)
            or (agent is not None and e.agent != agent)
            or (session is not None and e.session != session)
        ):
            return False
        if as_of is None:
            if e.expired_at is not None:
                return False
        elif not (e.recorded_at <= as_of and (e.expired_at is None or e.expired_at > as_of)):
            return False
        if include_invalidated:
            return True
        if valid_at is None:
            return e.valid_to is None or e.valid_to > now
        return (e.valid_from is None or e.valid_from <= valid_at) and (
            e.valid_to is None or e.valid_to > valid_at
        )

    return sees


def now_us() -> int:
    return to_us(utcnow())  # type: ignore[return-value]


class RowMirror:
    """Entries by rowid, the rowids of each record id, and the log watermark they are current to."""

    def __init__(self, mark: int) -> None:
        self.mark = mark  # every row_changes entry with seq <= mark is applied
        self.epoch = 0  # counts the applied changes: a row read before one is not kept
        self._entries: dict[int, Entry] = {}
        self._rowids: dict[str, list[int]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, keys: Iterable[int]) -> tuple[dict[int, Entry], list[int]]:
        """The entries held for ``keys`` and the keys missing."""
        found: dict[int, Entry] = {}
        missing: list[int] = []
        entries = self._entries
        for k in keys:
            e = entries.get(k)
            if e is None:
                missing.append(k)
            else:
                found[k] = e
        return found, missing

    def put(self, rows: Iterable[tuple[int, Entry]], epoch: int, limit: int) -> None:
        """Keep rows read from SQLite at ``epoch``; dropped when a change was applied since. At
        ``limit`` rows the half taken in first is dropped: a store larger than the bound keeps the
        rows read or added most recently, rather than starting again empty."""
        if epoch != self.epoch:
            return
        for key, e in rows:
            if key not in self._entries:
                if len(self._entries) >= limit:
                    self._drop_oldest(max(len(self._entries) - limit // 2, 1))
                self._rowids.setdefault(e.row.id, []).append(key)
            self._entries[key] = e

    def _drop_oldest(self, n: int) -> None:
        """Drop the ``n`` entries kept longest (a dict keeps insertion order)."""
        for key in list(islice(self._entries, n)):
            rid = self._entries.pop(key).row.id
            keys = self._rowids[rid]
            keys.remove(key)
            if not keys:
                del self._rowids[rid]

    def apply(self, changes: Sequence[tuple[int, str]]) -> None:
        """Drop the records named by the log entries ``(seq, id)`` past the watermark, in order. A
        first entry that does not follow the watermark means the log was pruned past it: everything
        goes."""
        if not changes:
            return
        if changes[0][0] != self.mark + 1:
            self._entries.clear()
            self._rowids.clear()
        else:
            for _, rid in changes:
                for key in self._rowids.pop(rid, ()):
                    self._entries.pop(key, None)
        self.mark = changes[-1][0]
        self.epoch += 1
