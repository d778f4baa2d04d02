"""Where benchmark data lives: ``$MEMQ_DATA``, else ``shared/data`` next to or above the working directory."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from memq.errors import InvalidInputError


def data_root() -> Path | None:
    env = os.environ.get("MEMQ_DATA")
    if env:
        return Path(env)
    here = Path.cwd().resolve()
    for base in (here, *here.parents):
        for candidate in (base / "shared" / "data", base.parent / "shared" / "data"):
            if candidate.is_dir():
                return candidate
    return None


def dataset_file(relative: str, override: str | Path | None = None) -> Path:
    """The path of a dataset file, or a clear error saying where memq looked."""
    if override is not None:
        path = Path(override)
        if not path.exists():
            raise InvalidInputError(f"data file {path} does not exist")
        return path
    root = data_root()
    if root is None or not (root / relative).exists():
        raise InvalidInputError(
            f"cannot find {relative}: set MEMQ_DATA to the folder holding the datasets "
            "(the project expects ../shared/data) or pass --data PATH"
        )
    return root / relative


def read_json_list(path: str | Path, items: str) -> list[Any]:
    """A dataset file holding a JSON list (of ``items``, named in the error), or a typed error."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"cannot read {path}: {exc}") from exc
    if not isinstance(raw, list):
        raise InvalidInputError(f"{path}: expected a JSON list of {items}")
    return raw
