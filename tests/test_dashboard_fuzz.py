"""schemathesis against the dashboard's JSON routes (``/ui/api``) as the OpenAPI spec publishes them:
no 5xx, every error is problem+json, responses match their schemas.

In-process (ASGI) on a real SQLite file with the hashing embedder, a logged search with feedback
and a reports directory, so the routes have something to return.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from memq.embed import HashingEmbedder
from memq.memory import Memory
from memq.server.app import create_app
from memq.server.keys import open_key_store
from memq.server.settings import ServerSettings
from problem_checks import errors_are_problem_json

EXAMPLES = 15
ROOT = Path(tempfile.mkdtemp(prefix="memq-ui-fuzz-"))


def _app() -> tuple[object, str]:
    """The app under test (built at import: schemathesis reads the spec when the module loads)."""
    reports = ROOT / "reports"
    reports.mkdir()
    (reports / "r.json").write_text("{}")
    db = str(ROOT / "memq.db")
    mem = Memory(db, embedder=HashingEmbedder())
    rec = mem.add("Alice moved to Berlin", scope="fuzz")
    mem.feedback(mem.search("Alice", k=1, scope="fuzz").id, 1.0, used=[rec.id], scope="fuzz")
    keys = open_key_store(db)
    # memory and keys passed in: the app leaves them open across the lifespans schemathesis runs
    settings = ServerSettings(db=db, embedder="hashing", rate_per_s=0, reports_dir=str(reports))
    app = create_app(settings, memory=mem, key_store=keys)
    return app, keys.create("fuzz", ["read"])[1]


APP, KEY = _app()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).include(path_regex="^/ui/api/")
schema.config.generation.update(max_examples=EXAMPLES, deterministic=True)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_dashboard_api_conforms(case: object) -> None:
    case.call_and_validate(  # type: ignore[attr-defined]
        headers={"Authorization": f"Bearer {KEY}"},
        additional_checks=[errors_are_problem_json],
        excluded_checks=[positive_data_acceptance],  # random ids and names are 404s, by design
    )


def test_the_spec_lists_the_dashboard_routes() -> None:
    paths = set(APP.openapi()["paths"])  # type: ignore[attr-defined]
    assert {"/ui/api/retrievals", "/ui/api/memories/{record_id}/utility", "/ui/api/reports"} <= paths
    assert "/ui/api/reports/{name}" in paths and "/ui/" not in paths


@pytest.fixture(scope="module", autouse=True)
def _close() -> object:
    yield
    APP.state.memory.close()  # type: ignore[attr-defined]
    APP.state.keys.close()  # type: ignore[attr-defined]
