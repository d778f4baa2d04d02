"""memq as a service: the REST API (``memq serve``), API keys and tenancy.

Needs the ``server`` extra (``pip install 'memq[server]'``). Names load lazily, so importing
:mod:`memq.server.cli` (the ``serve`` and ``keys`` commands) does not import FastAPI.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ServerSettings", "app_from_env", "create_app"]


def __getattr__(name: str) -> Any:
    if name in ("create_app", "app_from_env"):
        from memq.server import app

        return getattr(app, name)
    if name == "ServerSettings":
        from memq.server.settings import ServerSettings

        return ServerSettings
    raise AttributeError(name)
