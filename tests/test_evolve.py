"""``memq evolve``: a design-space search that never scores the held-out half, and writes a loadable config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from memq import Memory
from memq.config import MemoryConfig
from memq.errors import InvalidInputError
from memq_bench.evolve import HELD_OUT_HALF, SEARCH_HALF, memory_config, run_evolve
from memq_bench.locomo import load_locomo

pytest.importorskip("optuna")

PEOPLE = [("Ana", "Ben"), ("Cleo", "Dev"), ("Eli", "Fay"), ("Gus", "Hana")]
HOBBIES = ["pottery", "fencing", "kayaking", "baking"]


def _tiny_locomo(path: Path) -> Path:
    """Four small conversations in LoCoMo's format (two sessions each, single-hop questions)."""
    items = []
    for n, ((a, b), hobby) in enumerate(zip(PEOPLE, HOBBIES, strict=True)):
        items.append(
            {
                "sample_id": f"conv-{n}",
                "conversation": {
                    "speaker_a": a,
                    "speaker_b": b,
                    "session_1_date_time": "1:56 pm on 8 May, 2023",
                    "session_1": [
                        {"speaker": a, "dia_id": "D1:1", "text": f"I started {hobby} lessons last week."},
                        {"speaker": b, "dia_id": "D1:2", "text": "That sounds fun, who teaches you?"},
                        {"speaker": a, "dia_id": "D1:3", "text": "A retired champion called Marta."},
                    ],
                    "session_2_date_time": "10:00 am on 9 June, 2023",
                    "session_2": [
                        {"speaker": b, "dia_id": "D2:1", "text": "We adopted a puppy named Biscuit!"},
                        {"speaker": a, "dia_id": "D2:2", "text": "Congratulations, send me photos."},
                    ],
                },
                "qa": [
                    {
                        "question": f"What lessons did {a} start?",
                        "answer": hobby,
                        "evidence": ["D1:1"],
                        "category": 4,
                    },
                    {"question": f"Who teaches {a}?", "answer": "Marta", "evidence": ["D1:3"], "category": 4},
                    {
                        "question": f"What is {b}'s puppy called?",
                        "answer": "Biscuit",
                        "evidence": ["D2:1"],
                        "category": 1,
                    },
                ],
            }
        )
    path.write_text(json.dumps(items))
    return path


def test_the_split_is_fixed_and_disjoint() -> None:
    assert set(SEARCH_HALF).isdisjoint(HELD_OUT_HALF)
    assert sorted(SEARCH_HALF + HELD_OUT_HALF) == list(range(10))


def test_search_never_evaluates_the_held_out_half(tmp_path: Path, embedder) -> None:
    convs = load_locomo(_tiny_locomo(tmp_path / "l.json"))
    result = run_evolve(
        convs,
        lambda spec: embedder,
        trials=3,
        search_half=(0, 1),
        held_out=(2, 3),
        managers=("append", "dedupe"),
        seed=1,
        workdir=tmp_path / "stores",
    )
    phases = result.evaluated
    assert [p for p, _ in phases] == ["search"] * 3 + ["held-out"] * 2  # held-out only at the end
    assert all(idx == (0, 1) for p, idx in phases if p == "search")
    assert all(idx == (2, 3) for p, idx in phases if p == "held-out")
    assert len(result.trials) == 3 and result.trials[0]["write"]["manager"] == "append"
    assert result.front and all(r["pareto"] for r in result.front)
    assert 0.0 <= result.default_held_out["recall@5"] <= 1.0
    assert result.chosen_held_out["questions"] == 6.0  # 3 questions per held-out conversation

    path = memory_config(result.chosen).save(tmp_path / "config.json")
    loaded = MemoryConfig.load(path)
    assert loaded.search.model_dump(include=set(result.chosen.search)) == {
        k: loaded.search.model_dump()[k] for k in result.chosen.search
    }
    with Memory(tmp_path / "m.db", embedder=embedder, config=path, scope="t") as mem:
        assert mem.config.search.link_weight == result.chosen.search["link_weight"]
        mem.add("Ana started pottery lessons")
        assert mem.search("pottery", k=1).records


def test_bad_split_is_refused(tmp_path: Path, embedder) -> None:
    convs = load_locomo(_tiny_locomo(tmp_path / "l.json"))
    with pytest.raises(InvalidInputError, match="disjoint"):
        run_evolve(convs, lambda s: embedder, trials=1, search_half=(0, 1), held_out=(1, 2))
    with pytest.raises(InvalidInputError, match="LLM"):
        run_evolve(
            convs, lambda s: embedder, trials=1, search_half=(0,), held_out=(1,), managers=("reconcile",)
        )


def test_cli_writes_results_and_a_config_that_memq_loads(tmp_path: Path) -> None:
    from memq.cli import app

    data = _tiny_locomo(tmp_path / "l.json")
    out, cfg = tmp_path / "evolve.json", tmp_path / "cfg.json"
    args = ["evolve", "--data", str(data), "--search", "1-2", "--held-out", "3-4", "--trials", "2"]
    args += ["--managers", "append", "--out", str(out), "--config-out", str(cfg)]
    args += ["--cache", str(tmp_path / "cache.sqlite")]
    got = CliRunner().invoke(app, args)
    assert got.exit_code == 0, got.output
    assert "Held-out half" in got.output and "Pareto front" in got.output
    rf = json.loads(out.read_text())
    assert rf["benchmark"] == "evolve"
    assert {(r["system"], r["variant"]) for r in rf["results"]} == {
        ("memq default", "search-half"),
        ("memq evolved", "search-half"),
        ("memq default", "held-out"),
        ("memq evolved", "held-out"),
    }
    assert {e["phase"] for e in rf["extra"]["evaluated"] if 3 in e["conversations"]} == {"held-out"}
    MemoryConfig.load(cfg)
    bad = CliRunner().invoke(app, ["evolve", "--bench", "nope", "--data", str(data)])
    assert bad.exit_code == 2 and "--bench" in bad.output


def test_memq_serve_opens_its_memory_with_the_config(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    from memq.cli import app
    from memq.retrieve.pipeline import SearchOptions
    from memq.server.app import open_memory
    from memq.server.settings import ServerSettings

    cfg = MemoryConfig(
        search=SearchOptions(link_weight=0.2, weights={"dense": 0.7, "lexical": 0.3}), embedder="hashing:64"
    ).save(tmp_path / "c.json")
    settings = ServerSettings(db=str(tmp_path / "m.db"), embedder="hashing:64", config=str(cfg))
    assert ServerSettings.from_env(settings.to_env()).config == str(cfg)  # the workers' form
    mem = open_memory(settings)
    try:
        assert mem.config.search.link_weight == 0.2
        assert mem.config.search.weights == {"dense": 0.7, "lexical": 0.3}
    finally:
        mem.close()
    with pytest.raises(InvalidInputError, match="embedder"):
        open_memory(ServerSettings(db=str(tmp_path / "m2.db"), embedder="hashing:32", config=str(cfg)))
    (tmp_path / "bad.json").write_text('{"search": {"link_weight": 7}}')
    got = CliRunner().invoke(
        app, ["--db", str(tmp_path / "m3.db"), "serve", "--config", str(tmp_path / "bad.json")]
    )
    assert got.exit_code == 2 and "link_weight" in got.output
