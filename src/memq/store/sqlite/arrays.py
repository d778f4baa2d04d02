"""Small helpers the in-memory indexes beside the SQLite file share: arrays that grow, array packs
(several arrays in one file that a reader maps), files written atomically (a temp file in the
same folder, then a rename: a reader sees the old file or the new one, never half of one), and the
anchor a saved index keeps of its last row (``SQLiteBase._file_matches`` checks it on open)."""

from __future__ import annotations

import json
import math
import mmap
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np


def grown(a: np.ndarray, size: int, fill: float = 0, axis: int = 0) -> np.ndarray:
    """A copy of ``a`` whose ``axis`` is ``size`` long (``size`` ≥ that axis of ``a``): ``a``'s
    values first, ``fill`` after them. The caller picks ``size`` (doubling, so n adds copy O(n)).
    A zero fill is left to the allocator (``np.zeros``: pages the kernel zeroes when first touched),
    so doubling a large matrix writes only the copied half, not the spare one too."""
    shape = list(a.shape)
    shape[axis] = size
    out = np.zeros(shape, dtype=a.dtype) if fill == 0 else np.full(shape, fill, dtype=a.dtype)
    out[tuple(slice(0, n) for n in a.shape)] = a
    return out


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` to a temp file beside ``path``, then rename it to ``path``."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def sidecar(path: Path) -> Path:
    """The JSON file beside a saved index that holds its watermarks (written last, read first)."""
    return path.with_name(path.name + ".json")


def anchor_of(value: Any) -> tuple[int, str] | None:
    """A saved index's anchor ([rowid, record id]), or None when it has none; anything else is a corrupt
    sidecar (``ValueError``: the file is not used)."""
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not isinstance(value[0], int)
        or isinstance(value[0], bool)
        or not isinstance(value[1], str)
    ):
        raise ValueError(f"bad anchor {value!r}")
    return value[0], value[1]


PACK_MAGIC = b"MEMQPACK1"
PACK_ALIGN = 64  # each array of a pack starts at a multiple of this many bytes


def _aligned(n: int) -> int:
    return -(-n // PACK_ALIGN) * PACK_ALIGN


def save_pack(out: BinaryIO, arrays: Mapping[str, np.ndarray]) -> None:
    """Arrays in one file that a reader can map (:func:`load_pack`): a magic, the length of a JSON
    table (name -> dtype, shape, offset), the table, then each array's bytes at an aligned offset."""
    parts = {name: np.ascontiguousarray(a) for name, a in arrays.items()}
    table, offset = {}, 0
    for name, a in parts.items():
        if a.dtype.hasobject:
            raise ValueError(f"array {name!r} holds Python objects")
        table[name] = [a.dtype.str, list(a.shape), offset]
        offset += _aligned(a.nbytes)
    head = json.dumps(table).encode()
    start = _aligned(len(PACK_MAGIC) + 8 + len(head))
    out.write(PACK_MAGIC + len(head).to_bytes(8, "little") + head)
    out.write(bytes(start - len(PACK_MAGIC) - 8 - len(head)))
    for a in parts.values():
        a.tofile(out)
        out.write(bytes(_aligned(a.nbytes) - a.nbytes))


def load_pack(path: Path, mapped: bool, scattered: bool = False) -> dict[str, np.ndarray]:
    """The arrays :func:`save_pack` wrote. ``mapped``: views of the file mapped copy-on-write (read
    when touched; writes change this process's copy only, never the file, which another process may
    map); else read whole. ``scattered``: the reader touches scattered rows, so the kernel is asked to
    read no pages around the one touched (``MADV_RANDOM``), which would read tens of rows for each
    one wanted. ``ValueError`` if the file is not a whole pack."""
    with open(path, "rb") as f:
        if f.read(len(PACK_MAGIC)) != PACK_MAGIC:
            raise ValueError(f"{path} is not a memq array pack")
        table = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        if not isinstance(table, dict):
            raise ValueError(f"{path}: no table of arrays")
        start = _aligned(f.tell())
        size = os.fstat(f.fileno()).st_size
        if mapped and size > 0:
            data: mmap.mmap | bytearray = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
            if scattered and hasattr(mmap, "MADV_RANDOM"):
                data.madvise(mmap.MADV_RANDOM)
        else:
            f.seek(0)
            data = bytearray(f.read())
    out = {}
    for name, (dtype, shape, offset) in table.items():
        dt = np.dtype(dtype)
        if dt.hasobject or start + offset + math.prod(shape) * dt.itemsize > size:
            raise ValueError(f"{path}: array {name!r} is cut short or not plain data")
        out[name] = np.ndarray(tuple(shape), dtype=dt, buffer=data, offset=start + offset)
    return out
