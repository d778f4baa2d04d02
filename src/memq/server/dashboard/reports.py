"""Benchmark reports (``memq bench`` HTML reports and results JSON) in one configured directory.

Only regular files directly inside the directory, with a safe name and a known suffix, are listed
or served: a name is never joined into a path before it has been found in the listing.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from memq.errors import NotFoundError

DEFAULT_DIR = "benchmarks/results"
ENV_VAR = "MEMQ_SERVER_REPORTS_DIR"
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".json": "application/json", ".md": "text/markdown"}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


class Report(BaseModel):
    name: str
    kind: str  # html | json | md
    bytes: int
    modified: datetime


def reports_dir(settings: object) -> Path:
    """``settings.reports_dir`` if the server has that setting, else ``$MEMQ_SERVER_REPORTS_DIR``,
    else ./benchmarks/results."""
    configured = getattr(settings, "reports_dir", None) or os.environ.get(ENV_VAR) or DEFAULT_DIR
    return Path(configured)


def list_reports(directory: Path) -> list[Report]:
    """The reports in ``directory``, newest first; an absent directory has none."""
    if not directory.is_dir():
        return []
    found = []
    for entry in directory.iterdir():
        suffix = entry.suffix.lower()
        if suffix not in MEDIA_TYPES or not _SAFE_NAME.match(entry.name) or entry.is_symlink():
            continue
        if not entry.is_file():
            continue
        st = entry.stat()
        found.append(
            Report(
                name=entry.name,
                kind=suffix.lstrip("."),
                bytes=st.st_size,
                modified=datetime.fromtimestamp(st.st_mtime, tz=UTC),
            )
        )
    found.sort(key=lambda r: (r.modified, r.name), reverse=True)
    return found


def report_path(directory: Path, name: str) -> tuple[Path, str]:
    """The file of the listed report ``name`` and its media type, or NotFoundError."""
    for report in list_reports(directory):
        if report.name == name:
            return directory / report.name, MEDIA_TYPES["." + report.kind]
    raise NotFoundError(f"no report {name!r} in the reports directory")
