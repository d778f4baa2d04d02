"""memq's operations, each written once for both facades (see :mod:`memq.ops.runner`).

* :mod:`memq.ops.write` — add (plain or managed), update, invalidate, delete, purge, experiences, forgetting;
* :mod:`memq.ops.read` — search, get, list, history, stats;
* :mod:`memq.ops.learning` — feedback, replay, evaluate, the retrieval log;
* :mod:`memq.ops.transfer` — export, import, re-embed.
"""
