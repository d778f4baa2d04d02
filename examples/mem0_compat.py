"""mem0's API on memq: the mem0 quick-start with one import changed, plus memq's feedback.

    pip install memq           # no extra: the compat layer needs no mem0
    python examples/mem0_compat.py

Runs offline: ``infer=True`` (mem0's default) needs an LLM to extract facts; here it is memq's replay
server answering as the model would (``$MEMQ_LLM`` points the compat Memory at it). memq's
``reconcile`` manager then stores the facts — and later invalidates one when the user contradicts it.
"""

from __future__ import annotations

from memq.integrations.scripted import offline

offline()

import os  # noqa: E402
import re  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from memq.llm.replay import ReplayServer, answer  # noqa: E402


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="memq-mem0-"))
    with ReplayServer() as server:
        os.environ.update(MEMQ_DB=str(workdir / "memq.db"), MEMQ_LLM=f"openai:replay-model@{server.url}")
        os.environ.setdefault("OPENAI_API_KEY", "offline")

        from memq.compat.mem0 import Memory  # was: from mem0 import Memory

        m = Memory()
        messages = [
            {"role": "user", "content": "I'm planning to watch a movie tonight. Any recommendations?"},
            {"role": "assistant", "content": "How about thriller movies? They can be quite engaging."},
            {"role": "user", "content": "I'm not a big fan of thriller movies but I love sci-fi movies."},
        ]
        server.script(
            answer({"status": "facts", "facts": ["Loves sci-fi movies", "Does not like thrillers"]})
        )
        added = m.add(messages, user_id="alice", metadata={"category": "movies"})

        # a contradiction: the model says the old fact is superseded (DELETE -> memq invalidates it)
        def decide(request) -> dict:
            shown = request.messages[-1]["content"].split("<memories>")[1].split("</memories>")[0]
            numbered = dict(
                re.findall(r'^\[(\d+)\] "(.*)"', shown, re.MULTILINE)
            )  # memories as the prompt numbers them
            old = next(int(n) for n, text in numbered.items() if text == "Does not like thrillers")
            return {"decisions": [{"fact": 0, "op": "DELETE", "id": old, "reason": "changed her mind"}]}

        server.script(answer({"status": "facts", "facts": ["Has started to enjoy thrillers"]}))
        server.respond_with(decide)
        changed = m.add("Actually, I've started to enjoy thrillers lately.", user_id="alice")

        m.add("Alice's cinema is the Odeon on King Street", user_id="alice", infer=False)
        found = m.search("what kind of movies does she like?", filters={"user_id": "alice"}, top_k=3)
        best = found["results"][0]
        m.feedback(found["retrieval_id"], 1.0, used=[best["id"]])  # memq's addition to the mem0 API
        everything = m.get_all(filters={"user_id": "alice"}, show_expired=True)
        thriller_id = next(r["id"] for r in added["results"] if r["memory"] == "Does not like thrillers")
        history = m.history(thriller_id)

    print(
        "remembered (add, infer=True -> memq reconcile):",
        [(r["event"], r["memory"]) for r in added["results"]],
    )
    print("contradiction:", [(r["event"], r["memory"]) for r in changed["results"]])
    print("recalled (search):")
    for r in found["results"]:
        print(f"  {r['score']:.2f}  {r['memory']}  metadata={r['metadata']}")
    print("history of the superseded fact:", [(h["event"], h["new_memory"]) for h in history])
    print("all memories, expired ones included:", [r["memory"] for r in everything["results"]])
    record = m.memory.get(best["id"])
    print(f"learned: '{record.text}' shown={record.utility.n_shown} used={record.utility.n_used}")


if __name__ == "__main__":
    main()
