"""The ONNX Runtime MiniLM embedder (memq's default): agreement with the torch model, int8, the
shipped graphs, threads, batching, errors, and a default path that imports no torch.

The reference is the real sentence-transformers model on torch (the ``torch`` extra, part of
``make test``); both read the same packaged weights. Measured over 5,882 LoCoMo turns
(docs/benchmarks-embedders.md): fp32 cosine with torch >= 0.99999 (max |diff| ~ 2e-7), int8 >= 0.997.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from memq.embed import (
    Embedder,
    OnnxMiniLMEmbedder,
    SentenceTransformerEmbedder,
    default_embedder,
    embedder_from_spec,
    onnx_graph,
)
from memq.embed.onnx import (
    MAX_SEQ_LENGTH,
    MINILM_INT8_MODEL_ID,
    MINILM_MODEL_ID,
    WEIGHTS_SHA256,
    minilm_weights_dir,
    read_safetensors,
)
from memq.errors import EmbeddingError, InvalidInputError

LONG = " ".join(f"token{i} alpha beta" for i in range(200))  # far past 256 word pieces
TEXTS = [
    "Where does my sister live now?",
    "My sister has moved to a new city, she lives there now.",
    "The recipe needs two cups of flour and a pinch of salt.",
    "Caroline: I went to the LGBTQ support group yesterday and it was so powerful.",
    "Melanie: We're thinking about going camping in the mountains next month!",
    "How many times has Jon been to Paris?",
    "ok",
    "",
    "!!! ??? ...",
    "unicode: café, naïve, jalapeño, Straße, 日本語のテキスト, emoji 🎉🙂",
    "UPPER CASE AND lower case Mixed Case",
    "Numbers 3.14159, 2,718 and 1e-9; dates 2023-05-08 and 8 May, 2023.",
    "antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    "  leading and trailing whitespace\tand\ttabs\nand newlines  ",
    "[CLS] [SEP] [PAD] [MASK] tokens written as text",
    LONG,
    "The cat is sleeping on the sofa.",
    "A kitten naps on the couch.",
    "Corporate tax returns are due at the end of the quarter.",
    "what pet does the user have?",
]


@pytest.fixture(scope="module")
def fp32() -> OnnxMiniLMEmbedder:
    return default_embedder()


@pytest.fixture(scope="module")
def int8() -> OnnxMiniLMEmbedder:
    return OnnxMiniLMEmbedder(precision="int8")


@pytest.fixture(scope="module")
def torch_vectors() -> np.ndarray:
    return SentenceTransformerEmbedder().embed_documents(TEXTS)


def _rows_cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a.astype(np.float64), b.astype(np.float64))


def test_fp32_equals_torch_to_float_rounding(fp32: OnnxMiniLMEmbedder, torch_vectors: np.ndarray) -> None:
    got = fp32.embed_documents(TEXTS)
    assert got.shape == (len(TEXTS), 384) and got.dtype == np.float32
    assert _rows_cos(got, torch_vectors).min() >= 0.99999
    assert float(np.abs(got - torch_vectors).max()) <= 1e-5  # measured ~2e-7: same embedding space
    for i, text in enumerate(TEXTS[:6]):  # queries take the same path as documents (no prefixes)
        np.testing.assert_allclose(fp32.embed_query(text), torch_vectors[i], atol=1e-5)
    assert fp32.model_id == MINILM_MODEL_ID == SentenceTransformerEmbedder().model_id


def test_int8_is_close_to_torch_but_its_own_space(
    int8: OnnxMiniLMEmbedder, torch_vectors: np.ndarray
) -> None:
    got = int8.embed_documents(TEXTS)
    cos = _rows_cos(got, torch_vectors)
    assert cos.min() >= 0.99
    assert float(np.abs(got - torch_vectors).max()) > 1e-4  # really quantised, not the fp32 graph
    assert int8.model_id == MINILM_INT8_MODEL_ID != MINILM_MODEL_ID


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_batch_equals_one_by_one(precision: str, fp32: OnnxMiniLMEmbedder, int8: OnnxMiniLMEmbedder) -> None:
    emb = fp32 if precision == "fp32" else int8
    batch = emb.embed_documents(TEXTS)  # sorted by length and padded per batch inside
    single = np.stack([emb.embed_query(t) for t in TEXTS])
    np.testing.assert_allclose(batch, single, atol=1e-5)
    small = OnnxMiniLMEmbedder(precision=emb.precision, batch_size=3)  # several padded batches
    np.testing.assert_allclose(small.embed_documents(TEXTS), batch, atol=1e-5)


def test_truncation_at_the_models_max_seq_length(fp32: OnnxMiniLMEmbedder) -> None:
    tokens = fp32._load().tokenizer.encode(LONG).ids
    assert len(tokens) == MAX_SEQ_LENGTH == 256 and tokens[-1] == 102  # [SEP] kept at the end
    longer = fp32.embed_documents([LONG, LONG + " and many more words that fall past the limit"])
    np.testing.assert_array_equal(longer[0], longer[1])
    short = fp32.embed_documents(["alpha beta gamma", "alpha beta gamma delta"])
    assert not np.allclose(short[0], short[1])


def test_threads_setting(fp32: OnnxMiniLMEmbedder) -> None:
    options = fp32._load().session.get_session_options()
    assert fp32.threads == 1 and options.intra_op_num_threads == 1
    two = OnnxMiniLMEmbedder(threads=2)
    assert two._load().session.get_session_options().intra_op_num_threads == 2
    np.testing.assert_allclose(two.embed_documents(TEXTS), fp32.embed_documents(TEXTS), atol=1e-5)


def test_bad_arguments_and_input(fp32: OnnxMiniLMEmbedder) -> None:
    for kwargs in (
        {"threads": 0},
        {"threads": True},
        {"threads": 1.5},
        {"batch_size": 0},
        {"precision": "fp16"},
    ):
        with pytest.raises(InvalidInputError):
            OnnxMiniLMEmbedder(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        fp32.embed_documents("a bare string")
    with pytest.raises(InvalidInputError):
        fp32.embed_query(b"bytes")  # type: ignore[arg-type]
    assert fp32.embed_documents([]).shape == (0, 384)


def test_missing_or_broken_weights_are_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingError, match="tokenizer"):
        OnnxMiniLMEmbedder(weights_dir=tmp_path).embed_query("x")
    (tmp_path / "tokenizer.json").write_bytes((minilm_weights_dir() / "tokenizer.json").read_bytes())
    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}              ")
    with pytest.raises(EmbeddingError, match=r"embeddings\.word_embeddings\.weight"):
        OnnxMiniLMEmbedder(weights_dir=tmp_path).embed_query("x")


def _write_safetensors(path: Path, tensors: dict[str, np.ndarray], lie: bool = False) -> None:
    header, blobs, offset = {}, [], 0
    for name, arr in tensors.items():
        raw = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        end = offset + len(raw) + (4 if lie else 0)
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, end]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode()
    path.write_bytes(len(head).to_bytes(8, "little") + head + b"".join(blobs))


def test_read_safetensors(tmp_path: Path) -> None:
    a, b = np.arange(6, dtype=np.float32).reshape(2, 3), np.array([0.5, -1.5], dtype=np.float32)
    _write_safetensors(tmp_path / "ok.safetensors", {"a": a, "b": b})
    got = read_safetensors(tmp_path / "ok.safetensors", ["b", "a"])
    np.testing.assert_array_equal(got["a"], a)
    np.testing.assert_array_equal(got["b"], b)
    with pytest.raises(EmbeddingError, match="'c'"):
        read_safetensors(tmp_path / "ok.safetensors", ["c"])
    _write_safetensors(tmp_path / "bad.safetensors", {"a": a}, lie=True)
    with pytest.raises(EmbeddingError, match="inconsistent"):
        read_safetensors(tmp_path / "bad.safetensors", ["a"])


def test_packaged_weights_are_the_checked_bytes() -> None:
    path = minilm_weights_dir() / "model.safetensors"
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    assert digest.hexdigest() == WEIGHTS_SHA256


def test_shipped_graphs_match_the_builder() -> None:
    pytest.importorskip("onnx", reason="the test extra installs onnx")
    for variant in onnx_graph.VARIANTS:
        shipped = (onnx_graph.DATA_DIR / onnx_graph.GRAPH_FILES[variant]).read_bytes()
        assert shipped == onnx_graph.serialized(variant), (
            f"regenerate: python -m memq.embed.onnx_graph ({variant})"
        )


def test_quantize_blocks() -> None:
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(64, 5)).astype(np.float32)
    matrix[:, 2] = 0.0  # an all-zero column must not divide by zero
    q, scale = onnx_graph.quantize_blocks(matrix, block=32)
    assert q.shape == (5, 2, 32) and q.dtype == np.uint8 and scale.shape == (10,)
    restored = ((q.astype(np.float32) - 128) * scale.reshape(5, 2, 1)).reshape(5, 64).T
    assert float(np.abs(restored - matrix).max()) <= float(scale.max()) / 2 + 1e-7
    np.testing.assert_array_equal(restored[:, 2], 0.0)
    with pytest.raises(ValueError, match="multiple"):
        onnx_graph.quantize_blocks(matrix[:50], block=32)


def test_specs() -> None:
    assert embedder_from_spec("minilm") is default_embedder()
    assert embedder_from_spec("") is default_embedder()
    int8 = embedder_from_spec(" minilm-int8 ")
    assert isinstance(int8, OnnxMiniLMEmbedder) and int8.model_id == MINILM_INT8_MODEL_ID
    torch_emb = embedder_from_spec("minilm-torch")
    assert isinstance(torch_emb, SentenceTransformerEmbedder) and torch_emb.model_id == MINILM_MODEL_ID
    for bad in ("minilm:2", "minilm-int8:x", "minilm-torch:1"):
        with pytest.raises(InvalidInputError, match="no options"):
            embedder_from_spec(bad)
    with pytest.raises(InvalidInputError, match="minilm-int8"):
        embedder_from_spec("minilm-fp16")


def test_missing_torch_extra_is_a_typed_error(monkeypatch: pytest.MonkeyPatch, fp32: Embedder) -> None:
    # None in sys.modules is Python's way to make a package unimportable (find_spec returns None).
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    for make in (SentenceTransformerEmbedder, lambda: embedder_from_spec("minilm-torch")):
        with pytest.raises(EmbeddingError, match=r"pip install 'memq\[torch\]'") as info:
            make()
        assert info.value.code == "embedding_error" and "torch" in str(info.value)
    with pytest.raises(EmbeddingError, match=r"memq\[torch\]"):
        embedder_from_spec("mpnet")
    assert OnnxMiniLMEmbedder().embed_query("still works").shape == (384,)  # the default needs neither


def test_default_embedder_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "from memq.embed import default_embedder\n"
        "v = default_embedder().embed_query('where does Alice live?')\n"
        "assert v.shape == (384,), v.shape\n"
        "print(sorted(m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
