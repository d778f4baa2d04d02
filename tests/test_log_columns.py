"""The retrieval log's columns as the stores write them (``memq.store.sqlcommon``)."""

from __future__ import annotations

import json

import pytest

from memq.store.sqlcommon import pool_json


@pytest.mark.parametrize(
    "ids",
    [
        [],
        ["01a2-only-one"],
        ["plain", 'with "quotes"', 'a", "b', "back\\slash", "ünïcode ✓", "tab\tnew\nline", '", "', ""],
        [f"id-{i}" for i in range(150)],
    ],
)
def test_the_pool_column_is_the_json_of_its_ids_byte_for_byte(ids: list[str]) -> None:
    """``pool_json`` builds the pool column from one encoded list of ids; it must equal the plain
    encoding of the id dicts, including ids holding the separator it splits on."""
    assert pool_json(ids) == json.dumps([{"id": i} for i in ids])
    assert [p["id"] for p in json.loads(pool_json(ids))] == ids
