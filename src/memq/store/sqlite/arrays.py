"""Small helpers the in-memory indexes beside the SQLite file share: arrays that grow, saved arrays
mapped for random access, and files written atomically (a temp file in the same folder, then a
rename: a reader sees the old file or the new one, never half of one)."""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable
from pathlib import Path

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


def mapped_npy(path: Path) -> np.ndarray:
    """The array a ``.npy`` file holds, mapped copy-on-write: pages are read when first touched,
    writes change this process's copy only (never the file, which another process may map), and
    the kernel reads no pages around the one touched (``MADV_RANDOM``): an index reads scattered
    rows, so read-around would read tens of rows for each one wanted. ``ValueError`` or
    ``TypeError`` if the file is not a whole ``.npy``."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        offset = f.tell()
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    if hasattr(mmap, "MADV_RANDOM"):
        data.madvise(mmap.MADV_RANDOM)
    return np.ndarray(shape, dtype=dtype, buffer=data, offset=offset, order="F" if fortran else "C")
