"""The schemathesis check shared by the API fuzz tests (schemathesis keeps one global registry of
checks, so it is registered here once and imported by each test module)."""

from __future__ import annotations

import schemathesis


@schemathesis.check
def errors_are_problem_json(ctx: object, response: object, case: object) -> bool | None:
    """Every 4xx/5xx answer is RFC 9457 problem+json with a stable code."""
    status = response.status_code  # type: ignore[attr-defined]
    if status < 400:
        return None
    ctype = response.headers.get("content-type", [""])  # type: ignore[attr-defined]
    ctype = ctype[0] if isinstance(ctype, list) else ctype
    assert ctype.startswith("application/problem+json"), f"{status} answered with {ctype!r}"
    body = response.json()  # type: ignore[attr-defined]
    assert body["status"] == status and body["code"] and body["type"].startswith("urn:memq:problem:"), body
    return True
