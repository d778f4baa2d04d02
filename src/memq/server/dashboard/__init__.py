"""The dashboard at ``/ui``: a static page (HTML, CSS, JS; no build step, no CDN) served by
``memq serve``, calling the REST API with the API key the user pastes (kept in sessionStorage).

``create_app`` calls :func:`mount` when this package imports.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from memq.server.dashboard.router import STATIC, api_router, page_router


def mount(app: FastAPI) -> None:
    app.include_router(page_router)
    app.include_router(api_router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
