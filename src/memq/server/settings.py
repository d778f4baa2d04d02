"""Settings of ``memq serve``: one pydantic model, readable from the environment.

The environment form exists for uvicorn's worker processes: ``memq serve --workers N`` writes the
settings to ``MEMQ_SERVER_*`` variables and each worker builds its app with
:func:`memq.server.app.app_from_env`.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

ENV_PREFIX = "MEMQ_SERVER_"
LOOPBACK_NAMES = {"localhost", "testclient"}


def limit_blas(threads: int) -> None:
    """Cap the threads of numpy's BLAS in this process (``memq serve`` calls it once at start; 0 does
    nothing). Requests run in parallel threads, and a multi-threaded OpenBLAS called from several at
    once mostly waits for itself: ``benchmarks/blas_threads.py`` measures it."""
    if threads > 0:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads, user_api="blas")


def is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ServerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    db: str = Field(
        default="memq.db", description="SQLite file or postgresql:// DSN (also holds the API keys)."
    )
    embedder: str = Field(
        default="minilm", description="Embedder spec: minilm, hashing[:DIM], openai:MODEL:DIM."
    )
    auth: bool = Field(default=True, description="False = dev mode: no keys, one tenant, loopback only.")
    dev_tenant: str = Field(
        default="default", min_length=1, max_length=200, description="Tenant of dev mode."
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="Largest request body; larger → 413.")
    rate_per_s: float = Field(
        default=50.0, ge=0, description="Requests per second per API key (0 = no limit)."
    )
    rate_burst: int = Field(default=100, ge=1, description="Token bucket size per API key.")
    cors_origins: list[str] = Field(
        default_factory=list, description="Allowed CORS origins (none = CORS off)."
    )
    reports_dir: str | None = Field(
        default=None,
        description="Benchmark reports the dashboard lists (default: $MEMQ_SERVER_REPORTS_DIR, else ./benchmarks/results).",
    )
    config: str | None = Field(
        default=None,
        description="A MemoryConfig JSON file (e.g. written by `memq evolve`) the Memory is opened with.",
    )
    blas_threads: int = Field(
        default=1,
        ge=0,
        description="Threads of each numpy BLAS call in the server process (0 = leave BLAS as it is). "
        "Requests already run in parallel threads; a multi-threaded OpenBLAS called from several "
        "threads at once spends its time waiting for itself (benchmarks/load_test.py).",
    )

    def to_env(self) -> dict[str, str]:
        """The settings as ``MEMQ_SERVER_*`` variables (read back by :meth:`from_env`)."""
        return {
            ENV_PREFIX + "DB": self.db,
            ENV_PREFIX + "EMBEDDER": self.embedder,
            ENV_PREFIX + "AUTH": "1" if self.auth else "0",
            ENV_PREFIX + "DEV_TENANT": self.dev_tenant,
            ENV_PREFIX + "MAX_BODY_BYTES": str(self.max_body_bytes),
            ENV_PREFIX + "RATE_PER_S": repr(self.rate_per_s),
            ENV_PREFIX + "RATE_BURST": str(self.rate_burst),
            ENV_PREFIX + "CORS_ORIGINS": ",".join(self.cors_origins),
            ENV_PREFIX + "BLAS_THREADS": str(self.blas_threads),
            **({ENV_PREFIX + "REPORTS_DIR": self.reports_dir} if self.reports_dir else {}),
            **({ENV_PREFIX + "CONFIG": self.config} if self.config else {}),
        }

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServerSettings:
        """Settings from ``MEMQ_SERVER_*`` variables; unset ones keep their defaults."""
        env = os.environ if env is None else env
        data: dict[str, object] = {}
        for field in cls.model_fields:
            raw = env.get(ENV_PREFIX + field.upper())
            if raw is None:
                continue
            if field == "cors_origins":
                data[field] = [o.strip() for o in raw.split(",") if o.strip()]
            elif field == "auth":
                data[field] = raw.strip().lower() not in ("0", "false", "no", "off")
            else:
                data[field] = raw
        return cls.model_validate(data)
