"""Moving memory in and out: JSONL export / import, and re-embedding every version with a new embedder."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
from pydantic import ValidationError

from memq.embed.base import Embedder
from memq.errors import InvalidInputError
from memq.ops.core import Core
from memq.ops.runner import Op, db, work
from memq.store.contract import EXPORT_EVENTS_PAGE, EXPORT_RECORDS_PAGE
from memq.types import HistoryEvent, HistoryOp, MemoryRecord
from memq.validate import ScopeLike

EXPORT_FORMAT = "memq-export"
EXPORT_VERSION = 1


def export(
    core: Core, dest: str | Path | IO[str], *, scope: ScopeLike | None = None, all_tenants: bool = False
) -> Op[int]:
    """Write every version and history event as JSONL (with vectors). Returns lines written.

    The store is read a page at a time (versions, then events), so memory stays bounded by a page
    whatever the store's size. Each page is its own read: export a store that is not being written
    for an exact copy. A file path is written beside the target and renamed into place at the end,
    so a failed export leaves no partial file.
    """
    tenant = None if all_tenants else core.scope(scope).tenant
    space = yield db.embedding_space()
    out = yield work(_ExportFile, dest, space)
    try:
        for page_of, size in (
            (db.export_records, EXPORT_RECORDS_PAGE),
            (db.export_events, EXPORT_EVENTS_PAGE),
        ):
            after = 0
            while page := (yield page_of(tenant, after, size)):
                after = page[-1][0]
                yield work(out.write, [row for _, row in page])
    except BaseException:
        out.discard()  # no yield here: a closed generator may not yield; removing a file is quick
        raise
    return (yield work(out.finish))


def import_(core: Core, src: str | Path | IO[str]) -> Op[int]:
    """Load a JSONL export as it is (ids, versions, times kept), in one transaction.

    Returns the number of record versions imported. Fails whole on a bad line or an id clash.
    """
    rows = yield work(_read_export, src)
    return (yield db.import_rows(rows))


def reembed(
    core: Core, embedder: Embedder, *, batch: int = 256, progress: Callable[[int], Any] | None = None
) -> Op[int]:
    """Re-embed every stored version with ``embedder`` and switch the store to its space."""
    count = 0
    rows = yield db.embeddable(0, batch)
    first = True
    if not rows:
        yield db.replace_embeddings(embedder.model_id, embedder.dim, [], first=True, last=True)
    while rows:
        vectors = yield work(
            lambda r=rows: np.asarray(embedder.embed_documents([t for _, t in r]), np.float32)
        )
        following = yield db.embeddable(rows[-1][0], batch)
        yield db.replace_embeddings(
            embedder.model_id,
            embedder.dim,
            list(zip([key for key, _ in rows], vectors, strict=True)),
            first=first,
            last=not following,
        )
        first = False
        count += len(rows)
        if progress is not None:
            progress(len(rows))
        rows = following
    core.embedder = embedder
    return count


# -- the JSONL format ---------------------------------------------------------------------------------


def export_header(space: tuple[str, int] | None) -> str:
    return json.dumps(
        {
            "type": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "embedding_model": space[0] if space else None,
            "embedding_dim": space[1] if space else None,
        }
    )


def export_line(row: MemoryRecord | HistoryEvent) -> str:
    if isinstance(row, MemoryRecord):
        return json.dumps({"type": "record", "record": row.model_dump(mode="json")}, ensure_ascii=False)
    return json.dumps(
        {"type": "event", "event": row.model_dump(mode="json", exclude={"record"})}, ensure_ascii=False
    )


class _ExportFile:
    """The export being written: the header on opening, then a page of lines at a time.

    A path that is a regular file (or none yet) is written to a temporary file beside it, renamed
    over it by :meth:`finish` and removed by :meth:`discard`; a stream, or a path such as
    /dev/stdout, is written in place (and left open: the caller owns a stream)."""

    def __init__(self, dest: str | Path | IO[str], space: tuple[str, int] | None) -> None:
        self.lines = 0
        self._own = isinstance(dest, str | Path)  # a path: opened (and closed) here
        self._target: Path | None = None  # the file a finished export is renamed to
        if isinstance(dest, str | Path):
            path = Path(dest)
            if path.is_file() or not path.exists():
                self._target, path = path, path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
            self._fh: IO[str] = open(path, "w", encoding="utf-8")  # noqa: SIM115 (finish/discard close it)
            self._path = path
        else:
            self._fh = dest
        try:
            self._fh.write(export_header(space) + "\n")
        except BaseException:
            self.discard()
            raise

    def write(self, rows: Sequence[MemoryRecord | HistoryEvent]) -> None:
        self._fh.write("".join(export_line(row) + "\n" for row in rows))
        self.lines += len(rows)

    def finish(self) -> int:
        if self._own:
            self._fh.close()
        if self._target is not None:
            try:
                os.replace(self._path, self._target)
            except OSError:
                self._path.unlink(missing_ok=True)
                raise
        return self.lines

    def discard(self) -> None:
        if self._own:
            self._fh.close()
        if self._target is not None:
            self._path.unlink(missing_ok=True)


def _read_export(src: str | Path | IO[str]) -> list[MemoryRecord | HistoryEvent]:
    with _open_text(src, "r") as handle:
        return parse_export(iter(handle))


def parse_export(lines: Iterator[str]) -> list[MemoryRecord | HistoryEvent]:
    """The rows of a JSONL export; a record version with no event of its own gets an IMPORT event."""
    rows: list[MemoryRecord | HistoryEvent] = []
    header_seen = False
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not header_seen:
                if obj.get("type") != EXPORT_FORMAT:
                    raise InvalidInputError("not a memq export: the first line must be its header")
                if obj.get("version") != EXPORT_VERSION:
                    raise InvalidInputError(f"unsupported export version {obj.get('version')}")
                header_seen = True
            elif obj.get("type") == "record":
                rows.append(MemoryRecord.model_validate(obj["record"]))
            elif obj.get("type") == "event":
                rows.append(HistoryEvent.model_validate(obj["event"]))
            else:
                raise InvalidInputError(f"unknown line type {obj.get('type')!r}")
        except (json.JSONDecodeError, ValidationError, KeyError, AttributeError) as exc:
            raise InvalidInputError(f"line {number} of the import is not valid: {exc}") from exc
        except InvalidInputError as exc:
            raise InvalidInputError(f"line {number}: {exc}") from exc
    if not header_seen:
        raise InvalidInputError("the import is empty: no memq export header")
    have = {(r.record_id, r.version) for r in rows if isinstance(r, HistoryEvent)}
    extra = [
        HistoryEvent(record_id=r.id, op=HistoryOp.IMPORT, version=r.version, at=r.recorded_at)
        for r in rows
        if isinstance(r, MemoryRecord) and (r.id, r.version) not in have
    ]
    return rows + extra


class _TextHandle:
    def __init__(self, target: str | Path | IO[str], mode: str) -> None:
        self.target, self.mode, self._own = target, mode, False

    def __enter__(self) -> IO[str]:
        if isinstance(self.target, str | Path):
            self._own = True
            self._fh = open(self.target, self.mode, encoding="utf-8")
            return self._fh
        return self.target

    def __exit__(self, *exc: object) -> None:
        if self._own:
            self._fh.close()


def _open_text(target: str | Path | IO[str], mode: str) -> _TextHandle:
    return _TextHandle(target, mode)
