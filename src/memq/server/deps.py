"""FastAPI dependencies for the process-wide objects kept on ``app.state``."""

from __future__ import annotations

from fastapi import Request

from memq.memory import Memory
from memq.server.keys import KeyStore
from memq.server.settings import ServerSettings


async def get_memory(request: Request) -> Memory:
    """The process's one sync :class:`Memory`. It has no default scope: always pass ``scope=``.

    (``async`` only so FastAPI does not hop to a worker thread to read an attribute.)"""
    return request.app.state.memory


async def get_settings(request: Request) -> ServerSettings:
    return request.app.state.settings


async def get_key_store(request: Request) -> KeyStore:
    return request.app.state.keys
